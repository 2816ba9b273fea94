"""`PromptModel`: the one interface of everything `load_model` returns, and the registry of
model-folder kinds.

A model is two stages. `network` maps normalised pixels to outputs on the device: the predictor
batches it, casts it to bfloat16 and compiles it. `finish` turns the (view-averaged, unit) outputs
into prompt embeddings on the CPU: nothing for a trained model, whose outputs are the embeddings;
a search and a blend for a retrieval index, whose outputs are CLIP image features.

`model.json` names its folder's `kind` (`trained` when absent); each kind's loader registers
itself with `@register_model_kind(kind)` in its own module, and the package's entry points
(`img2prompt.model_kinds` in pyproject.toml) say which module that is, so this layer imports
nothing above it and a plugin package can add a kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from img2prompt.data.transforms import PreprocessConfig
from img2prompt.errors import ConfigError, InputError
from img2prompt.registry import Registry

ENTRY_POINTS = "img2prompt.model_kinds"
DEFAULT_KIND = "trained"
CAPTIONER_KIND = "captioner"
"""A vision-language captioner (`models/captioner.py`); named here so a caller can ask
without importing it."""


@dataclass
class Finished:
    """`PromptModel.finish`'s answer for N images."""

    embeddings: np.ndarray
    """(N, out_dim) float32 prompt embeddings, unit rows."""
    nearest: list[list[tuple[str, float]]] = field(default_factory=list)
    """Per image, the real prompts the model drew on, with their cosines (retrieval models;
    empty lists for the others)."""


class PromptModel(nn.Module):
    """Base class of every model kind. Subclasses set `kind`, `cfg` (with `out_dim` and
    `target_encoder`), `backbone` and `manifest`, implement `forward`, and override `network`,
    `finish` and the rest where they differ from a trained model's."""

    kind: ClassVar[str] = DEFAULT_KIND
    sets_own_precision: ClassVar[bool] = False
    """True where `network` chooses its own dtype (a captioner generates text in the dtype it
    was loaded in): the predictor then runs it as it is, with no bf16 or int8 copy."""
    cfg: Any
    backbone: nn.Module
    manifest: dict[str, Any]

    @property
    def preprocess(self) -> PreprocessConfig:
        return self.backbone.preprocess  # type: ignore[return-value]

    @property
    def network(self) -> nn.Module:
        """Pixels -> outputs, all torch (it has a `backbone`): what the predictor runs."""
        return self

    @property
    def output_dim(self) -> int:
        """Width of `network`'s outputs."""
        return int(self.cfg.out_dim)

    @property
    def embedding_dim(self) -> int:
        """Width of `finish`'s prompt embeddings."""
        return int(self.cfg.out_dim)

    def finish(self, outputs: np.ndarray, nearest: int = 0) -> Finished:
        """(N, output_dim) unit network outputs -> prompt embeddings (and, for models that draw
        on real prompts, the `nearest` of them per image)."""
        return Finished(outputs, [[] for _ in range(len(outputs))])

    def configure_search(self, k: int = 0, temperature: float = 0.0) -> None:
        """`--k` / `--temperature`: only models that search an index have them."""
        if k or temperature:
            raise ConfigError("--k and --temperature apply to retrieval index models only")

    def interrogator(self, texts: list[str], categories: list[str], device: str) -> Any:
        """A CLIP-space phrase picker for `describe`, where the model carries a text tower."""
        return None

    @property
    def summary(self) -> str:
        """One line saying what the model is (its `repr` in the Python API)."""
        return f"{self.kind} model"


ModelLoader = Callable[[Path, dict, "str | torch.device"], PromptModel]
MODEL_KINDS: Registry[ModelLoader] = Registry("model kind")


def register_model_kind(kind: str) -> Callable[[ModelLoader], ModelLoader]:
    """Decorator for the function that loads folders of `kind`: `(folder, manifest, device)`."""
    return MODEL_KINDS.register(kind)


def model_loader(kind: str, manifest_path: Path) -> ModelLoader:
    """The loader of `kind`: registered already, or imported through the package's entry
    points (which registers it). An unknown kind is an InputError naming the manifest."""
    if kind not in MODEL_KINDS:
        for entry in metadata.entry_points(group=ENTRY_POINTS):
            if entry.name == kind:
                entry.load()
    if kind not in MODEL_KINDS:
        known = ", ".join(sorted({*MODEL_KINDS, *_entry_point_kinds()}))
        raise InputError(manifest_path, f"unknown model kind {kind!r} (known: {known})")
    return MODEL_KINDS.get(kind)


def _entry_point_kinds() -> set[str]:
    return {entry.name for entry in metadata.entry_points(group=ENTRY_POINTS)}
