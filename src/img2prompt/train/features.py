"""Frozen-feature cache: when nothing before the head learns, compute its output once.

Linear probing a frozen CLIP for five epochs costs five full forward passes per image; with the
cache it costs one (two with flips: both views are cached) and the epochs train only the head.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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


class FeatureViews:
    """Cached features for the plain view and, when flips are on, the mirrored view."""

    def __init__(self, plain: torch.Tensor, flipped: torch.Tensor | None = None) -> None:
        self.plain, self.flipped = plain, flipped

    def take(self, rows: torch.Tensor, flips: torch.Tensor | None = None) -> torch.Tensor:
        """Features of `rows`; where `flips` is True, the mirrored view's."""
        features = self.plain[rows]
        if flips is not None and self.flipped is not None and bool(flips.any()):
            features = torch.where(flips[:, None], self.flipped[rows], features)
        return features
