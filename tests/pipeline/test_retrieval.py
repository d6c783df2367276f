"""Reference retrieval: frustum-voxel IoU against a plain loop, the right past view on a scene
whose answer is known, reference slots' RoPE positions, and retrieval off changing nothing."""

import math

import pytest
import torch

from mirage.data.trajectories import make_trajectory
from mirage.geometry import Cameras
from mirage.models.loading import tiny_components
from mirage.models.transformer import MirageTransformer
from mirage.models.vae import VideoVAE
from mirage.perception import GroundTruthDepth
from mirage.pipeline import GenerationConfig, MiragePipeline
from mirage.pipeline.retrieval import ReferenceBank


def _look(yaw_deg: float, center=(0.0, 0.0, 0.0), H=24, W=32) -> Cameras:
    """One OpenCV camera at `center` turned by `yaw` about the y axis (0: looking along +z)."""
    a = math.radians(yaw_deg)
    R = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    c2w = torch.eye(4)
    c2w[:3, :3], c2w[:3, 3] = R, torch.tensor(center)
    K = torch.tensor([[30.0, 0, 15.0], [0, 26.0, 13.0], [0, 0, 1]])  # fx != fy, cx != cy
    return Cameras(K[None], c2w[None], H, W)


def _loop_voxels(points, cameras, voxel):
    """The voxels of the points inside any camera's image, one point and one camera at a time."""
    out = set()
    for p in points.tolist():
        for K, w2c in zip(cameras.K.tolist(), cameras.w2c.tolist(), strict=True):
            x, y, z = (sum(w2c[r][c] * v for c, v in enumerate(p)) + w2c[r][3] for r in range(3))
            if z <= 0:
                continue
            u, v = K[0][0] * x / z + K[0][2], K[1][1] * y / z + K[1][2]
            if 0 <= u < cameras.width and 0 <= v < cameras.height:
                out.add(tuple(math.floor(q / voxel) for q in p))
                break
    return out


def _loop_iou(a, b):
    return len(a & b) / len(a | b) if a | b else 0.0


def test_iou_equals_a_plain_loop_over_voxels():
    gen = torch.Generator().manual_seed(0)
    points = torch.randn(400, 3, generator=gen) * 3  # around the cameras, some behind them
    bank = ReferenceBank(voxel_size=0.5)
    past = [_look(y, (0.3 * i, 0, -0.2 * i)) for i, y in enumerate((0, 40, 90, 180, -60))]
    for cam in past:
        bank.add(torch.zeros(1, 2, 3, 4), cam, points)
    target = Cameras.cat([_look(20), _look(35, (0.5, 0.1, 0))])
    want = [
        _loop_iou(_loop_voxels(points, target, 0.5), _loop_voxels(points, cam, 0.5)) for cam in past
    ]
    got = bank.scores(target, points)
    assert got == pytest.approx(want, abs=1e-12)
    assert len({round(w, 6) for w in want}) > 2  # the cameras really see different parts
    order = sorted(range(5), key=lambda i: (-want[i], i))
    assert bank.select(target, points) == [i for i in order if want[i] >= 0.04][:4]


def _two_rooms():
    """Points on a wall ahead (+z) and a wall behind (-z) the origin, and one to the right."""
    g = torch.linspace(-2, 2, 21)
    u, v = torch.meshgrid(g, g, indexing="ij")
    ahead = torch.stack([u, v, torch.full_like(u, 5.0)], -1).reshape(-1, 3)
    behind = torch.stack([u, v, torch.full_like(u, -5.0)], -1).reshape(-1, 3)
    right = torch.stack([torch.full_like(u, 5.0), v, u], -1).reshape(-1, 3)
    return torch.cat([ahead, behind, right])


def test_picks_the_past_view_that_sees_the_target_surfaces_not_the_recent_one():
    points = _two_rooms()
    bank = ReferenceBank()  # the official rule: IoU >= 0.04 on 0.1 voxels, up to 4
    old_behind = _look(180)  # an early latent that saw the wall behind
    for i, cam in enumerate([_look(0), old_behind, _look(90), _look(80), _look(100)]):
        bank.add(torch.full((1, 2, 3, 4), float(i)), cam, points)
    target = Cameras.cat([_look(175), _look(185)])  # turning back to look behind
    assert bank.select(target, points) == [1]  # not the recent views to the right
    assert torch.equal(bank.stack([1]), torch.full((1, 2, 3, 4), 1.0))
    assert bank.select(_look(45), points)[:1] in ([0], [2], [3])  # between ahead and right


