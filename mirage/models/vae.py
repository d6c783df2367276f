"""VideoVAE: encode clips and single frames to normalised Wan latents, decode them back.

Conventions (DESIGN.md): frames are `[T,3,H,W]` in [0, 1]; latents are `[t,C,h,w]`,
normalised with the VAE config's `latents_mean` / `latents_std` (z - mean) / std, the space
the transformer and the memory work in. A clip of T = 4k + 1 frames has t = k + 1 latent
frames: latent 0 is frame 0 alone, latent m >= 1 covers frames 4m-3 .. 4m. Frame counts that
are not 4k + 1 and sizes that are not multiples of 2 x the spatial factor (the transformer's
2x2 patch on top of the VAE) raise ValueError before any work, where diffusers would truncate.

`encode_images` encodes every frame alone as a 1-frame clip: these **image latents** are what
the latent spatial memory stores. Encoding uses the posterior mode (deterministic), as the
Wan pipelines do for conditioning frames.

A VAE's config may say how its clips are encoded (`VIDEO_LATENTS_KEY`): "causal" (every Wan
VAE, the default) runs the clip through the causal encoder; "keyframes" (mirage-tiny from v4)
takes latent m as the image latent of frame 4m, frame 0 included, and its decoder is trained to
decode such a sequence into the whole clip. Then what the model generates and what the memory
stores are one space: a readout is a target as it is, not something to translate. `decode`
gives frame 4m of such a clip as the image decoder makes latent m (the exact inverse of its
encoding, sharper than the video decoder there) and the frames between as the video decoder.
"""

from __future__ import annotations

import contextlib

import torch

from mirage.models.cpu_conv import split_conv3d

VIDEO_LATENTS_KEY = "mirage_video_latents"  # VAE config key: how a clip is encoded
VIDEO_LATENTS = ("causal", "keyframes")


def load_autoencoder(folder, dtype: torch.dtype = torch.float32):
    """The `AutoencoderKLWan` of a local folder (nothing is fetched), in eval mode.

    The one place Mirage loads a VAE folder: diffusers warns that `AutoencoderKLWan` does not
    take `VIDEO_LATENTS_KEY` (it keeps it in `config`, which is all we need), so the load runs
    with diffusers' logging at errors only."""
    from diffusers import AutoencoderKLWan

    with _diffusers_errors_only():
        return AutoencoderKLWan.from_pretrained(
            folder, torch_dtype=dtype, local_files_only=True
        ).eval()


@contextlib.contextmanager
def _diffusers_errors_only():
    from diffusers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


