"""Evaluation: image metrics, the novel-view and closed-loop protocols, the WorldScore adapter.

Submodules are imported directly (`from mirage.eval.metrics import psnr`) so that importing
`mirage.eval` stays light.
"""
