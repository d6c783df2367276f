"""`mirage generate` from a tiny model folder: files on disk, frame count, clear refusals."""

import json

import pytest
from typer.testing import CliRunner

from mirage.cli import app
from mirage.data.re10k import count_frames
from mirage.memory import LatentSpatialMemory
from mirage.pipeline import GenerationConfig

ARGS = ["--scene", "1", "--frames", "17", "--chunk-frames", "9", "--steps", "2", "--size", "64x64"]


def test_generate_writes_video_frames_memory_and_metadata(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        ["generate", "--model", str(tiny_model_dir), "--out", str(out), "--voxel-size", "0.05"]
        + ARGS,
    )
    assert result.exit_code == 0, result.output
    assert count_frames(out / "video.mp4") == 17
    assert len(list((out / "frames").glob("*.png"))) == 17
    meta = json.loads((out / "metadata.json").read_text())
    assert [c["latent_frames"] for c in meta["chunks"]] == [[0, 4, 8], [8, 12, 16]]
    assert len(meta["timings"]) == 2 and meta["config"]["voxel_size"] == 0.05
    memory = LatentSpatialMemory.load(out / "memory.safetensors")
    assert memory.num_points == meta["timings"][-1]["cache_points"]
    # typed values, the files really used, and the machine and versions it ran on
    assert meta["job"]["frames"] == 17 and meta["job"]["overwrite"] is False
    assert meta["job"]["branch"] == str(tiny_model_dir / "side_branch.safetensors")
    assert meta["machine"]["torch"] and meta["machine"]["packages"]["diffusers"]
    assert (out / "memory.ply").stat().st_size > memory.num_points * 15


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--frames", "15"], "nearest lengths that fit"),
        (["--memory", "voxels"], "memory"),
        (["--depth", "/no/such/depth-model"], "depth-model"),
        (["--sky-distance", "far"], "sky_distance"),
        (["--voxel-size", "big"], "voxel_size"),
        (["--readout-copy", "1.5"], "readout_copy"),
        (["--memory-guidance-sigma", "0"], "memory_guidance_sigma"),
        (["--readout-copy", "0.5", "--memory", "none"], "needs a memory"),
    ],
)
def test_generate_refuses_bad_options(tiny_model_dir, tmp_path, extra, message):
    args = ["generate", "--model", str(tiny_model_dir), "--out", str(tmp_path / "x"), *ARGS, *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and message in result.output
    assert not (tmp_path / "x" / "video.mp4").exists()


def test_generate_refuses_missing_model_folder(tmp_path):
    args = ["generate", "--model", str(tmp_path / "none"), "--out", str(tmp_path / "x"), *ARGS]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and "model folder not found" in result.output


def _text(result) -> str:
    """The CLI's message as one line (Rich wraps it in a box)."""
    return " ".join(result.output.replace("│", " ").split())


def _no_model_loads(monkeypatch):
    import mirage.pipeline.loading as loading

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(loading, "build_pipeline", refuse)


def _bad_cases(tiny_model_dir, tmp_path):
    not_image = tmp_path / "notes.png"
    not_image.write_text("not a picture")
    plain = tmp_path / "no-branch"
    plain.mkdir()
    for sub in ("transformer", "vae", "scheduler"):
        (plain / sub).symlink_to(tiny_model_dir / sub)
    yield ["--frames", "10"], ["nearest lengths that fit"]
    yield ["--size", "63x65"], ["multiple of 16"]
    yield ["--device", "cuda"], ["no CUDA device"]
    yield ["--dtype", "int8"], ["`dtype` must be one of"]
    yield ["--prompt", "a room"], ["needs a text encoder"]
    yield ["--guidance", "3"], ["needs a prompt and a text encoder"]
    yield ["--image", str(not_image)], ["not both"]
    yield ["--model", str(plain)], ["needs a side branch", "--memory none"]
    yield ["NO_SCENE", "--image", str(not_image)], ["not a readable image"]


@pytest.mark.parametrize("case", range(9))
def test_bad_input_is_refused_in_one_line_before_any_model_loads(
    tiny_model_dir, tmp_path, monkeypatch, case
):
    _no_model_loads(monkeypatch)
    extra, says = list(_bad_cases(tiny_model_dir, tmp_path))[case]
    out = tmp_path / "run"
    base = ARGS[2:] if extra[0] == "NO_SCENE" else ARGS  # ARGS start with --scene 1
    extra = [e for e in extra if e != "NO_SCENE"]
    args = ["generate", "--model", str(tiny_model_dir), "--out", str(out), *base, *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert all(s in _text(result) for s in says), result.output
    assert "Traceback" not in result.output and not out.exists()


def test_an_out_that_is_a_file_or_a_used_folder_is_refused(tiny_model_dir, tmp_path, monkeypatch):
    _no_model_loads(monkeypatch)
    (tmp_path / "file").write_text("keep me")
    used = tmp_path / "used"
    used.mkdir()
    (used / "mine.txt").write_text("keep me")
    for out, says in ((tmp_path / "file", "is a file"), (used, "not empty")):
        args = ["generate", "--model", str(tiny_model_dir), "--out", str(out), *ARGS]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and says in _text(result), result.output
    assert (tmp_path / "file").read_text() == "keep me" and (used / "mine.txt").is_file()


def test_a_rerun_with_overwrite_leaves_exactly_the_new_run(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    base = ["generate", "--model", str(tiny_model_dir), "--out", str(out), "--memory", "none"]
    assert CliRunner().invoke(app, base + ARGS).exit_code == 0
    assert len(list((out / "frames").glob("*.png"))) == 17
    shorter = [a if a != "17" else "9" for a in ARGS]
    result = CliRunner().invoke(app, base + shorter + ["--overwrite"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "frames").iterdir()) == [f"{i:04d}.png" for i in range(9)]
    assert not (out / "memory.safetensors").exists()  # memory off: nothing stale left
    assert not list(tmp_path.glob(".run.tmp-*"))


@pytest.mark.slow
def test_generate_with_only_a_scene_uses_the_embedded_model_natively(tmp_path):
    # No --model, size, chunk length or steps: mirage-tiny at the 64x64 / 9-frame chunks /
    # 10 steps it was trained for. Its frames must be pictures, not noise: nearer to the
    # ground truth than a flat image of the first frame's mean colour.
    import imageio.v3 as iio
    import torch

    from mirage.data.trajectories import make_trajectory
    from mirage.eval.metrics import psnr
    from mirage.synthetic import make_scene

    out = tmp_path / "d"
    result = CliRunner().invoke(app, ["generate", "--scene", "900003", "--out", str(out)])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["size"] == [64, 64] and meta["config"]["chunk_frames"] == 9
    pngs = sorted((out / "frames").glob("*.png"))
    frames = torch.stack([torch.from_numpy(iio.imread(p)).permute(2, 0, 1) for p in pngs]) / 255
    scene = make_scene(900003)
    gt = scene.render(make_trajectory("orbit", scene.start_camera(64, 64), 33)).rgb
    flat = gt[:1].mean(dim=(2, 3), keepdim=True).expand_as(gt)
    assert frames.shape == gt.shape
    assert psnr(frames[1:], gt[1:]).mean > psnr(flat[1:], gt[1:]).mean
    assert frames[1:].std(dim=(2, 3)).mean() > 0.3 * gt[1:].std(dim=(2, 3)).mean()


def test_a_user_image_with_memory_off_needs_no_depth_and_takes_the_fov(tiny_model_dir, tmp_path):
    import imageio.v3 as iio
    import numpy as np

    gray = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) % 251).astype(np.uint8)
    iio.imwrite(tmp_path / "gray.png", gray)  # a grey picture becomes RGB
    out = tmp_path / "run"
    args = ["generate", "--model", str(tiny_model_dir), "--out", str(out), "--image",
            str(tmp_path / "gray.png"), "--memory", "none", "--fov", "90", "--frames", "9",
            "--chunk-frames", "9", "--steps", "1"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    K = json.loads((out / "metadata.json").read_text())["cameras"]["K"][0]
    assert K[0][0] == pytest.approx(32.0)  # f = (W / 2) / tan(45 deg)


def test_size_crops_to_the_aspect_ratio_instead_of_stretching():
    import torch

    from mirage.pipeline.runner import _fit

    # a 40x80 picture: left half black, right half white; 64x64 keeps the middle 40x40
    img = torch.zeros(3, 40, 80)
    img[:, :, 40:] = 1.0
    out = _fit(img, (64, 64))
    assert out.shape == (3, 64, 64)
    assert out[:, :, :30].max() < 0.05 and out[:, :, 34:].min() > 0.95  # the edge stays central
    tall = _fit(torch.rand(3, 90, 30), (32, 32))
    assert tall.shape == (3, 32, 32)


def test_a_size_the_model_was_not_trained_for_is_warned_about(tmp_path):
    import warnings

    import torch

    from mirage.pipeline.runner import GenerateJob, check_job, resolve_model

    job = GenerateJob(model=resolve_model("tiny"), out=tmp_path / "x", scene_seed=1)
    image = torch.zeros(3, 128, 128)
    cams = type("C", (), {"height": 128, "width": 128, "__len__": lambda self: 33})()
    with pytest.warns(UserWarning, match="trained for 64x64 frames in chunks of 9"):
        check_job(job, cams, image)  # GenerationConfig's defaults: chunks of 33
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        native = GenerateJob(model=job.model, out=job.out, scene_seed=1,
                             config=GenerationConfig(chunk_frames=9))  # fmt: skip
        cams.height = cams.width = 64
        check_job(native, cams, torch.zeros(3, 64, 64))


def test_generate_references_flag_reaches_the_loop(tiny_model_dir, tmp_path):
    out = tmp_path / "refs"
    args = ["generate", "--model", str(tiny_model_dir), "--out", str(out), "--references", "on"]
    result = CliRunner().invoke(app, args + ARGS[:2] + ["--frames", "25"] + ARGS[4:])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["config"]["references"] == "on" and meta["profile"] == "mirage"
    assert meta["references"][0] == [] and all(meta["references"][1:])
    bad = CliRunner().invoke(app, args[:-1] + ["sometimes", "--out", str(tmp_path / "x")] + ARGS)
    assert bad.exit_code != 0 and "references" in bad.output


def test_context_parallel_refuses_references_of_the_official_profile_before_loading(tmp_path):
    """`references` auto means on for an official branch: under --ulysses it is refused by the
    job check (before any process waits on another), and --references off passes."""
    from dataclasses import replace

    from mirage.models.loading import tiny_components
    from mirage.models.transformer import MirageTransformer
    from mirage.pipeline.runner import GenerateJob, check_parallel

    official = tmp_path / "official.safetensors"
    base = tiny_components(0).transformer
    MirageTransformer.from_base(base, profile="official").save_side_branch(official)
    mirage = tmp_path / "mirage.safetensors"
    MirageTransformer.from_base(base).save_side_branch(mirage)
    job = GenerateJob(model=tmp_path, out=tmp_path / "out", branch=official, ulysses=2)
    with pytest.raises(ValueError, match="--references off"):
        check_parallel(job)
    check_parallel(replace(job, config=GenerationConfig(references="off")))
    check_parallel(replace(job, branch=mirage))  # auto is off for our profile
    with pytest.raises(ValueError, match="not supported"):
        check_parallel(replace(job, branch=mirage, config=GenerationConfig(references="on")))
