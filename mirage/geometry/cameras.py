"""Cameras: a batch of pinhole cameras (intrinsics + camera-to-world poses) with one image size.

Conventions (the whole repo): OpenCV camera frame (x right, y down, z forward); `c2w` maps
camera coordinates to world coordinates; intrinsics `K` are in pixels of the image of size
`height x width` under the continuous pixel convention, where the centre of pixel (row i,
col j) is at (j + 0.5, i + 0.5). Resizing an image by a factor f in each axis therefore maps
`K` to `diag(f, f, 1) @ K` exactly.
"""

from __future__ import annotations

import torch

ROTATION_TOLERANCE = 1e-3  # max |R^T R - I| entry, and | det R - 1 |, accepted as rigid


def _check_rigid(c2w: torch.Tensor, name: str) -> None:
    """Raise ValueError unless every pose in c2w [T,4,4] is finite, rigid and right-handed."""
    if not torch.isfinite(c2w).all():
        bad = (~torch.isfinite(c2w)).flatten(1).any(1).nonzero().flatten().tolist()
        raise ValueError(f"`{name}` must be finite, got non-finite values in poses {bad[:8]}")
    R = c2w[:, :3, :3].double()
    eye = torch.eye(3, dtype=R.dtype, device=R.device)
    ortho_err = (R.transpose(1, 2) @ R - eye).abs().flatten(1).amax(1)
    det_err = (torch.linalg.det(R) - 1).abs()
    bad = ((ortho_err > ROTATION_TOLERANCE) | (det_err > ROTATION_TOLERANCE)).nonzero().flatten()
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"`{name}` must hold rigid poses (rotation orthonormal with det +1, tolerance "
            f"{ROTATION_TOLERANCE}); pose {i} has |R^T R - I| = {float(ortho_err[i]):.3g}, "
            f"det R = {float(torch.linalg.det(R[i])):.4f}"
        )
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=c2w.dtype, device=c2w.device)
    if not torch.allclose(c2w[:, 3, :], bottom.expand(len(c2w), 4), atol=1e-6):
        raise ValueError(f"`{name}` must have last row [0, 0, 0, 1] in every pose")


def _check_intrinsics(K: torch.Tensor) -> None:
    if not torch.isfinite(K).all():
        raise ValueError("`K` must be finite")
    if not ((K[:, 0, 0] > 0) & (K[:, 1, 1] > 0)).all():
        bad = ((K[:, 0, 0] <= 0) | (K[:, 1, 1] <= 0)).nonzero().flatten().tolist()
        raise ValueError(
            f"`K` must have positive focal lengths fx, fy; not so in cameras {bad[:8]}"
        )
    last = torch.tensor([0.0, 0.0, 1.0], dtype=K.dtype, device=K.device)
    if not torch.allclose(K[:, 2, :], last.expand(len(K), 3)) or (K[:, 1, 0] != 0).any():
        raise ValueError("`K` must be upper triangular with last row [0, 0, 1]")


