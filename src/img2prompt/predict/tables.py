"""Reading prediction files and truth, and lining them up row by row.

Predictions: `predict` / `ensemble apply` Parquet (`image`, `embedding`), training OOF Parquet
(`id`, `image`, `fold`, `embedding`), or a Kaggle submission CSV.
Truth: a prepared data folder (`prompts.parquet`: `id`, `target`, `fold`, `source`, `image`), a
Kaggle folder with `sample_submission.csv`, or either file directly.
Rows are matched by prompt `id` when both sides have one, else by image file stem (the Kaggle
`imgId`), so the same truth serves OOF files and predictions on a folder of images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from img2prompt.errors import InputError
from img2prompt.io import vector_column, vectors_from_column, write_parquet
from img2prompt.metrics import cosines, unit
from img2prompt.predict.submission import read_submission


@dataclass
class PredictionTable:
    path: Path
    images: list[str]
    """Image path (or Kaggle imgId) of every row."""
    embeddings: np.ndarray
    """(N, D) float32, L2-normalised on reading."""
    ids: list[str] | None = None
    """Prompt ids, when the file has them (training OOF files do)."""
    folds: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images)

    def take(self, positions: np.ndarray) -> PredictionTable:
        """The rows at `positions`, in that order."""
        positions = np.asarray(positions, dtype=np.int64)
        return PredictionTable(
            self.path,
            [self.images[i] for i in positions],
            self.embeddings[positions],
            ids=None if self.ids is None else [self.ids[i] for i in positions],
            folds=None if self.folds is None else self.folds[positions],
        )

    def keys(self, by: str) -> list[str]:
        return list(self.ids) if by == "id" and self.ids is not None else image_keys(self.images)


def image_keys(images: list[str]) -> list[str]:
    """The Kaggle imgId of an image: its file name without the suffix."""
    return [Path(image).stem for image in images]


def read_predictions(path: str | Path) -> PredictionTable:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such prediction file")
    if path.suffix.lower() == ".csv":
        ids, vectors = read_submission(path)
        _check_finite(path, vectors)
        return PredictionTable(path, ids, unit(vectors))
    table = _read_parquet(path)
    if "embedding" not in table.column_names:
        raise InputError(path, f"no `embedding` column (columns: {', '.join(table.column_names)})")
    names = "image" if "image" in table.column_names else "id"
    if names not in table.column_names:
        raise InputError(path, "needs an `image` or an `id` column to match rows to the truth")
    vectors = vectors_from_column(table.column("embedding"), path)
    _check_finite(path, vectors)
    return PredictionTable(
        path,
        [str(v) for v in table.column(names).to_pylist()],
        unit(vectors),
        ids=table.column("id").to_pylist() if "id" in table.column_names else None,
        folds=table.column("fold").to_numpy() if "fold" in table.column_names else None,
    )


def write_predictions(path: str | Path, images: list[str], embeddings: np.ndarray) -> None:
    """The `predict` output: `image` (as given) and `embedding` (float32, L2-normalised)."""
    table = pa.table(
        {"image": pa.array(images, pa.string()), "embedding": vector_column(embeddings)}
    )
    write_parquet(table, path)


@dataclass
class Truth:
    path: Path
    targets: np.ndarray
    """(N, D) float32, L2-normalised."""
    by_id: dict[str, int] = field(default_factory=dict)
    by_image: dict[str, int] = field(default_factory=dict)
    folds: np.ndarray | None = None
    sources: list[str] | None = None

    def match(
        self, predictions: PredictionTable, allow_missing: bool = False
    ) -> tuple[np.ndarray, str]:
        """Truth row of every prediction row, and how they were matched (`id` or `image`).
        A row with no truth is an error, or -1 with `allow_missing`."""
        by = "id" if predictions.ids is not None and self.by_id else "image"
        lookup = self.by_id if by == "id" else self.by_image
        keys = predictions.keys(by)
        if allow_missing:
            return np.array([lookup.get(key, -1) for key in keys], dtype=np.int64), by
        missing = [key for key in keys if key not in lookup]
        if missing:
            raise InputError(
                predictions.path,
                f"{len(missing)} of {len(keys)} rows have no truth in {self.path} (matched by "
                f"{by}; first: {', '.join(missing[:3])})",
            )
        return np.array([lookup[key] for key in keys], dtype=np.int64), by

    def targets_for(self, predictions: PredictionTable) -> tuple[np.ndarray, np.ndarray, str]:
        """(truth rows, their target vectors, how matched) for every prediction row; the two
        sides must have the same dimension."""
        rows, by = self.match(predictions)
        return rows, self.targets_of(predictions, rows), by

    def targets_of(self, predictions: PredictionTable, rows: np.ndarray) -> np.ndarray:
        """The target vectors of matched `rows`; they must have the predictions' dimension."""
        targets = self.targets[rows]
        if targets.shape[1] != predictions.embeddings.shape[1]:
            raise InputError(
                predictions.path,
                f"embeddings have {predictions.embeddings.shape[1]} dimensions, the truth in "
                f"{self.path} has {targets.shape[1]}",
            )
        return targets


def write_oof(
    path: str | Path, table, rows: np.ndarray, folds: np.ndarray, predictions: np.ndarray
) -> None:
    """Out-of-fold predictions for `ensemble fit`: id, image, fold, embedding and its cosine to
    the target, for the `rows` of a prepared `table` (`train --fold all` and `index tune` both
    write this layout)."""
    write_parquet(
        pa.table(
            {
                "id": [table.ids[i] for i in rows],
                "image": [str(table.images[i]) for i in rows],
                "fold": np.asarray(folds, np.int64),
                "embedding": vector_column(predictions),
                "cosine": cosines(predictions, table.targets[rows]).astype(np.float32),
            }
        ),
        path,
    )


def read_truth(path: str | Path) -> Truth:
    path = Path(path)
    if path.is_dir():
        for name in ("prompts.parquet", "sample_submission.csv"):
            if (path / name).is_file():
                return read_truth(path / name)
        raise InputError(path, "no prompts.parquet or sample_submission.csv in this folder")
    if not path.is_file():
        raise InputError(path, "no such truth file or folder")
    if path.suffix.lower() == ".csv":
        ids, vectors = read_submission(path)
        _check_finite(path, vectors)  # a NaN truth would make every score NaN, quietly
        return Truth(path, unit(vectors), by_image={k: i for i, k in enumerate(ids)})
    table = _read_parquet(path)
    missing = {"id", "target"} - set(table.column_names)
    if missing:
        raise InputError(path, f"a truth table needs columns id and target; missing {missing}")
    columns = table.column_names
    targets = vectors_from_column(table.column("target"), path)
    _check_finite(path, targets)
    truth = Truth(path, unit(targets))
    truth.by_id = {str(k): i for i, k in enumerate(table.column("id").to_pylist())}
    if "image" in columns:
        images = [str(v) for v in table.column("image").to_pylist() if v is not None]
        if len(images) == len(table):
            truth.by_image = {k: i for i, k in enumerate(image_keys(images))}
    if "fold" in columns:
        truth.folds = table.column("fold").to_numpy()
    if "source" in columns:
        truth.sources = [str(v) for v in table.column("source").to_pylist()]
    return truth


def _read_parquet(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(path, f"not a readable Parquet file: {e}") from None


def _check_finite(path: Path, vectors: np.ndarray) -> None:
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if len(bad):
        raise InputError(path, f"{len(bad)} rows hold NaN or infinity (first: row {bad[0]})")
