"""Evaluation: image metrics, the novel-view and closed-loop protocols and their commands
(`run`, `clips`), the WorldScore adapter (`worldscore`, `worldscore_run`), and the cache
cost benchmark (`bench_memory`, plotted by `plot`).

Submodules are imported directly (`from mirage.eval.metrics import psnr`) so that importing
`mirage.eval` stays light.
"""
