"""The procedural synthetic world: seeded scenes and a vectorised ray-caster with ground truth.

Modules by job: `textures` (materials and their colours), `scene` (the world description and
cameras), `generate` (seeded procedural scenes), `raycast` (RGB, depth and masks).
"""

from mirage.synthetic.generate import make_scene
from mirage.synthetic.raycast import SceneRender, render
from mirage.synthetic.scene import KINDS, DynamicObject, Scene, intrinsics, look_at
from mirage.synthetic.textures import TEXTURES, Material

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
