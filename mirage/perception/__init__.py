"""Perception providers for the loop: depth (ground truth or estimated) and exclusion masks.

`import mirage.perception` is light: transformers is imported only when a model is loaded.
"""

from mirage.perception.base import DepthProvider, MaskProvider, check_frames
from mirage.perception.depth import DepthAnythingV2Depth, DepthProDepth, load_depth_provider
from mirage.perception.depth_anything3 import DepthAnything3Depth
from mirage.perception.ground_truth import (
    FileDepth,
    FileMasks,
    GroundTruthDepth,
    GroundTruthMasks,
    NoMasks,
)
from mirage.perception.masks import Sam3Masks, load_mask_provider

__all__ = [
    "DepthAnything3Depth",
    "DepthAnythingV2Depth",
    "DepthProDepth",
    "DepthProvider",
    "FileDepth",
    "FileMasks",
    "GroundTruthDepth",
    "GroundTruthMasks",
    "MaskProvider",
    "NoMasks",
    "Sam3Masks",
    "check_frames",
    "load_depth_provider",
    "load_mask_provider",
]
