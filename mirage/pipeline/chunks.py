"""The chunk plan of a long video: the frames of each chunk and the camera of each latent.

A chunk has `4k + 1` frames and `k + 1` latent frames. The first chunk starts at the input
image (frame 0); every later chunk starts at the last frame of the one before (that frame's
clean latent fills latent slot 0) and adds `4k` new frames. A video of N frames therefore
needs N = 1 + n * 4k for some n >= 1 chunks. Latent frame m of a chunk starting at frame a
covers frames a + 4m - 3 .. a + 4m and takes the camera of frame a + 4m (DESIGN.md).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chunk:
    index: int  # 0, 1, ...
    start: int  # first frame (for index > 0: the last frame of the previous chunk)
    num_frames: int  # 4k + 1

    @property
    def stop(self) -> int:  # one past the last frame
        return self.start + self.num_frames

    @property
    def latent_frames(self) -> list[int]:
        """Video frame whose camera each latent slot takes: start, start + 4, ..., stop - 1."""
        return list(range(self.start, self.stop, 4))

    @property
    def new_frames(self) -> list[int]:
        """Frames this chunk generates (all but its first, which is given)."""
        return list(range(self.start + 1, self.stop))


def check_chunk_frames(chunk_frames: int) -> None:
    if chunk_frames < 5 or (chunk_frames - 1) % 4:
        raise ValueError(f"`chunk_frames` must be 4k + 1 with k >= 1, got {chunk_frames}")


def check_context(context_latents: int, chunk_frames: int) -> None:
    """The context rule's range: 0 <= context_latents <= k, the target latents of a chunk."""
    check_chunk_frames(chunk_frames)
    k = (chunk_frames - 1) // 4
    if not 0 <= context_latents <= k:
        raise ValueError(
            f"`context_latents` must be in 0..{k} for chunks of {chunk_frames} frames (a chunk "
            f"has {k} target latents to carry), got {context_latents}"
        )


def num_context(chunk_index: int, context_latents: int) -> int:
    """Clean context latents in front of a chunk: none for the first, else `context_latents`.

    The context of chunk c > 0 is the last `context_latents` target latents of chunk c - 1
    (`check_context` keeps it within one chunk). Generation and training both use this rule.
    """
    return 0 if chunk_index == 0 else context_latents


def valid_lengths_near(num_frames: int, chunk_frames: int) -> list[int]:
    """The video lengths just below and above `num_frames` that the chunk plan can produce."""
    step = chunk_frames - 1
    n = max(1, (num_frames - 1) // step)
    return sorted({1 + n * step, 1 + (n + 1) * step} - {num_frames})


def plan_chunks(num_frames: int, chunk_frames: int = 33) -> list[Chunk]:
    """Chunks for a video of `num_frames` frames (the first is the input image).

    A length that does not fit is refused with the nearest lengths that do; never padded or cut.
    """
    check_chunk_frames(chunk_frames)
    step = chunk_frames - 1
    if num_frames < chunk_frames or (num_frames - 1) % step:
        near = " or ".join(str(n) for n in valid_lengths_near(num_frames, chunk_frames))
        raise ValueError(
            f"a trajectory of {num_frames} frames does not fit chunks of {chunk_frames} frames "
            f"(lengths 1 + n * {step}); nearest lengths that fit: {near}"
        )
    return [Chunk(i, i * step, chunk_frames) for i in range((num_frames - 1) // step)]
