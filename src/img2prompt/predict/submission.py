"""The Kaggle submission format: one row per image and dimension, `imgId_eId,val`, eId 0..dim-1,
images in input order. Reading and writing only; `predict/check.py` validates and scores."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from img2prompt.errors import InputError
from img2prompt.io import atomic_path


def write_submission(path: str | Path, image_ids: Sequence[str], embeddings: np.ndarray) -> None:
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or len(embeddings) != len(image_ids):
        raise ValueError(
            f"need one embedding row per image: {len(image_ids)} ids, array {embeddings.shape}"
        )
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        f.write("imgId_eId,val\n")
        for image_id, vector in zip(image_ids, embeddings, strict=True):
            f.writelines(f"{image_id}_{e},{v:.9g}\n" for e, v in enumerate(vector.tolist()))


def read_submission(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Image ids in file order and their (N, dim) float32 vectors; errors name the line."""
    path = Path(path)
    try:
        return _read_submission(path)
    except UnicodeDecodeError as e:
        raise InputError(path, f"not a UTF-8 text file ({e.reason} at byte {e.start})") from None


def _read_submission(path: Path) -> tuple[list[str], np.ndarray]:
    ids: list[str] = []
    rows: list[list[float]] = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != ["imgId_eId", "val"]:
            raise InputError(path, f"header must be imgId_eId,val, got {header}", 1)
        for line, fields in enumerate(reader, start=2):
            if len(fields) != 2:
                raise InputError(path, f"expected 2 fields, found {len(fields)}", line)
            image_id, _, e_text = fields[0].rpartition("_")
            try:
                e_id, value = int(e_text), float(fields[1])
            except ValueError:
                raise InputError(path, f"bad row {fields!r}", line) from None
            if e_id == 0:
                ids.append(image_id)
                rows.append([])
            if not ids or image_id != ids[-1] or e_id != len(rows[-1]):
                raise InputError(
                    path,
                    f"expected {ids[-1] if ids else '?'}_{len(rows[-1]) if rows else 0}, "
                    f"got {fields[0]} (rows must run eId 0..dim-1 per image)",
                    line,
                )
            rows[-1].append(value)
    if not ids:
        raise InputError(path, "no rows")
    sizes = [len(r) for r in rows]
    if len(set(sizes)) != 1:
        usual = max(set(sizes), key=sizes.count)
        odd = next(i for i, size in enumerate(sizes) if size != usual)
        raise InputError(
            path,
            f"images have different numbers of dimensions: {ids[odd]} has {sizes[odd]}, most "
            f"have {usual}",
        )
    return ids, np.asarray(rows, dtype=np.float32)
