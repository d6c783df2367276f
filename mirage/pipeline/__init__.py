"""The world-model loop: chunked generation that reads and updates a spatial memory."""

from mirage.pipeline.chunks import Chunk, plan_chunks
from mirage.pipeline.config import MEMORY_MODES, GenerationConfig
from mirage.pipeline.world_model import GenerationResult, MiragePipeline

__all__ = [
    "MEMORY_MODES",
    "Chunk",
    "GenerationConfig",
    "GenerationResult",
    "MiragePipeline",
    "plan_chunks",
]
