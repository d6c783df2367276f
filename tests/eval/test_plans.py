"""Protocol index plans against the hand-written examples of docs/eval.md."""

import pytest

from mirage.eval.plans import closed_loop_plan, loop_source_indices, nvs_plan, sample_clip_indices


def test_nvs_plan_documented_examples():
    p = nvs_plan(9, 1, 2)
    assert p.context == [0] and p.targets == [1, 3, 5, 7]
    p = nvs_plan(5)
    assert p.context == [0] and p.targets == [1, 2, 3, 4]
    p = nvs_plan(9, num_context=2, target_stride=3)
    assert p.context == [0, 1] and p.targets == [2, 5, 8]
    with pytest.raises(ValueError, match="num_frames"):
        nvs_plan(1)


def test_closed_loop_plan_documented_examples():
    p = closed_loop_plan(5)
    assert p.outbound == [0, 1, 2] and p.pairs == [(3, 1), (4, 0)]
    p = closed_loop_plan(4)  # even: the turning pose is shown twice (frames 1 and 2)
    assert p.outbound == [0, 1] and p.pairs == [(2, 1), (3, 0)]
    assert closed_loop_plan(9).pairs == [(5, 3), (6, 2), (7, 1), (8, 0)]
    assert closed_loop_plan(9).twinned == [(5, 3), (6, 2), (7, 1)]  # frame 0 is given
    assert closed_loop_plan(2).twinned == []
    assert loop_source_indices(5) == [0, 1, 2, 1, 0]
    assert loop_source_indices(4) == [0, 1, 1, 0]
    with pytest.raises(ValueError, match="num_frames"):
        closed_loop_plan(1)


def test_sample_clip_indices():
    assert sample_clip_indices(10, 4, 3) == [0, 3, 6, 9]
    assert sample_clip_indices(10, 3, 2, start=5) == [5, 7, 9]
    with pytest.raises(ValueError, match="needs 11 source frames"):
        sample_clip_indices(10, 4, 3, start=1)
