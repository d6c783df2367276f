"""The read comparison of `benchmarks/memory_readout.py --compare`: reads alternate, readouts
must agree bit for bit, and the files carry every figure with the machine."""

import json

import pytest
import torch

from mirage.eval.bench_readout import read_with_render_index, run_read_comparison
from mirage.geometry import project, zbuffer


def _plain_render_index(points, K, w2c, height, width):  # the vectorised rule, no CPU path
    return zbuffer(*project(points, K, w2c), height, width)


def test_read_comparison_writes_every_read_and_checks_they_agree(tmp_path):
    others = {"plain": read_with_render_index(_plain_render_index)}
    result = run_read_comparison(others, 3000, 2, (6, 10), "cpu", tmp_path, repeats=2)
    assert result["identical"] and result["points"] == 3000 and result["views"] == 2
    for key in ("read_ms", "plain_read_ms", "speedup_vs_plain", "cpu_speedup_vs_plain"):
        assert result[key] > 0
    assert len(result["read_ms_all"]) == len(result["plain_read_ms_all"]) == 2
    threads = torch.get_num_threads()
    name = f"memory_readout_compare_cpu_{threads}thread_3000pts_2views"
    saved = json.loads((tmp_path / f"{name}.json").read_text())
    assert saved["machine"]["torch_threads"] == threads and saved["speedup_vs_plain"] > 0
    assert (tmp_path / f"{name}.csv").exists()


def test_read_comparison_refuses_a_read_that_differs(tmp_path):
    def shifted(points, K, w2c, height, width):  # one cell off: must be caught
        index, depth = _plain_render_index(points, K, w2c, height, width)
        return index.roll(1, -1), depth.roll(1, -1)

    others = {"shifted": read_with_render_index(shifted)}
    with pytest.raises(AssertionError, match="shifted"):
        run_read_comparison(others, 3000, 2, (6, 10), "cpu", None, repeats=1)
