"""DepthAnything3Depth against a stand-in `depth_anything_3` module (the package is not a CI
dependency) and, where the real package is importable, a small random DA3 model built from it."""

import json
import math
import subprocess
import sys
import types
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mirage.geometry import Cameras
from mirage.perception import DepthAnything3Depth, DepthProvider, load_depth_provider
from mirage.perception.depth_anything3 import is_da3_folder, model_kind, poses_usable

H, W = 24, 32  # frames; H != W
FX, FY, CX, CY = 30.0, 26.0, 15.2, 11.7  # fx != fy, cx != cy
RES = 70  # process_res: the stand-in (like the package) works at 56 x 70, not 24 x 32
PH, PW = 56, 70


# --- a stand-in for the package: the documented API, recording what it is handed ----------


@dataclass
class FakePrediction:
    depth: np.ndarray  # [N,h',w'] at the processed size
    is_metric: int
    sky: np.ndarray | None = None  # [N,h',w'] bool
    conf: np.ndarray | None = None
    extrinsics: np.ndarray | None = None
    intrinsics: np.ndarray | None = None
    processed_images: np.ndarray | None = None


def _processed_size(h: int, w: int, res: int) -> tuple[int, int]:
    """The package's "upper_bound_resize": longest side -> res, then nearest multiple of 14."""
    s = res / max(h, w)
    h, w = max(1, int(round(h * s))), max(1, int(round(w * s)))
    near = lambda x: (x // 14) * 14 + 14 if x - (x // 14) * 14 >= 7 else (x // 14) * 14  # noqa: E731
    return near(h), near(w)


def field(u, v, level):
    """The stand-in's depth at normalised continuous image coordinates u, v in (0, 1)."""
    return level * (2.0 + u + 0.5 * v)


def _frame_level(image: np.ndarray) -> float:  # each frame gets its own depth level
    return 1.0 + float(image.astype(np.float64).mean()) / 255.0


class FakeDepthAnything3(torch.nn.Module):
    calls: list = []  # one dict per inference call
    loads: list = []  # from_pretrained kwargs
    invalid_cols = 0  # return NaN, then 0, on this many processed columns from the left

    def __init__(self, model_name: str = "da3-large"):
        super().__init__()
        self.model_name = model_name
        self.weight = torch.nn.Parameter(torch.zeros(1))

    @classmethod
    def from_pretrained(cls, folder, **kwargs):
        cls.loads.append(kwargs)
        with open(f"{folder}/config.json") as f:
            return cls(**json.load(f))

    def inference(self, image, extrinsics=None, intrinsics=None, process_res=504, **kwargs):
        assert isinstance(image, list) and all(
            isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 3 and x.shape[2] == 3
            for x in image
        )
        h0, w0 = image[0].shape[:2]
        h, w = _processed_size(h0, w0, process_res)
        K = None
        if intrinsics is not None:  # the package scales K row by row to the processed size
            K = np.array(intrinsics, dtype=np.float64)
            K[:, 0] *= w / w0
            K[:, 1] *= h / h0
        self.calls.append(
            dict(n=len(image), extrinsics=extrinsics, intrinsics=intrinsics, processed_K=K,
                 process_res=process_res, kwargs=kwargs)
        )  # fmt: skip
        v, u = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")
        depth = np.stack([field(u, v, _frame_level(x)) for x in image]).astype(np.float32)
        depth[:, :, : self.invalid_cols // 2] = np.nan
        depth[:, :, self.invalid_cols // 2 : self.invalid_cols] = 0.0
        kind = model_kind(self.model_name)
        sky = None
        if kind in ("mono", "metric"):  # checkpoints with a sky head: the top quarter
            sky = np.broadcast_to(v < 0.25, depth.shape).copy()
        is_metric = 1 if kind == "nested" else 0
        return FakePrediction(depth=depth, is_metric=is_metric, sky=sky)


@pytest.fixture
def fake_da3(monkeypatch):
    package = types.ModuleType("depth_anything_3")
    api = types.ModuleType("depth_anything_3.api")
    api.DepthAnything3 = FakeDepthAnything3
    package.api = api
    monkeypatch.setitem(sys.modules, "depth_anything_3", package)
    monkeypatch.setitem(sys.modules, "depth_anything_3.api", api)
    monkeypatch.setattr(FakeDepthAnything3, "calls", [])
    monkeypatch.setattr(FakeDepthAnything3, "loads", [])
    monkeypatch.setattr(FakeDepthAnything3, "invalid_cols", 0)
    return FakeDepthAnything3


def da3_folder(root, model_name: str):
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps({"model_name": model_name}))
    (root / "model.safetensors").write_bytes(b"stand-in")
    return root


def _rot_y(deg: float) -> torch.Tensor:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def make_cameras(centres, yaw_deg) -> Cameras:
    c2w = torch.eye(4).repeat(len(centres), 1, 1)
    for i, (c, a) in enumerate(zip(centres, yaw_deg, strict=True)):
        c2w[i, :3, :3] = _rot_y(a)
        c2w[i, :3, 3] = torch.tensor(c)
    K = torch.tensor([[FX, 0.0, CX], [0.0, FY, CY], [0.0, 0.0, 1.0]])
    return Cameras(K, c2w, H, W)


SPREAD = [[0.0, 0.0, 0.0], [0.4, 0.1, 0.0], [0.1, -0.2, 0.5], [-0.3, 0.0, 0.2], [0.2, 0.3, -0.1]]
YAW = [0.0, 10.0, -15.0, 25.0, 5.0]


def make_frames(T: int) -> torch.Tensor:  # [T,3,H,W], a different mean per frame
    g = torch.Generator().manual_seed(0)
    return (
        torch.rand(T, 3, H, W, generator=g) * 0.5 + torch.linspace(0, 0.5, T)[:, None, None, None]
    )


def expected_depth(frames: torch.Tensor) -> torch.Tensor:  # [T,H,W] the stand-in's field at H x W
    u8 = (frames.clamp(0, 1) * 255).round().to(torch.uint8)
    levels = torch.tensor([_frame_level(x.permute(1, 2, 0).numpy()) for x in u8])
    v, u = torch.meshgrid((torch.arange(H) + 0.5) / H, (torch.arange(W) + 0.5) / W, indexing="ij")
    return field(u[None], v[None], levels[:, None, None]).float()


# --- the stand-in ---------------------------------------------------------------------------


def test_stand_in_processes_at_another_size_than_the_frames():
    assert _processed_size(H, W, RES) == (PH, PW)  # 24x32 -> 52.5x70 -> 56x70
    assert _processed_size(480, 640, 504) == (378, 504)


def test_any_view_gets_w2c_poses_and_frame_intrinsics(fake_da3, tmp_path):
    provider = DepthAnything3Depth(da3_folder(tmp_path / "m", "da3-large"), process_res=RES)
    assert isinstance(provider, DepthProvider) and provider.metric is False
    assert fake_da3.loads == [{"local_files_only": True, "strict": True}]
    cams, frames = make_cameras(SPREAD[:3], YAW[:3]), make_frames(3)
    depth = provider(frames, cams, torch.arange(3))
    (call,) = fake_da3.calls
    assert call["n"] == 3 and call["process_res"] == RES
    # closed form: w2c = [R^T, -R^T c] for c2w = [R, c]
    for i in range(3):
        R, c = _rot_y(YAW[i]).numpy(), np.array(SPREAD[i])
        np.testing.assert_allclose(call["extrinsics"][i, :3, :3], R.T, atol=1e-6)
        np.testing.assert_allclose(call["extrinsics"][i, :3, 3], -R.T @ c, atol=1e-6)
        np.testing.assert_allclose(call["extrinsics"][i, 3], [0, 0, 0, 1], atol=0)
    K = np.array([[FX, 0, CX], [0, FY, CY], [0, 0, 1]])
    np.testing.assert_allclose(call["intrinsics"], np.broadcast_to(K, (3, 3, 3)), atol=1e-6)
    # ... which the package scales itself: x by 70/32, y by 56/24
    np.testing.assert_allclose(call["processed_K"][0, 0], [FX * PW / W, 0, CX * PW / W], atol=1e-5)
    np.testing.assert_allclose(call["processed_K"][0, 1], [0, FY * PH / H, CY * PH / H], atol=1e-5)
    # depth at 56 x 70 comes back at 24 x 32 and equals the field (bilinear is exact on it)
    assert depth.shape == (3, H, W) and depth.dtype == torch.float32
    torch.testing.assert_close(depth, expected_depth(frames), rtol=1e-5, atol=0)


@pytest.mark.parametrize(
    "what, centres",
    [
        ("one frame", SPREAD[:1]),
        ("two frames", SPREAD[:2]),
        ("collinear", [[0, 0, 0], [0, 0, 0.5], [0, 0, 1.0], [0, 0, 2.0]]),
        ("static", [[0.1, 0.2, 0.3]] * 3),
    ],
)
def test_no_poses_where_the_sim3_fit_is_undefined(fake_da3, tmp_path, what, centres):
    provider = DepthAnything3Depth(da3_folder(tmp_path / "m", "da3-small"), process_res=RES)
    T = len(centres)
    cams = make_cameras(centres, YAW[:T])
    assert not poses_usable(cams.c2w)
    depth = provider(make_frames(T), cams, torch.arange(T))
    assert fake_da3.calls[0]["extrinsics"] is None and fake_da3.calls[0]["intrinsics"] is None
    torch.testing.assert_close(depth, expected_depth(make_frames(T)), rtol=1e-5, atol=0)


def test_use_poses_false_hands_no_cameras(fake_da3, tmp_path):
    folder = da3_folder(tmp_path / "m", "da3-base")
    provider = DepthAnything3Depth(folder, process_res=RES, use_poses=False)
    provider(make_frames(3), make_cameras(SPREAD[:3], YAW[:3]), torch.arange(3))
    assert fake_da3.calls[0]["extrinsics"] is None


def test_metric_checkpoint_converts_with_the_cameras_focal_length(fake_da3, tmp_path):
    provider = load_depth_provider(da3_folder(tmp_path / "m", "da3metric-large"))
    assert isinstance(provider, DepthAnything3Depth) and provider.metric is True
    provider.process_res = RES
    cams, frames = make_cameras(SPREAD[:3], YAW[:3]), make_frames(3)
    depth = provider(frames, cams, torch.arange(3))
    assert fake_da3.calls[0]["extrinsics"] is None  # no camera encoder: no poses
    # metres = canonical x mean(fx, fy in pixels of the 56 x 70 image) / 300
    focal = 0.5 * (FX * PW / W + FY * PH / H)
    want = expected_depth(frames) * focal / 300.0
    rows = int(H * 0.25) + 1  # the stand-in's sky: top quarter of the processed image
    assert torch.isinf(depth[:, : int(H * 0.25) - 1]).all()  # sky -> +inf
    torch.testing.assert_close(depth[:, rows:], want[:, rows:], rtol=1e-5, atol=0)


def test_nested_checkpoint_is_metric_without_poses(fake_da3, tmp_path):
    provider = load_depth_provider(da3_folder(tmp_path / "m", "da3nested-giant-large"))
    assert provider.metric is True
    provider.process_res = RES
    frames = make_frames(3)
    depth = provider(frames, make_cameras(SPREAD[:3], YAW[:3]), torch.arange(3))
    assert fake_da3.calls[0]["extrinsics"] is None  # poses would rescale away from metres
    torch.testing.assert_close(depth, expected_depth(frames), rtol=1e-5, atol=0)


def test_mono_checkpoint_is_up_to_scale_with_sky(fake_da3, tmp_path):
    folder = da3_folder(tmp_path / "m", "da3mono-large")
    provider = DepthAnything3Depth(folder, process_res=RES)
    assert provider.metric is False
    depth = provider(make_frames(2), make_cameras(SPREAD[:2], YAW[:2]), torch.arange(2))
    assert torch.isinf(depth[:, :4]).all() and torch.isfinite(depth[:, 8:]).all()
    no_sky = DepthAnything3Depth(folder, process_res=RES, sky=False)
    assert torch.isfinite(no_sky(make_frames(2), make_cameras(SPREAD[:2], YAW[:2]),
                                 torch.arange(2))).all()  # fmt: skip


def test_invalid_estimates_become_zero(fake_da3, tmp_path):
    fake_da3.invalid_cols = 16  # NaN on processed columns 0..7 and 0 on 8..15, of 70
    provider = DepthAnything3Depth(da3_folder(tmp_path / "m", "da3-large"), process_res=RES)
    frames = make_frames(2)
    depth = provider(frames, make_cameras(SPREAD[:2], YAW[:2]), torch.arange(2))
    assert torch.isfinite(depth).all() and (depth >= 0).all()
    # output column j blends processed columns floor(x), floor(x) + 1, x = (j + 0.5) 70/32 - 0.5
    src = (torch.arange(W) + 0.5) * PW / W - 0.5
    touches = src.floor() < 16  # its left neighbour is invalid
    assert (src.floor() == 15).any()  # a column that straddles the edge of the invalid block
    assert (depth[:, :, touches] == 0).all()
    torch.testing.assert_close(
        depth[:, :, ~touches], expected_depth(frames)[:, :, ~touches], rtol=1e-5, atol=0
    )


def test_more_frames_than_batch_size_matches_one_batch(fake_da3, tmp_path):
    folder = da3_folder(tmp_path / "m", "da3-large")
    cams, frames = make_cameras(SPREAD, YAW), make_frames(5)
    one = DepthAnything3Depth(folder, process_res=RES, batch_size=5)(frames, cams, torch.arange(5))
    assert [c["n"] for c in fake_da3.calls] == [5]
    fake_da3.calls.clear()
    split = DepthAnything3Depth(folder, process_res=RES, batch_size=2)(
        frames, cams, torch.arange(5)
    )
    assert [c["n"] for c in fake_da3.calls] == [2, 2, 1]
    torch.testing.assert_close(split, one, rtol=0, atol=0)


def test_frames_and_cameras_are_checked(fake_da3, tmp_path):
    provider = DepthAnything3Depth(da3_folder(tmp_path / "m", "da3-large"), process_res=RES)
    with pytest.raises(ValueError, match="one camera per frame"):
        provider(make_frames(3), make_cameras(SPREAD[:2], YAW[:2]), torch.arange(3))
    assert fake_da3.calls == []


def test_folder_errors_name_the_folder_and_the_files(fake_da3, tmp_path):
    with pytest.raises(
        FileNotFoundError, match="does not exist.*config.json and model.safetensors"
    ):
        DepthAnything3Depth(tmp_path / "nowhere")
    folder = tmp_path / "partial"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_name": "da3-large"}))
    with pytest.raises(FileNotFoundError, match="partial.*missing model.safetensors"):
        DepthAnything3Depth(folder)
    with pytest.raises(FileNotFoundError, match="missing model.safetensors"):
        load_depth_provider(folder)  # dispatched on config.json alone
    (folder / "model.safetensors").write_bytes(b"x")
    (folder / "config.json").write_text(json.dumps({"model_name": "vggt-1b"}))
    with pytest.raises(ValueError, match="Depth Anything 3 model.*'vggt-1b'"):
        DepthAnything3Depth(folder)
    assert fake_da3.loads == []


def test_argument_errors(fake_da3, tmp_path):
    folder = da3_folder(tmp_path / "m", "da3-large")
    with pytest.raises(ValueError, match="`dtype` must be torch.float32.*bfloat16"):
        DepthAnything3Depth(folder, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="`batch_size` must be a positive integer, got 0"):
        DepthAnything3Depth(folder, batch_size=0)
    with pytest.raises(ValueError, match="`process_res` must be an integer >= 14, got 10"):
        DepthAnything3Depth(folder, process_res=10)


def test_missing_package_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "depth_anything_3", None)  # import fails
    monkeypatch.setitem(sys.modules, "depth_anything_3.api", None)
    with pytest.raises(ImportError, match=r'pip install "mirage-world\[da3\]"'):
        DepthAnything3Depth(da3_folder(tmp_path / "m", "da3-large"))


def test_dispatch_tells_da3_folders_from_transformers_folders(tmp_path):
    assert is_da3_folder(da3_folder(tmp_path / "a", "da3-giant"))
    other = tmp_path / "b"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "depth_anything"}))
    assert not is_da3_folder(other) and not is_da3_folder(tmp_path / "none")
    assert [model_kind(n) for n in ("da3-small", "da3mono-large", "da3metric-large",
                                    "da3nested-giant-large")] == [
        "anyview", "mono", "metric", "nested"]  # fmt: skip


