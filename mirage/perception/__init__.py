"""Perception providers for the loop: depth (ground truth or estimated) and exclusion masks."""

from mirage.perception.align import align_depth_scale
from mirage.perception.base import DepthProvider, MaskProvider, check_frames
from mirage.perception.ground_truth import GroundTruthDepth, GroundTruthMasks, NoMasks

__all__ = [
    "DepthProvider",
    "GroundTruthDepth",
    "GroundTruthMasks",
    "MaskProvider",
    "NoMasks",
    "align_depth_scale",
    "check_frames",
]
