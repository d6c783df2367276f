"""RealEstate10K camera files (read/write) and the frames that go with them (mp4 or images).

A camera file is text: the first line is the video URL, then one line per frame:

    timestamp_us fx fy cx cy 0 0 r11 r12 r13 t1 r21 r22 r23 t2 r31 r32 r33 t3

19 numbers: the timestamp in microseconds, intrinsics normalised by the image size (fx, cx
by the width, fy, cy by the height), two unused zeros, and the world-to-camera pose as a
row-major 3x4 matrix (OpenCV camera frame). We read cx, cy in the continuous pixel
convention: cx = 0.5 is the centre of the image, so K stays right under any resize.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mirage.atomic import atomic_path
from mirage.geometry import Cameras
from mirage.geometry.cameras import ROTATION_TOLERANCE

NUM_COLUMNS = 19
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def check_image_size(height, width) -> None:
    """Raise ValueError unless `height` and `width` are positive integers."""
    if int(height) != height or int(width) != width or height <= 0 or width <= 0:
        raise ValueError(f"`height` and `width` must be positive integers, got {height}x{width}")


def read_re10k_cameras(path: str | Path, height: int, width: int):
    """Read a RealEstate10K camera file for images of size `height x width`.

    Returns (timestamps_us [T] int64, Cameras with K [T,3,3] in pixels of that size).
    Malformed lines raise ValueError naming the file and the line number (1-based).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"camera file {path} does not exist")
    check_image_size(height, width)
    lines = path.read_text().splitlines()
    if not lines:
        raise ValueError(f"{path}: empty file (line 1 must be the video URL)")
    stamps, rows = [], []
    for no, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cols = line.split()
        where = f"{path}, line {no}"
        if len(cols) != NUM_COLUMNS:
            raise ValueError(f"{where}: expected {NUM_COLUMNS} numbers, got {len(cols)}")
        try:
            stamp = int(cols[0])
            vals = [float(c) for c in cols[1:]]
        except ValueError as e:
            raise ValueError(f"{where}: non-numeric value ({e})") from e
        v = torch.tensor(vals, dtype=torch.float64)
        if not torch.isfinite(v).all():
            raise ValueError(f"{where}: non-finite value")
        fx, fy = v[0], v[1]
        if fx <= 0 or fy <= 0:
            raise ValueError(
                f"{where}: focal lengths must be positive, got fx={float(fx)}, fy={float(fy)}"
            )
        w2c = v[6:].reshape(3, 4)
        R = w2c[:, :3]
        err = (R @ R.T - torch.eye(3, dtype=torch.float64)).abs().max()
        det = torch.linalg.det(R)
        if err > ROTATION_TOLERANCE or abs(det - 1) > ROTATION_TOLERANCE:
            raise ValueError(
                f"{where}: the world-to-camera rotation is not rigid "
                f"(|R R^T - I| = {float(err):.3g}, det = {float(det):.4f})"
            )
        stamps.append(stamp)
        rows.append(v)
    if not rows:
        raise ValueError(f"{path}: no camera lines after the URL line")
    v = torch.stack(rows)  # [T,18] float64
    T = len(v)
    K = torch.zeros(T, 3, 3, dtype=torch.float64)
    K[:, 0, 0], K[:, 1, 1] = v[:, 0] * width, v[:, 1] * height
    K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = v[:, 2] * width, v[:, 3] * height, 1.0
    Rw = v[:, 6:].reshape(T, 3, 4)[:, :, :3]
    tw = v[:, 6:].reshape(T, 3, 4)[:, :, 3]
    c2w = torch.eye(4, dtype=torch.float64).repeat(T, 1, 1)
    c2w[:, :3, :3] = Rw.transpose(1, 2)  # exact
    # centre = -R^-1 t, solved (not R^T t) so that a written file reads back bit for bit
    c2w[:, :3, 3] = -torch.linalg.solve(Rw, tw[..., None])[..., 0]
    return torch.tensor(stamps, dtype=torch.int64), Cameras(K.float(), c2w.float(), height, width)


def write_re10k_cameras(path: str | Path, url: str, timestamps_us, cameras: Cameras) -> None:
    """Write `cameras` as a RealEstate10K camera file (atomically). Inverse of the reader."""
    if not isinstance(cameras, Cameras):
        raise ValueError(f"`cameras` must be a Cameras, got {type(cameras).__name__}")
    stamps = torch.as_tensor(timestamps_us)
    if stamps.shape != (len(cameras),) or stamps.is_floating_point():
        raise ValueError(
            f"`timestamps_us` must be {len(cameras)} integers (one per camera), got "
            f"shape {tuple(stamps.shape)} dtype {stamps.dtype}"
        )
    if "\n" in url:
        raise ValueError("`url` must be one line")
    K = cameras.K.cpu().double()
    c2w = cameras.c2w.cpu().double()
    H, W = cameras.height, cameras.width
    R = c2w[:, :3, :3].transpose(1, 2)
    t = -(R @ c2w[:, :3, 3:])[..., 0]
    lines = [url]
    for i in range(len(cameras)):
        intr = [K[i, 0, 0] / W, K[i, 1, 1] / H, K[i, 0, 2] / W, K[i, 1, 2] / H]
        w2c = torch.cat([R[i], t[i, :, None]], 1).flatten()
        nums = [repr(float(x)) for x in intr] + ["0", "0"] + [repr(float(x)) for x in w2c]
        lines.append(" ".join([str(int(stamps[i]))] + nums))
    _write_text(Path(path), "\n".join(lines) + "\n")


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)


