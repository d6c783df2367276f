"""Context parallelism (Ulysses) of MirageTransformer over 2 CPU processes equals 1 process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("cp_worker.py")


def test_ulysses_over_two_processes_equals_one(tmp_path):
    out = tmp_path / "result.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", str(WORKER), str(out)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    # each process really held half the sequence, main and side, in its blocks
    assert r["tokens_per_process"] == r["side_tokens_per_process"] == r["tokens"] // 2
    assert r["shape"] == [1, 16, 4, 8, 8]  # gathered back to the whole video
    assert r["ref_abs_max"] > 0.1
    assert r["max_abs_diff"] < 1e-5  # measured: 0.0 (fp32, the same per-head arithmetic)


def test_context_parallel_needs_a_process_group():
    import torch
    from diffusers import WanTransformer3DModel

    from mirage.models.loading import tiny_transformer_config
    from mirage.models.parallel import enable_context_parallel
    from mirage.models.transformer import MirageTransformer

    torch.manual_seed(0)
    model = MirageTransformer.from_base(WanTransformer3DModel(**tiny_transformer_config()))
    with pytest.raises(RuntimeError, match="torch.distributed"):
        enable_context_parallel(model, ulysses=2)
