"""Sam3Masks on a tiny random SAM3 saved to a folder, against a query-by-query reference."""

import shutil
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from mirage.geometry import Cameras
from mirage.perception import (
    GroundTruthMasks,
    MaskProvider,
    NoMasks,
    Sam3Masks,
    load_mask_provider,
)


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(1)
    K = torch.tensor([[30.0, 0, 20], [0, 30, 15], [0, 0, 1]]).expand(2, 3, 3)
    cams = Cameras(K, torch.eye(4).expand(2, 4, 4), 30, 40)
    return torch.rand(2, 3, 30, 40, generator=g), cams, torch.arange(2)


def _reference(provider, frames, prompts, threshold, mask_threshold):
    """One frame and one prompt at a time, every query checked in a loop."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(provider.folder, local_files_only=True)
    T, _, H, W = frames.shape
    out = torch.zeros(T, H, W, dtype=torch.bool)
    with torch.no_grad():
        for t in range(T):
            x = F.interpolate(frames[t : t + 1], (56, 56), mode="bilinear", antialias=True)
            x = (x - 0.5) / 0.5
            for p in prompts:
                text = tok([p], padding="max_length", max_length=32, return_tensors="pt")
                o = provider.model(pixel_values=x, **text)
                presence = torch.sigmoid(o.presence_logits[0, 0])
                for q in range(o.pred_logits.shape[1]):
                    if torch.sigmoid(o.pred_logits[0, q]) * presence > threshold:
                        m = F.interpolate(o.pred_masks[0, q][None, None].sigmoid(), (H, W),
                                          mode="bilinear", align_corners=False)  # fmt: skip
                        out[t] |= m[0, 0] > mask_threshold
    return out


@pytest.mark.parametrize("threshold", [0.0, "median"])
def test_union_of_instances_over_prompts(tiny_sam3, inputs, threshold):
    frames, cams, idx = inputs
    prompts = ("person", "sky")
    probe = Sam3Masks(tiny_sam3, prompts=prompts, threshold=0.0)
    if threshold == "median":  # keep about half the queries so the score filter matters
        with torch.no_grad():
            v = probe.model.get_vision_features(pixel_values=probe.pixel_values(frames))
            o = probe.model(vision_embeds=v, input_ids=probe.input_ids[:1].expand(2, -1),
                            attention_mask=probe.attention_mask[:1].expand(2, -1))  # fmt: skip
        scores = o.pred_logits.sigmoid() * o.presence_logits.sigmoid()
        threshold = float(scores.median())
    provider = Sam3Masks(tiny_sam3, prompts=prompts, threshold=threshold, batch_size=1)
    assert isinstance(provider, MaskProvider)
    exclude = provider(frames, cams, idx)
    assert exclude.shape == (2, 30, 40) and exclude.dtype == torch.bool
    expected = _reference(provider, frames, prompts, threshold, 0.5)
    assert expected.any() and not expected.all()  # the test can tell a wrong union apart
    assert torch.equal(exclude, expected)


def test_more_prompts_exclude_more(tiny_sam3, inputs):
    frames, cams, idx = inputs
    one = Sam3Masks(tiny_sam3, prompts=("person",), threshold=0.0)(frames, cams, idx)
    two = Sam3Masks(tiny_sam3, prompts=("person", "car"), threshold=0.0)(frames, cams, idx)
    car = Sam3Masks(tiny_sam3, prompts="car", threshold=0.0)(frames, cams, idx)
    assert torch.equal(two, one | car)


def test_mask_specs(tiny_sam3, scene):
    assert isinstance(load_mask_provider("none"), NoMasks)
    assert isinstance(load_mask_provider("gt", scene=scene), GroundTruthMasks)
    with pytest.raises(ValueError, match="scene"):
        load_mask_provider("gt")
    provider = load_mask_provider(str(tiny_sam3), prompts=("car",), threshold=0.3)
    assert isinstance(provider, Sam3Masks) and provider.prompts == ("car",)


def test_missing_sam3_files_are_named(tiny_sam3, tmp_path):
    folder = tmp_path / "sam3"
    shutil.copytree(tiny_sam3, folder)
    (folder / "tokenizer.json").unlink()
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError) as err:
        load_mask_provider(str(folder))
    msg = str(err.value)
    assert str(folder) in msg and "model.safetensors" in msg and "tokenizer.json" in msg
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Sam3Masks(tmp_path / "nowhere")


def test_bad_arguments_are_refused(tiny_sam3, tiny_depth_pro, tmp_path):
    with pytest.raises(ValueError, match="prompts"):
        Sam3Masks(tiny_sam3, prompts=())
    with pytest.raises(ValueError, match="threshold"):
        Sam3Masks(tiny_sam3, threshold=1.5)
    shutil.copy(tiny_sam3 / "tokenizer.json", tmp_path / "tokenizer.json")
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        shutil.copy(tiny_depth_pro / name, tmp_path / name)
    with pytest.raises(ValueError, match="got 'depth_pro'"):
        Sam3Masks(tmp_path)


def test_import_is_light():
    code = "import sys, mirage.perception; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_old_transformers_gives_a_clear_import_error(monkeypatch):
    import types

    from mirage.perception.masks import SAM3_TRANSFORMERS, _import_sam3

    fake = types.ModuleType("transformers")
    fake.__version__ = "4.40.0"
    monkeypatch.setitem(sys.modules, "transformers", fake)
    with pytest.raises(ImportError, match=f">= {SAM3_TRANSFORMERS}.*installed: 4.40.0"):
        _import_sam3()
