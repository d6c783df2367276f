"""The procedural synthetic world: seeded scenes and a vectorised ray-caster with ground truth."""

from mirage.synthetic.raycast import SceneRender, render
from mirage.synthetic.scene import (
    KINDS,
    TEXTURES,
    DynamicObject,
    Material,
    Scene,
    intrinsics,
    look_at,
    make_scene,
)

__all__ = [
    "KINDS",
    "TEXTURES",
    "DynamicObject",
    "Material",
    "Scene",
    "SceneRender",
    "intrinsics",
    "look_at",
    "make_scene",
    "render",
]