class VideoVAE:
    """Thin wrapper over a diffusers `AutoencoderKLWan` (Wan2.1 8x or Wan2.2 16x configuration).

    The batch dimension diffusers wants (`[B,C,T,H,W]`) is explicit inside; callers pass and get
    Mirage's batch-free `[T,...]` tensors. Outputs are float32 on the VAE's device. On the CPU,
    the VAE's 3D convolutions run as sums of 2D ones (`split_conv3d`: the same result, about
    1.8x faster decoding of mirage-tiny; the VAE passed in is changed in place).
    """

    def __init__(self, vae):
        for key in ("z_dim", "latents_mean", "latents_std", "scale_factor_spatial"):
            if not hasattr(vae.config, key):
                raise ValueError(
                    f"`vae` must be a diffusers AutoencoderKLWan; config lacks {key!r}"
                )
        if len(vae.config.latents_mean) != vae.config.z_dim:
            raise ValueError(
                f"`vae.config.latents_mean` must have z_dim={vae.config.z_dim} entries, "
                f"got {len(vae.config.latents_mean)}"
            )
        video_latents = vae.config.get(VIDEO_LATENTS_KEY, "causal")
        if video_latents not in VIDEO_LATENTS:
            raise ValueError(
                f"`vae.config.{VIDEO_LATENTS_KEY}` must be one of {VIDEO_LATENTS}, "
                f"got {video_latents!r}"
            )
        split_conv3d(vae)
        self.vae = vae
        self.video_latents = video_latents

    # -- properties -------------------------------------------------------------------------
    @property
    def z_dim(self) -> int:
        return int(self.vae.config.z_dim)

    @property
    def spatial_factor(self) -> int:
        return int(self.vae.config.scale_factor_spatial)

    @property
    def temporal_factor(self) -> int:
        return int(self.vae.config.scale_factor_temporal or 4)

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def _stats(self):  # -> mean [1,C,1,1,1], std [1,C,1,1,1] float32
        mean = torch.tensor(self.vae.config.latents_mean, dtype=torch.float32, device=self.device)
        std = torch.tensor(self.vae.config.latents_std, dtype=torch.float32, device=self.device)
        return mean.view(1, -1, 1, 1, 1), std.view(1, -1, 1, 1, 1)

    # -- checks -----------------------------------------------------------------------------
    def check_image_size(self, height: int, width: int) -> None:
        """Raise ValueError unless H and W are positive multiples of 2 x the spatial factor."""
        m = 2 * self.spatial_factor
        for name, v in (("height", height), ("width", width)):
            if v <= 0 or v % m != 0:
                raise ValueError(f"`{name}` must be a positive multiple of {m}, got {v}")

    def check_video_shape(self, num_frames: int, height: int, width: int) -> None:
        """Raise ValueError unless T = 4k + 1 and H, W are multiples of 2 x the spatial factor."""
        f = self.temporal_factor
        if num_frames < 1 or (num_frames - 1) % f != 0:
            raise ValueError(
                f"`num_frames` must be {f}k + 1 (1, {f + 1}, {2 * f + 1}, ...), got {num_frames}"
            )
        self.check_image_size(height, width)

    def num_latent_frames(self, num_frames: int) -> int:
        """t = (T - 1) / 4 + 1 for a valid clip length T."""
        if num_frames < 1 or (num_frames - 1) % self.temporal_factor != 0:
            raise ValueError(f"`num_frames` must be {self.temporal_factor}k + 1, got {num_frames}")
        return (num_frames - 1) // self.temporal_factor + 1

    def _check_frames(self, frames: torch.Tensor) -> None:
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"`frames` must be [T,3,H,W], got shape {tuple(frames.shape)}")
        if not torch.isfinite(frames).all():
            raise ValueError("`frames` must be finite")
        lo, hi = float(frames.min()), float(frames.max())  # host sync: one check per call
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(f"`frames` must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")

    def _check_latents(self, latents: torch.Tensor) -> None:
        if latents.ndim != 4 or latents.shape[1] != self.z_dim:
            raise ValueError(
                f"`latents` must be [t,{self.z_dim},h,w], got shape {tuple(latents.shape)}"
            )

    # -- encode / decode --------------------------------------------------------------------
    def _encode_batch(self, x: torch.Tensor) -> torch.Tensor:  # [B,3,T,H,W] in [0,1] -> [B,C,t,h,w]
        x = (x * 2 - 1).to(device=self.device, dtype=self.dtype)
        z = self.vae.encode(x).latent_dist.mode().float()
        mean, std = self._stats()
        return (z - mean) / std

    @torch.no_grad()
    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """Encode one clip: frames [T,3,H,W] in [0,1], T = 4k+1 -> latents [k+1,C,H/s,W/s]
        (causally, or as the image latents of frames 0, 4, .., T-1 for a keyframe VAE)."""
        self._check_frames(frames)
        T, _, H, W = frames.shape
        self.check_video_shape(T, H, W)
        if self.video_latents == "keyframes":
            return self.encode_images(frames[:: self.temporal_factor])
        z = self._encode_batch(frames.permute(1, 0, 2, 3).unsqueeze(0))  # [1,C,t,h,w]
        return z[0].permute(1, 0, 2, 3).contiguous()  # [t,C,h,w]

    @torch.no_grad()
    def encode_images(self, frames: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
        """Encode each frame alone as a 1-frame clip: [T,3,H,W] in [0,1] -> [T,C,H/s,W/s].

        These image latents are what the memory stores. `batch_size` frames go through the VAE
        at once (the result does not depend on it beyond float rounding).
        """
        self._check_frames(frames)
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
        T, _, H, W = frames.shape
        self.check_image_size(H, W)
        out = []
        for i in range(0, T, batch_size):
            x = frames[i : i + batch_size].unsqueeze(2)  # [b,3,1,H,W]
            out.append(self._encode_batch(x)[:, :, 0])  # [b,C,h,w]
        return torch.cat(out, 0)

    def _decode_batch(self, z: torch.Tensor) -> torch.Tensor:  # [B,C,t,h,w] -> [B,3,T,H,W] in [0,1]
        mean, std = self._stats()
        z = (z.to(self.device, torch.float32) * std + mean).to(self.dtype)
        x = self.vae.decode(z).sample.float()
        return ((x + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Decode one clip: latents [t,C,h,w] -> frames [4(t-1)+1,3,h*s,w*s] in [0,1]."""
        self._check_latents(latents)
        x = self._decode_batch(latents.permute(1, 0, 2, 3).unsqueeze(0))  # [1,3,T,H,W]
        x = x[0].permute(1, 0, 2, 3).contiguous()
        if self.video_latents == "keyframes":  # latent m is frame 4m's image latent: decode it
            x[:: self.temporal_factor] = self.decode_images(latents).to(x.device)  # as one
        return x

    @torch.no_grad()
    def decode_images(self, latents: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
        """Decode image latents one by one: [T,C,h,w] -> [T,3,h*s,w*s] in [0,1]."""
        self._check_latents(latents)
        out = []
        for i in range(0, latents.shape[0], batch_size):
            out.append(self._decode_batch(latents[i : i + batch_size].unsqueeze(2))[:, :, 0])
        return torch.cat(out, 0)
