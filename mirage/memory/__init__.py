"""Spatial memories behind one protocol: LatentSpatialMemory (the product's core), the
RGBPointCache baseline and NoMemory, made by `make_memory`."""

from mirage.memory.alignment import align_depth_scale, align_to_memory
from mirage.memory.base import NoMemory, Observation, Readout, SpatialMemory, empty_readout
from mirage.memory.factory import MEMORY_KINDS, load_memory, make_memory
from mirage.memory.fusion import FOOTPRINT
from mirage.memory.latent import LatentSpatialMemory
from mirage.memory.rgb import RGBPointCache

__all__ = [
    "FOOTPRINT",
    "MEMORY_KINDS",
    "LatentSpatialMemory",
    "NoMemory",
    "Observation",
    "RGBPointCache",
    "Readout",
    "SpatialMemory",
    "align_depth_scale",
    "align_to_memory",
    "empty_readout",
    "load_memory",
    "make_memory",
]
