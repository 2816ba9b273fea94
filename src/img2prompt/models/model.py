"""The image -> prompt-embedding model and its folder format.

A model folder holds `model.json` (backbone spec, head, pooling, preprocessing, target encoder,
version, training summary) and `model.safetensors`; architectures from transformers also keep
their `config.json` in a sub-folder, so loading needs neither the hub nor training code. A folder
whose config says `backbone_weights: pretrained` keeps only the weights after the backbone; the
backbone's come from its factory (a pip package), which keeps the packaged default model small.

`load_model("default")` loads the zero-download default model shipped inside the package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from img2prompt.errors import InputError
from img2prompt.models.backbones import Backbone, build_backbone
from img2prompt.models.heads import build_head
from img2prompt.models.options import ModelConfig
from img2prompt.models.pooling import build_pool
from img2prompt.models.protocol import (
    DEFAULT_KIND,
    PromptModel,
    model_loader,
    register_model_kind,
)

MODEL_FORMAT = "img2prompt-model"
# 2: config.backbone_weights (a folder may leave the pretrained backbone's weights to its package).
MODEL_FORMAT_VERSION = 2
DEFAULT_MODEL = "default"
# ModelConfig lives in models/options.py; it is re-exported here.
__all__ = [
    "ImageToPromptModel",
    "ModelConfig",
    "PromptModel",
    "load_model",
    "save_model",
    "write_model_manifest",
]


class ImageToPromptModel(PromptModel):
    """Backbone (+ optional frozen style extractor) -> pooled features -> head -> (B, out_dim).

    The output is not normalised; cosine losses and prediction normalise it. A `PromptModel` of
    kind `trained`: its outputs are the prompt embeddings.
    """

    kind = DEFAULT_KIND

    def __init__(
        self,
        cfg: ModelConfig,
        pretrained: bool = True,
        backbone: Backbone | None = None,
        style: Backbone | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        init = "pretrained" if pretrained else "random"
        self.backbone = backbone or build_backbone(cfg.backbone, init)
        self.style = style
        if self.style is None and cfg.style_backbone:
            self.style = build_backbone(cfg.style_backbone, init)
        if self.style is not None:
            self.style.requires_grad_(False)
        self.pool = build_pool(cfg.pool, cfg.pool_options)
        self.head = build_head(cfg.head, self.feature_dim, cfg.out_dim, options=cfg.head_options)
        self.backbone_frozen = False
        self.manifest: dict[str, Any] = {}

    @property
    def summary(self) -> str:
        return f"{self.cfg.backbone} + {self.cfg.head} head"

    @property
    def feature_dim(self) -> int:
        return self.backbone.feature_dim + (self.style.feature_dim if self.style else 0)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any) -> None:
        # Folders saved before pooling was a registry hold GeM's exponent as `gem.p`.
        if prefix + "gem.p" in state_dict:
            state_dict[prefix + "pool.gem.p"] = state_dict.pop(prefix + "gem.p")
        super()._load_from_state_dict(state_dict, prefix, *args)

    def freeze_backbone(self, frozen: bool = True) -> None:
        """Linear probing: the backbone neither learns nor updates BatchNorm statistics."""
        self.backbone_frozen = frozen
        self.backbone.requires_grad_(not frozen)
        self.backbone.train(self.training and not frozen)

    def train(self, mode: bool = True) -> ImageToPromptModel:
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()
        if self.style is not None:
            self.style.eval()  # always frozen
        return self

    def backbone_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.pool(self.backbone, pixels)

    @torch.no_grad()
    def style_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """The style extractor's features, from pixels normalised for the main backbone."""
        assert self.style is not None
        main, style = self.backbone.preprocess, self.style.preprocess
        mean = torch.tensor(main.mean, device=pixels.device, dtype=pixels.dtype).view(1, 3, 1, 1)
        std = torch.tensor(main.std, device=pixels.device, dtype=pixels.dtype).view(1, 3, 1, 1)
        raw = pixels * std + mean
        if raw.shape[-1] != style.crop_size:
            raw = F.interpolate(raw, size=(style.crop_size,) * 2, mode="bilinear", antialias=True)
        s_mean = torch.tensor(style.mean, device=raw.device, dtype=raw.dtype).view(1, 3, 1, 1)
        s_std = torch.tensor(style.std, device=raw.device, dtype=raw.dtype).view(1, 3, 1, 1)
        return self.style.pooled((raw - s_mean) / s_std)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Everything before the head: what a feature cache stores when all of it is frozen."""
        main = self.backbone_features(pixels)
        if self.style is None:
            return main
        return torch.cat([main, self.style_features(pixels).to(main.dtype)], dim=1)

    def forward(
        self,
        pixels: torch.Tensor | None,
        style_features: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, 3, H, W) pixels -> (B, out_dim). `features` (cached output of `features()`) skips
        everything before the head; `style_features` skips only the style extractor."""
        if features is not None:
            return self.head(features)
        if self.style is None:
            return self.head(self.backbone_features(pixels))
        if style_features is None:
            style_features = self.style_features(pixels)
        main = self.backbone_features(pixels)
        return self.head(torch.cat([main, style_features.to(main.dtype)], dim=1))


