"""Spatial memories: LatentSpatialMemory (the product's core) and the RGBPointCache baseline."""

from mirage.memory.latent import LatentSpatialMemory, Readout
from mirage.memory.rgb import RGBPointCache

__all__ = ["LatentSpatialMemory", "RGBPointCache", "Readout"]
