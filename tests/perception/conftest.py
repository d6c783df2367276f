"""Shared fixtures: a small outdoor synthetic scene with moving objects, and views that see both."""

import pytest
import torch

from mirage.geometry import Cameras
from mirage.synthetic import intrinsics, look_at


@pytest.fixture(scope="module")
def views(scene):
    """Three 24x32 cameras looking at a moving object (and the sky) at frames 0, 4, 8."""
    H, W = 24, 32
    frame_indices = torch.tensor([0, 4, 8])
    pos = scene.dynamic_positions(frame_indices)  # [D,T,3]
    eye = scene.start_camera(H, W).centers[0]
    c2w = torch.stack([look_at(eye, pos[0, t].float()) for t in range(len(frame_indices))])
    K = intrinsics(H, W, 70.0)[None].expand(len(frame_indices), 3, 3)
    cameras = Cameras(K, c2w, H, W)
    frames = torch.rand(len(frame_indices), 3, H, W, generator=torch.Generator().manual_seed(0))
    return frames, cameras, frame_indices


# --- tiny random transformers models saved to folders (no download) ---------------------


def _dinov2(**kw) -> dict:
    return dict(
        model_type="dinov2", hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, **kw,
    )  # fmt: skip


def _save_preprocessor(folder, processor_type: str, side: int, **settings) -> None:
    """preprocessor_config.json: resize to side x side, rescale, normalise (mean = std = 0.5)."""
    import json

    data = {
        "image_processor_type": processor_type, "do_resize": True,
        "size": {"height": side, "width": side}, "resample": 2, "do_rescale": True,
        "do_normalize": True, "image_mean": [0.5] * 3, "image_std": [0.5] * 3, **settings,
    }  # fmt: skip
    (folder / "preprocessor_config.json").write_text(json.dumps(data))


def _depth_anything(folder, depth_estimation_type: str):
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    backbone = Dinov2Config(
        **_dinov2(image_size=28, patch_size=14),
        out_features=["stage1", "stage2"],
        reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone, patch_size=14, reassemble_hidden_size=16,
        neck_hidden_sizes=[8, 16], reassemble_factors=[2, 1], fusion_hidden_size=8,
        head_hidden_size=4, depth_estimation_type=depth_estimation_type, max_depth=20,
    )  # fmt: skip
    torch.manual_seed(0)
    model = DepthAnythingForDepthEstimation(config)
    with torch.no_grad():  # an output that varies over the image and stays positive
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
                module.weight.normal_(0.0, 0.25)
        model.head.conv3.weight.normal_(0.0, 0.1)
        model.head.conv3.bias.fill_(1.0)
    model.save_pretrained(folder)
    _save_preprocessor(
        folder, "DPTImageProcessor", 42, keep_aspect_ratio=True, ensure_multiple_of=14,
        resample=3, rescale_factor=1 / 255, image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225], do_pad=False,
    )  # fmt: skip
    return folder


@pytest.fixture(scope="session")
def tiny_depth_anything(tmp_path_factory):
    return _depth_anything(tmp_path_factory.mktemp("da_relative"), "relative")


@pytest.fixture(scope="session")
def tiny_depth_anything_metric(tmp_path_factory):
    return _depth_anything(tmp_path_factory.mktemp("da_metric"), "metric")


@pytest.fixture(scope="session")
def tiny_depth_pro(tmp_path_factory):
    from transformers import DepthProConfig, DepthProForDepthEstimation

    folder = tmp_path_factory.mktemp("depth_pro")
    sub = _dinov2(image_size=16, patch_size=8)
    config = DepthProConfig(
        patch_size=16, fusion_hidden_size=8, intermediate_hook_ids=[1, 0],
        intermediate_feature_dims=[8, 8], scaled_images_ratios=[0.5, 1],
        scaled_images_overlap_ratios=[0.0, 0.25], scaled_images_feature_dims=[16, 8],
        use_fov_model=True, num_fov_head_layers=1, image_model_config=dict(sub),
        patch_model_config=dict(sub), fov_model_config=dict(sub),
    )  # fmt: skip
    torch.manual_seed(0)
    model = DepthProForDepthEstimation(config)
    with torch.no_grad():  # positive, varying canonical inverse depth
        model.head.layers[-2].weight.normal_(0.0, 0.003)
        model.head.layers[-2].bias.fill_(1.0)
        model.fov_model.head.layers[-1].weight.normal_(0.0, 0.05)  # field of view near 60 deg
        model.fov_model.head.layers[-1].bias.fill_(60.0)
    model.save_pretrained(folder)
    _save_preprocessor(folder, "DepthProImageProcessor", 32)
    return folder


@pytest.fixture(scope="session")
def tiny_sam3(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Sam3Config, Sam3Model

    folder = tmp_path_factory.mktemp("sam3")
    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<unk>": 3, "person": 4, "car": 5, "sky": 6}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<bos>",
        eos_token="<eos>",
    ).save_pretrained(folder)  # fmt: skip
    small = dict(hidden_size=16, num_layers=1, num_attention_heads=2, intermediate_size=32)
    config = Sam3Config(
        vision_config=dict(
            backbone_config=dict(
                model_type="sam3_vit_model", hidden_size=32, intermediate_size=64,
                num_hidden_layers=2, num_attention_heads=2, image_size=56, patch_size=14,
                window_size=2, global_attn_indexes=[1], pretrain_image_size=28,
            ),
            fpn_hidden_size=16, backbone_feature_sizes=[[16, 16], [8, 8], [4, 4]],
        ),
        text_config=dict(
            model_type="clip_text_model", vocab_size=len(vocab), hidden_size=16,
            intermediate_size=32, projection_dim=16, num_hidden_layers=1,
            num_attention_heads=2, max_position_embeddings=32, bos_token_id=1,
            eos_token_id=2, pad_token_id=0,
        ),
        geometry_encoder_config=dict(small), detr_encoder_config=dict(small),
        detr_decoder_config=dict(small, num_queries=5),
        mask_decoder_config=dict(hidden_size=16, num_upsampling_stages=2, num_attention_heads=2),
    )  # fmt: skip
    torch.manual_seed(0)
    Sam3Model(config).save_pretrained(folder)
    _save_preprocessor(folder, "Sam3ImageProcessor", 56)
    return folder
