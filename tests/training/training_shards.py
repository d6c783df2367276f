"""Tiny shard folders written directly (random latents, real cameras and depth)."""

import torch

from mirage.data.shards import shard_name, write_index, write_shard

C, HW, SIZE = 16, (4, 4), 32  # tiny VAE: 16 channels, 8x spatial


def fake_clip(seed: int, num_frames: int = 17, chunk_frames: int = 9, text: bool = False):
    """Shard tensors of one clip: random latents, a plane 2 m ahead, a sideways camera path."""
    g = torch.Generator().manual_seed(seed)
    n, k, L = (
        (num_frames - 1) // (chunk_frames - 1),
        (chunk_frames - 1) // 4,
        (num_frames - 1) // 4 + 1,
    )
    K = torch.tensor([[30.0, 0, 16], [0, 28.0, 15], [0, 0, 1]]).expand(L, 3, 3).clone()
    c2w = torch.eye(4).expand(L, 4, 4).clone()
    c2w[:, 0, 3] = torch.linspace(0, 0.3, L)
    tensors = {
        "chunk_latents": torch.randn(n, k + 1, C, *HW, generator=g),
        "image_latents": torch.randn(L, C, *HW, generator=g),
        "depth": 2.0 + 0.1 * torch.rand(L, SIZE, SIZE, generator=g),
        "exclude": torch.zeros(L, SIZE, SIZE, dtype=torch.bool),
        "K": K,
        "c2w": c2w,
    }
    tensors["exclude"][:, :, :8] = True  # the first latent column stays out of the memory
    if text:
        tensors["text"] = torch.randn(5, 64, generator=g)
    meta = {
        "num_frames": num_frames, "chunk_frames": chunk_frames, "height": SIZE, "width": SIZE,
        "channels": C, "latent_hw": list(HW), "source": {"fake": seed},
    }  # fmt: skip
    return tensors, meta


def write_fake_shards(root, num_clips=2, **kw):
    names = []
    for i in range(num_clips):
        tensors, meta = fake_clip(i, text=(i % 2 == 1), **kw)
        write_shard(root / shard_name(i), tensors, meta)
        names.append(shard_name(i))
    write_index(root, names, {"fake": True})
    return root