# --- the real package, where it is installed (not in CI) -----------------------------------


@pytest.fixture(scope="module")
def tiny_da3(tmp_path_factory):
    """A randomly initialised da3-small (the package's own classes) saved to a folder."""
    api = pytest.importorskip("depth_anything_3.api")
    torch.manual_seed(0)
    model = api.DepthAnything3(model_name="da3-small").eval()
    folder = tmp_path_factory.mktemp("da3_small")
    model.save_pretrained(folder)
    return model, folder


def _direct(model, frames, cameras, poses: bool):  # the package called by hand -> [T,h',w']
    u8 = (frames.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    kw = dict(extrinsics=cameras.w2c.numpy(), intrinsics=cameras.K.numpy()) if poses else {}
    return torch.from_numpy(model.inference(list(u8), process_res=RES, **kw).depth)


def test_real_package_small_model(tiny_da3):
    model, folder = tiny_da3
    provider = load_depth_provider(folder)
    assert isinstance(provider, DepthAnything3Depth) and provider.metric is False
    provider.process_res = RES
    frames, cams = make_frames(3), make_cameras(SPREAD[:3], YAW[:3])
    depth = provider(frames, cams, torch.arange(3))
    assert depth.shape == (3, H, W) and depth.dtype == torch.float32
    assert torch.isfinite(depth).all() and (depth > 0).all()
    raw = _direct(model, frames, cams, poses=True)
    assert raw.shape == (3, PH, PW)  # the processed size, not the frames'
    want = F.interpolate(raw[:, None], (H, W), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(depth, want, rtol=1e-4, atol=0)
    # with poses the depth follows the cameras' units: twice the baseline, twice the depth
    c2w = cams.c2w.clone()
    c2w[:, :3, 3] *= 2.0
    doubled = provider(frames, Cameras(cams.K, c2w, H, W), torch.arange(3))
    torch.testing.assert_close(doubled, 2.0 * depth, rtol=1e-3, atol=0)


def test_real_package_without_poses(tiny_da3):
    model, folder = tiny_da3
    provider = DepthAnything3Depth(folder, process_res=RES, batch_size=4)
    line = make_cameras([[0, 0, 0], [0, 0, 0.5], [0, 0, 1.0]], [0.0, 0.0, 0.0])  # collinear
    frames = make_frames(3)
    depth = provider(frames, line, torch.arange(3))
    want = F.interpolate(_direct(model, frames, line, poses=False)[:, None], (H, W),
                         mode="bilinear", align_corners=False)[:, 0]  # fmt: skip
    torch.testing.assert_close(depth, want, rtol=1e-4, atol=0)
    one = provider(frames[:1], line[:1], torch.arange(1))
    assert one.shape == (1, H, W) and torch.isfinite(one).all() and (one > 0).all()


def test_import_does_not_load_the_package():
    code = "import sys, mirage.perception; print('depth_anything_3' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
