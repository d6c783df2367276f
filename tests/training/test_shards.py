"""Shard format: round trip, and bad folders fail at start-up naming the file."""

import json

import pytest
import torch
from safetensors.torch import save_file
from training_shards import fake_clip, write_fake_shards

from mirage.data.shards import (
    META_KEY,
    check_shard_dir,
    load_shard,
    read_shard_header,
    shard_name,
    write_index,
    write_shard,
)
from mirage.training.config import TrainConfig
from mirage.training.train import train


def test_round_trip(tmp_path):
    tensors, meta = fake_clip(0, text=True)
    write_shard(tmp_path / "a.safetensors", tensors, meta)
    back, back_meta = load_shard(tmp_path / "a.safetensors")
    assert set(back) == set(tensors)
    for k in tensors:
        assert torch.equal(back[k], tensors[k]), k
    assert back_meta["text"] == "embedding" and back_meta["chunk_frames"] == 9
    header = read_shard_header(tmp_path / "a.safetensors")
    assert header["shapes"]["chunk_latents"] == (2, 3, 16, 4, 4)  # n = 2 chunks, k = 2


def test_write_refuses_wrong_shape(tmp_path):
    tensors, meta = fake_clip(0)
    tensors["depth"] = tensors["depth"][:, :16]
    with pytest.raises(ValueError, match="depth"):
        write_shard(tmp_path / "a.safetensors", tensors, meta)
    assert not (tmp_path / "a.safetensors").exists()


def test_empty_folder(tmp_path):
    with pytest.raises(ValueError, match=str(tmp_path)):
        check_shard_dir(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing-dir"):
        check_shard_dir(tmp_path / "missing-dir")


def test_missing_shard_named(tmp_path):
    write_fake_shards(tmp_path, 3)
    (tmp_path / shard_name(1)).unlink()
    with pytest.raises(FileNotFoundError, match=shard_name(1)):
        check_shard_dir(tmp_path)


def test_mismatched_shape_named(tmp_path):
    write_fake_shards(tmp_path, 2)
    tensors, meta = fake_clip(5)
    tensors["image_latents"] = tensors["image_latents"][:-1]  # one aligned frame short
    meta = {"format": "mirage.shard", "version": 1, "text": "null", **meta}
    save_file(tensors, str(tmp_path / shard_name(1)), metadata={META_KEY: json.dumps(meta)})
    with pytest.raises(ValueError, match=f"{shard_name(1)}.*image_latents"):
        check_shard_dir(tmp_path)


def test_shards_that_disagree_named(tmp_path):
    write_fake_shards(tmp_path, 1)
    tensors, meta = fake_clip(1, num_frames=17, chunk_frames=17)
    write_shard(tmp_path / shard_name(1), tensors, meta)
    write_index(tmp_path, [shard_name(0), shard_name(1)], {})
    with pytest.raises(ValueError, match=f"{shard_name(1)}.*chunk_frames"):
        check_shard_dir(tmp_path)


def test_train_fails_at_startup_naming_the_file(tmp_path, monkeypatch):
    write_fake_shards(tmp_path / "data", 2)
    (tmp_path / "data" / shard_name(0)).unlink()
    import mirage.training.train as T

    def no_model(*a, **k):  # the failure must come before any model is built
        raise AssertionError("model built before the data was checked")

    monkeypatch.setattr(T, "build_model", no_model)
    cfg = TrainConfig(data=str(tmp_path / "data"), out=str(tmp_path / "out"), max_steps=1)
    with pytest.raises(FileNotFoundError, match=shard_name(0)):
        train(cfg)