# --- folder format ----------------------------------------------------------------------------


def save_model(
    model: ImageToPromptModel, directory: str | Path, training: dict[str, Any] | None = None
) -> Path:
    """Write `directory/model.json` + `model.safetensors` (+ backbone configs); returns the folder.

    The files are written into a temporary sibling that then replaces the folder
    (`io.atomic_dir`), so a crash leaves the old model or the new one, never half of one."""
    from img2prompt.io import atomic_dir

    directory = Path(directory)
    with atomic_dir(directory) as tmp:
        rebuild = model.backbone.save_config(tmp / "backbone")
        style_rebuild = model.style.save_config(tmp / "style") if model.style else None
        _save_weights(model, tmp / "model.safetensors")
        write_model_manifest(
            tmp,
            kind=ImageToPromptModel.kind,
            config=model.cfg.to_dict(),
            preprocess=model.preprocess.to_dict(),
            record={
                "rebuild": {"backbone": rebuild, "style_backbone": style_rebuild},
                "feature_dim": model.feature_dim,
                "training": training or {},
            },
        )
    return directory


def _save_weights(model: ImageToPromptModel, path: Path) -> None:
    """All weights, or with `backbone_weights: pretrained` those after the backbone (its
    factory supplies the rest when the folder loads)."""
    from safetensors.torch import save_file
    from safetensors.torch import save_model as save_weights

    if model.cfg.backbone_weights != "pretrained":
        save_weights(model, str(path))
        return
    state = {
        name: tensor.detach().cpu().contiguous()
        for name, tensor in model.state_dict().items()
        if not name.startswith("backbone.")
    }
    save_file(state, str(path))


def write_model_manifest(
    folder: str | Path,
    *,
    kind: str,
    config: dict[str, Any],
    preprocess: dict[str, Any],
    record: dict[str, Any],
) -> dict[str, Any]:
    """Write `folder/model.json` (atomically) and return it: the format header every model
    folder shares, the kind's `config` and `preprocess`, then the kind's own `record` keys
    (a trained model's `training`, an index's `index`, `build`, `tuning`...)."""
    from img2prompt import __version__
    from img2prompt.io import write_json

    manifest = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "kind": kind,
        "img2prompt_version": __version__,
        "config": config,
        "preprocess": preprocess,
        **record,
    }
    write_json(manifest, Path(folder) / "model.json")
    return manifest


MANIFEST_HEADER = ("format", "format_version", "kind", "img2prompt_version", "config", "preprocess")
"""The model.json keys `write_model_manifest` sets itself; the rest are the kind's record."""


def manifest_record(manifest: dict[str, Any]) -> dict[str, Any]:
    """A read model.json's own record: what to pass back to `write_model_manifest`."""
    return {key: value for key, value in manifest.items() if key not in MANIFEST_HEADER}


def _resolve(spec: str | None, directory: Path) -> str | None:
    """Turn `hf-clip:backbone` (relative to the model folder) into an absolute path."""
    if spec is None:
        return None
    name, _, argument = spec.partition(":")
    if argument and (directory / argument).is_dir():
        return f"{name}:{directory / argument}"
    return spec


def default_model_dir() -> Path:
    """The packaged default model (zero-shot through the ImageNet classifier EfficientNet-Lite0;
    built by `python scripts/build_default_model.py`)."""
    return Path(__file__).resolve().parents[1] / "assets" / "default-model"


def resolve_model_dir(model: str | Path) -> Path:
    """The string `default` names the packaged default model (write `./default` for a folder of
    that name); `hf:owner/repo[@revision]` a model on the Hugging Face Hub (downloaded, or from
    the hub cache offline); anything else is a model folder."""
    if isinstance(model, str) and model == DEFAULT_MODEL:
        return default_model_dir()
    if isinstance(model, str) and model.startswith("hf:"):
        from img2prompt.models.hub import download_model

        return download_model(model)
    return Path(model)