# --- frames ------------------------------------------------------------------------------


def resize_frames(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize [T,3,h,w] to [T,3,height,width]: bilinear with antialiasing, pixel-centre aligned
    (align_corners=False), which is the continuous convention the intrinsics assume."""
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"`frames` must have shape [T,3,H,W], got {tuple(frames.shape)}")
    if frames.shape[-2:] == (height, width):
        return frames
    return torch.nn.functional.interpolate(
        frames, size=(height, width), mode="bilinear", align_corners=False, antialias=True
    ).clamp_(0, 1)


def resize_clip(frames: torch.Tensor, cameras: Cameras, height: int, width: int):
    """Resize frames [T,3,h,w] and their cameras together to `height x width`."""
    if len(frames) != len(cameras) or frames.shape[-2:] != (cameras.height, cameras.width):
        raise ValueError(
            f"`frames` {tuple(frames.shape)} must match `cameras` (T={len(cameras)}, "
            f"{cameras.height}x{cameras.width})"
        )
    return resize_frames(frames, height, width), cameras.resized(height, width)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def count_frames(source: str | Path) -> int:
    """Number of frames in an mp4 or a folder of images."""
    source = Path(source)
    if source.is_dir():
        return len(_image_files(source))
    if not source.is_file():
        raise FileNotFoundError(f"frames source {source} does not exist")
    import imageio_ffmpeg

    return imageio_ffmpeg.count_frames_and_secs(str(source))[0]


def load_frames(source: str | Path, height: int, width: int, indices=None) -> torch.Tensor:
    """Frames [T,3,height,width] float32 in [0, 1] from an mp4 or a folder of PNG/JPG images.

    A folder's images are taken in sorted file-name order. `indices` selects frames (default
    all). Frames are resized with `resize_frames`; intrinsics normalised by the image size (as
    in RealEstate10K files) stay right, for pixel-unit K use `Cameras.resized`.
    """
    import imageio.v3 as iio

    source = Path(source)
    check_image_size(height, width)
    want = None if indices is None else [int(i) for i in indices]
    if source.is_dir():
        files = _image_files(source)
        if not files:
            raise FileNotFoundError(f"no {'/'.join(IMAGE_SUFFIXES)} images in {source}")
        idx = list(range(len(files))) if want is None else want
        bad = [i for i in idx if not 0 <= i < len(files)]
        if bad:
            raise ValueError(
                f"`indices` {bad[:5]} out of range for {len(files)} images in {source}"
            )
        out = [_to_frame(iio.imread(files[i]), height, width, source) for i in idx]
    elif source.is_file():
        import imageio_ffmpeg
        import numpy as np

        reader = imageio_ffmpeg.read_frames(str(source), pix_fmt="rgb24")
        w0, h0 = next(reader)["size"]
        wanted = None if want is None else set(want)
        stop = None if want is None else (max(want) + 1 if want else 0)
        kept, count = {}, 0  # decoded frames are resized at once: a long video never sits in memory
        try:
            for i, buf in enumerate(reader):
                if stop is not None and i >= stop:
                    break
                count = i + 1
                if wanted is None or i in wanted:
                    kept[i] = _to_frame(
                        np.frombuffer(buf, np.uint8).reshape(h0, w0, 3), height, width, source
                    )
        finally:
            reader.close()
        idx = list(range(count)) if want is None else want
        bad = [i for i in idx if i not in kept]
        if bad:
            raise ValueError(f"`indices` {bad[:5]} out of range for {count} frames in {source}")
        out = [kept[i] for i in idx]
    else:
        raise FileNotFoundError(f"frames source {source} does not exist")
    if not out:
        return torch.zeros(0, 3, height, width)
    return torch.stack(out)


def _to_frame(a, height: int, width: int, source) -> torch.Tensor:  # [h,w,(3|4)] uint8 -> [3,H,W]
    import numpy as np

    a = np.asarray(a)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.dtype != np.uint8:
        raise ValueError(f"{source}: expected 8-bit images, got {a.dtype}")
    t = torch.from_numpy(np.array(a[..., :3])).permute(2, 0, 1).float() / 255.0
    return resize_frames(t[None], height, width)[0]
