"""Camera geometry: Cameras, back-projection, projection and the exact z-buffer."""

from mirage.geometry.cameras import Cameras, rigid_inverse
from mirage.geometry.projection import (
    EMPTY,
    backproject,
    pixel_centers,
    project,
    render_index,
    transform_points,
    unproject,
    zbuffer,
)

__all__ = [
    "EMPTY",
    "Cameras",
    "backproject",
    "pixel_centers",
    "project",
    "render_index",
    "rigid_inverse",
    "transform_points",
    "unproject",
    "zbuffer",
]
