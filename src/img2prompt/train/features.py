"""Frozen-feature cache: when nothing before the head learns, compute its output once.

Linear probing a frozen CLIP for five epochs costs five full forward passes per image; with the
cache it costs one (two with flips: the mirror images are cached too) and the epochs train only
the head.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from img2prompt.data.dataset import ImageDataset
from img2prompt.data.transforms import PreprocessConfig
from img2prompt.progress import progress_bar


@torch.inference_mode()
def compute_features(
    extract: Callable[[torch.Tensor], torch.Tensor],
    images: list[Path],
    preprocess: PreprocessConfig,
    device: torch.device,
    *,
    flip: bool = False,
    batch_size: int = 64,
    workers: int = 0,
    description: str = "caching features",
    progress: bool = True,
) -> torch.Tensor:
    """(N, F) float32 features of `images` (flipped when `flip`), in order, on `device`."""
    loader = DataLoader(
        ImageDataset(images, preprocess, flip=flip or None),
        batch_size=batch_size,
        num_workers=workers,
        shuffle=False,
    )
    chunks = []
    with progress_bar(description, len(images), progress) as bar:
        for pixels, _ in loader:
            chunks.append(extract(pixels.to(device)).float())
            bar.advance(len(pixels))
    return torch.cat(chunks)


class CachedFeatures:
    """Cached features of every image and, when flips are on, of its mirror image."""

    def __init__(self, plain: torch.Tensor, flipped: torch.Tensor | None = None) -> None:
        self.plain, self.flipped = plain, flipped

    def subset(self, rows: np.ndarray, flips: bool = True) -> CachedFeatures:
        """The features of table `rows` only (without the mirrored ones unless `flips`)."""
        index = torch.as_tensor(rows, dtype=torch.long, device=self.plain.device)
        flipped = self.flipped[index] if flips and self.flipped is not None else None
        return CachedFeatures(self.plain[index], flipped)

    def take(self, rows: torch.Tensor, flips: torch.Tensor | None = None) -> torch.Tensor:
        """Features of `rows`; where `flips` is True, those of the mirror image."""
        features = self.plain[rows]
        if flips is not None and self.flipped is not None and bool(flips.any()):
            features = torch.where(flips[:, None], self.flipped[rows], features)
        return features


class FeatureStore:
    """Frozen features of every image of a training table, computed once per extractor and
    sliced for each fold. A frozen pretrained backbone gives an image the same features in every
    fold and phase, so `--fold all` caches once instead of once per fold (and LP-FT with a frozen
    backbone once instead of once per phase). Entries are keyed by a digest of the extractor's
    weights: a backbone that starts from other weights in another fold (a random-init one) is
    computed again, never served stale features."""

    def __init__(
        self,
        images: list[Path],
        device: torch.device,
        batch_size: int = 64,
        workers: int = 0,
        progress: bool = True,
    ) -> None:
        self.images, self.device = images, device
        self.batch_size, self.workers, self.progress = batch_size, workers, progress
        # kind -> (weights digest, {flipped: features})
        self._kept: dict[str, tuple[str, dict[bool, torch.Tensor]]] = {}

    def features(
        self,
        kind: str,
        extract: Callable[[torch.Tensor], torch.Tensor],
        weights: list[torch.nn.Module],
        preprocess: PreprocessConfig,
        flips: bool,
    ) -> CachedFeatures:
        """Features of every table row by `extract` (whose weights live in `weights`), with the
        mirror images' too when `flips`; `CachedFeatures.subset` takes a fold's rows."""
        digest = weights_digest(weights)
        if kind not in self._kept or self._kept[kind][0] != digest:
            self._kept[kind] = (digest, {})  # other weights: the old features are dropped
        computed = self._kept[kind][1]
        for flip in (False, True) if flips else (False,):
            if flip not in computed:
                computed[flip] = compute_features(
                    extract,
                    self.images,
                    preprocess,
                    self.device,
                    flip=flip,
                    batch_size=self.batch_size,
                    workers=self.workers,
                    progress=self.progress,
                    description=f"caching {kind}{' (flipped)' if flip else ''}",
                )
        return CachedFeatures(computed[False], computed[True] if flips else None)


def weights_digest(modules: list[torch.nn.Module]) -> str:
    """A digest of the modules' parameters and buffers (their bytes, names and order)."""
    digest = hashlib.blake2b(digest_size=16)
    for module in modules:
        for name, tensor in module.state_dict().items():
            digest.update(name.encode())
            data = tensor.detach().to("cpu").contiguous().reshape(-1)
            digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()
