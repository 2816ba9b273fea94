"""Atomic file writes (a crash leaves the old file or the new one, never half of one) and the
Parquet layout of embedding columns (list<float32>, one vector a row)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is fsynced and renamed onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet(table: pa.Table, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def write_json(obj: Any, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def vector_column(vectors: np.ndarray) -> pa.ListArray:
    """(N, D) vectors as a list<float32> column, without a Python list per row."""
    n, dim = vectors.shape
    offsets = pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32))
    values = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), pa.float32())
    return pa.ListArray.from_arrays(offsets, values)


def vectors_from_column(column: pa.ChunkedArray | pa.Array, path: str | Path) -> np.ndarray:
    """A list column back to an (N, D) float32 array; rows of unequal length name the file."""
    from img2prompt.errors import InputError

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    lengths = set(column.value_lengths().to_pylist()) if len(column) else {0}
    if len(lengths) != 1 or 0 in lengths or column.null_count:
        raise InputError(path, f"vector rows must all have the same length, got {lengths}")
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return np.asarray(flat, dtype=np.float32).reshape(len(column), -1)