def test_reference_slots_take_negative_times_and_shifted_rows():
    base = tiny_components(0).transformer  # head dim 64, split t / h / w as diffusers does
    model = MirageTransformer.from_base(base)
    R, F, h, w = 2, 3, 6, 8
    latents = torch.zeros(1, 16, R + F, h, w)
    cos, sin = model._rope(latents, R)
    c0, s0 = base.rope(torch.zeros(1, 16, F, h, w))
    n = R * (h // 2) * (w // 2)
    assert torch.equal(cos[:, n:], c0) and torch.equal(sin[:, n:], s0)  # chunk slots unchanged
    rope = base.rope
    dims = (rope.t_dim, rope.h_dim, rope.w_dim)

    def angles(pos, d):  # [P] positions -> [P,d] angles, each frequency twice (interleaved)
        inv = 1.0 / (10000.0 ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
        return (pos[:, None].double() * inv[None]).repeat_interleave(2, dim=1)

    for r in range(R):
        for i in range(h // 2):
            for j in range(w // 2):
                tok = (r * (h // 2) + i) * (w // 2) + j
                pos = (r - R, h // 2 + i, j)  # time -R..-1, rows after the chunk's rows
                parts = zip(pos, dims, strict=True)
                a = torch.cat([angles(torch.tensor([p]), d)[0] for p, d in parts])
                torch.testing.assert_close(cos[0, tok, 0].double(), a.cos(), atol=1e-6, rtol=0)
                torch.testing.assert_close(sin[0, tok, 0].double(), a.sin(), atol=1e-6, rtol=0)


def _pipeline(seed=3):
    from mirage.synthetic import make_scene

    comp = tiny_components(0)
    model = MirageTransformer.from_base(comp.transformer)
    gen = torch.Generator().manual_seed(9)
    with torch.no_grad():  # a branch that acts, so the side input matters
        for p in model.side_branch_parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    scene = make_scene(seed)
    pipe = MiragePipeline(model, VideoVAE(comp.vae), comp.scheduler, GroundTruthDepth(scene))
    cams = make_trajectory("orbit", scene.start_camera(64, 64), 25)
    return pipe, cams, scene.render(cams[0]).rgb[0]


def _plain_loop(pipe, image, cams, cfg):
    """The loop before profiles and references existed, built here from its primitives
    (chunk_context, side_condition, plain sample_chunk): chunk c reads the memory at its slot
    cameras, denoises with the context and first frame clean, decodes, writes frames 4, 8."""
    from mirage.memory import make_memory
    from mirage.pipeline.conditioning import chunk_context, observation, side_condition
    from mirage.pipeline.sampling import sample_chunk

    memory = make_memory("latent", pipe.vae.z_dim, voxel_size=cfg.voxel_size,
                         dtype=getattr(torch, cfg.memory_dtype), fusion="mean",  # no folder: mean
                         subcells=cfg.subcells)  # fmt: skip

    def write(frames, cameras, indices):
        latents = pipe.vae.encode_images(frames, batch_size=len(frames))
        depth = pipe.depth(frames, cameras, torch.tensor(indices))
        memory.observe(observation(memory, frames, latents, depth, cameras, None, True))
        return latents

    first = write(image[None], cams[0], [0])
    targets, gen, out = first[:0], torch.Generator().manual_seed(cfg.seed), [image[None]]
    text = torch.zeros(1, 1, pipe.transformer.config.text_dim)
    for c in range(3):
        slots = [8 * c, 8 * c + 4, 8 * c + 8]
        n = 0 if c == 0 else cfg.context_latents
        context = chunk_context(targets, n)
        cond = side_condition(memory.read(cams[slots], first.shape[-2:]), n)
        noise = torch.randn(2, *first.shape[1:], generator=gen)
        targets = sample_chunk(
            pipe.transformer, pipe.sampler(cfg.shift), torch.cat([context, first]), noise, text,
            cond, cfg.num_inference_steps, cfg.guidance_scale, None, cfg.side_scale, False,
        )  # fmt: skip
        video = pipe.vae.decode(torch.cat([first, targets]))
        out.append(video[1:])
        first = write(video[4::4], cams[slots[1:]], slots[1:])[-1:]
    return torch.cat(out)


def test_references_off_is_the_loop_without_references():
    """`generate` with references off equals the loop built from the pre-profile primitives."""
    pipe, cams, image = _pipeline()
    cfg = GenerationConfig(chunk_frames=9, num_inference_steps=2, references="off")
    res = pipe.generate(image, cams, config=cfg, progress=False)
    assert res.metadata["references"] == [[], [], []]
    with torch.no_grad():
        assert torch.equal(res.frames, _plain_loop(pipe, image, cams, cfg))
    on = pipe.generate(image, cams, config=GenerationConfig(**{**cfg.__dict__, "references": "on"}),
                       progress=False)  # fmt: skip
    assert all(on.metadata["references"][1:]) and on.metadata["references"][0] == []
    assert torch.equal(on.frames[:9], res.frames[:9])  # chunk 0 has no past to retrieve
    assert not torch.equal(on.frames[9:], res.frames[9:])  # references are seen
