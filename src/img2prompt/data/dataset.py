"""Training tables (`prompts.parquet` with images) and the torch dataset that decodes them."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import Dataset

from img2prompt.data.images import load_image
from img2prompt.data.transforms import PreprocessConfig, preprocess
from img2prompt.errors import InputError
from img2prompt.io import vectors_from_column


@dataclass
class TrainingTable:
    ids: list[str]
    prompts: list[str]
    images: list[Path]
    targets: np.ndarray  # (N, D) float32, L2-normalised
    folds: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, rows: np.ndarray) -> TrainingTable:
        return TrainingTable(
            [self.ids[i] for i in rows],
            [self.prompts[i] for i in rows],
            [self.images[i] for i in rows],
            self.targets[rows],
            self.folds[rows],
        )


def read_training_table(data_dir: str | Path) -> TrainingTable:
    """Read `DIR/prompts.parquet` (made by `data prepare --images ...`); image paths relative to
    the folder are resolved against it."""
    data_dir = Path(data_dir)
    path = data_dir / "prompts.parquet" if data_dir.is_dir() else data_dir
    if not path.is_file():
        raise InputError(path, "no prepared table here; run `img2prompt data prepare` first")
    table = pq.read_table(path)
    missing = {"id", "prompt", "target", "fold", "image"} - set(table.column_names)
    if missing:
        hint = " (prepare with --images DIR, or from a table with an image column)"
        raise InputError(path, f"missing columns {sorted(missing)}" + hint)
    # `folder / absolute` is the absolute path itself, so both kinds resolve in one step.
    images = [
        None if image is None else path.parent / image for image in table["image"].to_pylist()
    ]
    if any(image is None for image in images):
        first = images.index(None)
        raise InputError(path, f"row {first} ({table.column('id')[first]}) has no image")
    targets = vectors_from_column(table.column("target"), path)
    return TrainingTable(
        ids=table.column("id").to_pylist(),
        prompts=table.column("prompt").to_pylist(),
        images=images,
        targets=targets,
        folds=table.column("fold").to_numpy().astype(np.int64),
    )


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
