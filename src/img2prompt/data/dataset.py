"""The torch dataset that decodes a prepared table's images (`data.table` reads the table)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from img2prompt.data.images import load_image
from img2prompt.data.transforms import PreprocessConfig, preprocess


def flip_decision(seed: int, epoch: int, index: int) -> bool:
    """A coin flip that depends only on (seed, epoch, row): the same on any worker or resume."""
    digest = hashlib.blake2b(f"{seed}/{epoch}/{index}".encode(), digest_size=1).digest()
    return bool(digest[0] & 1)


class ImageDataset(Dataset):
    """Decodes and preprocesses images; items are (pixels, index).

    `flip`: None (never), "random" (per seed, epoch and key), or True (always: a cached view).
    `keys` name each image for the random flips (default: its index), so the same table row
    flips the same way whichever subset or order it is read in."""

    def __init__(
        self,
        images: list[Path],
        cfg: PreprocessConfig,
        flip: bool | str | None = None,
        seed: int = 0,
        keys: Sequence[int] | None = None,
    ) -> None:
        self.images, self.cfg, self.flip, self.seed = images, cfg, flip, seed
        self.keys = keys
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        flip = self.flip is True or (
            self.flip == "random"
            and flip_decision(
                self.seed, self.epoch, int(self.keys[index] if self.keys is not None else index)
            )
        )
        return preprocess(load_image(self.images[index]), self.cfg, hflip=flip), index