def read_model_manifest(directory: str | Path) -> dict[str, Any]:
    """A model folder's `model.json`, checked (format, version, weights file present); an
    InputError names the folder when it is not a model this img2prompt can load."""
    from img2prompt.io import read_json, readable_dir

    directory = readable_dir(directory)  # a save cut off between its renames left the old aside
    manifest_path = directory / "model.json"
    if not manifest_path.is_file():
        if (directory / "config.json").is_file():  # a transformers checkpoint, e.g. a captioner
            raise InputError(
                directory,
                "a transformers checkpoint, not a model folder (no model.json); for a captioner "
                "`img2prompt captioner make FOLDER --out DIR` makes one",
            )
        raise InputError(directory, "not a model folder (no model.json)")
    manifest = read_json(manifest_path)
    if not isinstance(manifest, dict) or manifest.get("format") != MODEL_FORMAT:
        raise InputError(manifest_path, "not an img2prompt model manifest")
    if manifest.get("format_version", 0) > MODEL_FORMAT_VERSION:
        raise InputError(manifest_path, "made by a newer img2prompt; upgrade to load it")
    model_loader(model_kind(manifest), manifest_path)  # an unknown kind fails here, named
    return manifest


def model_kind(manifest: dict[str, Any]) -> str:
    """The folder's kind (`protocol.MODEL_KINDS`); folders from before kinds are `trained`."""
    return str(manifest.get("kind", DEFAULT_KIND))


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> PromptModel:
    """Load a model folder (or `default`, the packaged one, or `hf:owner/repo[@revision]`) for
    prediction, in eval mode; no training code needed. The loader is the one registered for the
    folder's kind: a trained model (`ImageToPromptModel`), a retrieval index
    (`img2prompt.index.model.RetrievalModel`)... all `PromptModel`s."""
    from img2prompt.io import readable_dir

    directory = readable_dir(resolve_model_dir(directory))
    manifest = read_model_manifest(directory)
    load = model_loader(model_kind(manifest), directory / "model.json")
    return load(directory, manifest, device)


@register_model_kind(DEFAULT_KIND)
def load_trained_model(
    directory: Path, manifest: dict[str, Any], device: str | torch.device = "cpu"
) -> ImageToPromptModel:
    """A trained model's folder (its model.json already read and checked)."""
    from safetensors.torch import load_file
    from safetensors.torch import load_model as load_weights

    if not (directory / "model.safetensors").is_file():
        raise InputError(directory, "model folder without model.safetensors")
    cfg = ModelConfig(**manifest["config"])
    pretrained = cfg.backbone_weights == "pretrained"
    # What the file holds is not initialised first: the loads below check every weight arrives.
    backbone_spec = _resolve(manifest["rebuild"]["backbone"], directory)
    backbone = build_backbone(backbone_spec, "pretrained" if pretrained else "skip")
    style_spec = _resolve(manifest["rebuild"]["style_backbone"], directory)
    style = build_backbone(style_spec, "skip") if style_spec else None
    backbone.spec = cfg.backbone  # the user's spec, not the folder it was rebuilt from
    if style is not None:
        style.spec = cfg.style_backbone or ""
    model = ImageToPromptModel(cfg, pretrained=False, backbone=backbone, style=style)
    weights = directory / "model.safetensors"
    if pretrained:
        missing, unexpected = model.load_state_dict(load_file(str(weights)), strict=False)
        missing = [name for name in missing if not name.startswith("backbone.")]
        if missing or unexpected:
            raise InputError(
                weights,
                f"does not fit the model (missing {missing[:5]}, unexpected {unexpected[:5]})",
            )
    else:
        try:
            load_weights(model, str(weights), device=str(device))  # strict: every weight
        except RuntimeError as e:
            raise InputError(weights, f"does not fit the model: {str(e)[:300]}") from None
    model.manifest = manifest
    return model.to(device).eval()


def push_model(
    directory: str | Path, repo: str, private: bool = False, revision: str | None = None
) -> str:
    """Upload a model folder to the Hugging Face Hub repository `owner/repo` (`revision`: a
    branch); the folder is checked first, so a wrong path uploads nothing. Returns the commit
    URL."""
    from img2prompt.models.hub import upload_folder

    read_model_manifest(directory)
    return upload_folder(directory, repo, private=private, revision=revision)