class Cameras:
    """T pinhole cameras sharing one image size.

    Args:
        K: [T,3,3] intrinsics in pixels of a `height x width` image (continuous convention).
        c2w: [T,4,4] camera-to-world rigid transforms (OpenCV camera frame).
        height, width: the image size K belongs to.
    """

    def __init__(self, K: torch.Tensor, c2w: torch.Tensor, height: int, width: int):
        K = torch.as_tensor(K)
        c2w = torch.as_tensor(c2w)
        if K.ndim == 2:
            K = K.unsqueeze(0)
        if c2w.ndim == 2:
            c2w = c2w.unsqueeze(0)
        if K.ndim != 3 or K.shape[1:] != (3, 3):
            raise ValueError(f"`K` must have shape [T,3,3], got {tuple(K.shape)}")
        if c2w.ndim != 3 or c2w.shape[1:] != (4, 4):
            raise ValueError(f"`c2w` must have shape [T,4,4], got {tuple(c2w.shape)}")
        if len(K) == 1 and len(c2w) > 1:  # one shared intrinsics matrix
            K = K.expand(len(c2w), 3, 3)
        if len(K) != len(c2w):
            raise ValueError(f"`K` and `c2w` must hold the same T, got {len(K)} and {len(c2w)}")
        if int(height) != height or int(width) != width or height <= 0 or width <= 0:
            raise ValueError(
                f"`height` and `width` must be positive integers, got {height}x{width}"
            )
        K = K.to(torch.float32).contiguous()
        c2w = c2w.to(device=K.device, dtype=torch.float32).contiguous()
        _check_intrinsics(K)
        _check_rigid(c2w, "c2w")
        self.K, self.c2w = K, c2w
        self.height, self.width = int(height), int(width)

    @classmethod
    def from_w2c(cls, K: torch.Tensor, w2c: torch.Tensor, height: int, width: int) -> Cameras:
        """Build from world-to-camera poses (checked for rigidity before inversion)."""
        w2c = torch.as_tensor(w2c, dtype=torch.float32)
        if w2c.ndim == 2:
            w2c = w2c.unsqueeze(0)
        if w2c.ndim != 3 or w2c.shape[1:] != (4, 4):
            raise ValueError(f"`w2c` must have shape [T,4,4], got {tuple(w2c.shape)}")
        _check_rigid(w2c, "w2c")
        return cls(K, rigid_inverse(w2c), height, width)

    @classmethod
    def cat(cls, cameras: list[Cameras]) -> Cameras:
        sizes = {(c.height, c.width) for c in cameras}
        if len(sizes) != 1:
            raise ValueError(f"can only concatenate cameras of one image size, got {sorted(sizes)}")
        h, w = sizes.pop()
        K = torch.cat([c.K for c in cameras])
        return cls(K, torch.cat([c.c2w for c in cameras]), h, w)

    def __len__(self) -> int:
        return len(self.c2w)

    def __getitem__(self, index) -> Cameras:
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return Cameras(self.K[index], self.c2w[index], self.height, self.width)

    def __repr__(self) -> str:
        return f"Cameras(T={len(self)}, size={self.height}x{self.width}, device={self.device})"

    @property
    def device(self) -> torch.device:
        return self.c2w.device

    @property
    def w2c(self) -> torch.Tensor:  # [T,4,4]
        return rigid_inverse(self.c2w)

    @property
    def centers(self) -> torch.Tensor:  # [T,3] camera centres in world coordinates
        return self.c2w[:, :3, 3]

    def to(self, device) -> Cameras:
        return Cameras(self.K.to(device), self.c2w.to(device), self.height, self.width)

    def resized(self, height: int, width: int) -> Cameras:
        """The same views for the image resized to `height x width` (axes scaled separately)."""
        sx, sy = width / self.width, height / self.height
        S = torch.tensor(
            [[sx, 0, 0], [0, sy, 0], [0, 0, 1]], dtype=self.K.dtype, device=self.device
        )
        return Cameras(S @ self.K, self.c2w, height, width)

    def scaled(self, factor: float) -> Cameras:
        """The same views for the image resized by `factor` (1/16: image -> 16x latent grid).

        The new size must be whole: `height * factor` and `width * factor` are integers.
        """
        h, w = self.height * factor, self.width * factor
        if abs(h - round(h)) > 1e-6 or abs(w - round(w)) > 1e-6 or round(h) < 1 or round(w) < 1:
            raise ValueError(
                f"`factor` {factor} must map the image size {self.height}x{self.width} to a "
                f"whole size, got {h:g}x{w:g}"
            )
        return self.resized(round(h), round(w))


def rigid_inverse(T: torch.Tensor) -> torch.Tensor:
    """Inverse of rigid transforms [...,4,4] via R^T (exact up to rounding, no LU)."""
    R, t = T[..., :3, :3], T[..., :3, 3:]
    out = torch.zeros_like(T)
    out[..., :3, :3] = R.transpose(-1, -2)
    out[..., :3, 3:] = -R.transpose(-1, -2) @ t
    out[..., 3, 3] = 1
    return out
