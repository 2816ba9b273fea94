"""`RetrievalModel`: an index folder loaded as a model (a `PromptModel` of kind `retrieval`).

Folder layout (`index build` writes it):
- `model.json`: format, `"kind": "retrieval"`, `config` (`RetrievalConfig`), preprocessing, the
  build's record (source, counts, timings, measured approximate recall) and `tuning` when tuned;
- `clip/`: the whole CLIP dual encoder as `save_pretrained` wrote it (weights, tokenizer, image
  processor). Copying it in, rather than naming the hub id, makes an index folder self-contained:
  moved to a machine without the hub cache (or where the id now means other weights) it loads
  and predicts the same; the text tower stays for interrogation and for extending the index.
- `index.faiss`, `targets.npy`, `prompts.parquet` (`store.PromptIndex`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from img2prompt.data.transforms import PreprocessConfig
from img2prompt.errors import InputError
from img2prompt.index.clip import CLIPImageEncoder, load_clip
from img2prompt.index.options import RetrievalSettings
from img2prompt.index.store import PromptIndex, open_index
from img2prompt.models.protocol import Finished, PromptModel, register_model_kind
from img2prompt.targets.encoder import DEFAULT_ENCODER

KIND = "retrieval"
CLIP_FOLDER = "clip"


@dataclass(kw_only=True)
class RetrievalConfig(RetrievalSettings):
    """model.json's `config` of an index: its search settings and what it was built from."""

    clip: str
    """The CLIP spec the index was built from (its weights are in INDEX/clip)."""
    out_dim: int = 384
    """Size of the predicted vector (the targets' width)."""
    target_encoder: str = DEFAULT_ENCODER
    """The sentence encoder that made the targets."""


class RetrievalModel(PromptModel):
    """CLIP image tower -> unit image feature -> k nearest prompts by CLIP cosine s_j ->
    normalise(sum_j softmax(s / T)_j * target_j). No trained weights beyond CLIP's.

    As a `PromptModel`: `network` is the CLIP image tower (features, all torch: the predictor
    casts and compiles it like any model), `finish` searches the index on the CPU (faiss-cpu)
    and blends, one search serving the blend and the nearest prompts."""

    kind = KIND

    def __init__(
        self, cfg: RetrievalConfig, backbone: CLIPImageEncoder, index: PromptIndex
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone
        self.index = index
        self.manifest: dict[str, Any] = {}
        self.folder: Path | None = None
        self._features = ImageFeatures(backbone)

    @property
    def network(self) -> nn.Module:
        return self._features

    @property
    def output_dim(self) -> int:
        return self.backbone.feature_dim

    @property
    def summary(self) -> str:
        return f"retrieval index of {len(self.index.prompts):,} prompts over {self.cfg.clip}"

    def configure_search(self, k: int = 0, temperature: float = 0.0) -> None:
        """Override the folder's k and/or temperature (`predict --k --temperature`)."""
        k = k or self.cfg.k
        temperature = temperature or self.cfg.temperature
        RetrievalSettings(k, temperature)  # checks them
        self.cfg.k, self.cfg.temperature = k, temperature

    def finish(self, outputs: np.ndarray, nearest: int = 0) -> Finished:
        """Unit CLIP image features -> blended prompt embeddings, and the `nearest` real
        prompts with their CLIP cosines, from one search."""
        k = self.cfg.k
        scores, ids = self.index.search(outputs, max(k, nearest, 1))
        blended = self.index.blend(scores[:, :k], ids[:, :k], self.cfg.temperature)
        prompts = self.index.prompts
        near = [
            [(prompts[int(i)], float(c)) for c, i in zip(s[:nearest], row, strict=False) if i >= 0]
            for s, row in zip(scores, ids, strict=True)
        ]
        return Finished(blended, near)

    def interrogator(self, texts: list[str], categories: list[str], device: str) -> Any:
        """CLIP Interrogator-style phrase picking with the folder's CLIP text tower."""
        if self.folder is None:
            return None
        from img2prompt.index.interrogate import Interrogator

        return Interrogator(self.folder / CLIP_FOLDER, texts, categories, device=device)

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised pixels -> (B, D) unit CLIP image features, float32."""
        return self.backbone.pooled(pixels)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels -> prompt embeddings in one call (a search per call; the predictor runs
        `network` and `finish` instead, so views are averaged before the one search)."""
        features = self.image_features(pixels).detach().float().cpu().numpy()
        predicted = self.index.predict(features, self.cfg.k, self.cfg.temperature)
        return torch.from_numpy(predicted).to(pixels.device)


class ImageFeatures(nn.Module):
    """A retrieval model's `network`: its CLIP image tower, whose output is the unit image
    feature. Shares the tower's weights."""

    def __init__(self, backbone: CLIPImageEncoder) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.backbone.pooled(pixels)


def is_retrieval_manifest(manifest: dict[str, Any]) -> bool:
    return manifest.get("kind") == KIND


@register_model_kind(KIND)
def load_retrieval_model(
    directory: Path, manifest: dict[str, Any], device: str | torch.device = "cpu"
) -> RetrievalModel:
    """Load an index folder (its model.json already read and checked by `load_model`)."""
    cfg = RetrievalConfig(**manifest["config"])
    clip_dir = directory / CLIP_FOLDER
    if not clip_dir.is_dir():
        raise InputError(clip_dir, "missing; the index folder is incomplete")
    clip = load_clip(clip_dir)
    preprocess = PreprocessConfig.from_dict(manifest["preprocess"])
    backbone = CLIPImageEncoder(clip, preprocess)
    backbone.spec = f"clip:{cfg.clip}"
    index = open_index(directory, cfg.nprobe, cfg.ef_search)
    if index.dim != backbone.feature_dim:
        raise InputError(
            directory,
            f"index.faiss holds {index.dim}-d features but the CLIP in {clip_dir} makes "
            f"{backbone.feature_dim}-d ones",
        )
    model = RetrievalModel(cfg, backbone, index)
    model.manifest = manifest
    model.folder = directory
    return model.to(device).eval()
