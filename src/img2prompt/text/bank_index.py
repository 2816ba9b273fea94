"""The bank folder and the loaded bank: `PromptBank` (entries, float16 vectors memory-mapped
from the folder, their float32 rows searched with FAISS), `load_bank`, and the manifest checks
(format version, the encoder the vectors were made with).

Searches and scores read float32 rows. A large bank keeps them beside its vectors as a cache,
`embeddings-float32-<key>.npy` (twice the float16 file's size), written on its first load (a
second or two, once) and memory-mapped by every later one, so a start neither reads nor widens
the float16 file: widening 154k rows into 236 MB of fresh memory took 0.15-0.7 s of every
`describe` on the 2-core VM, mapping the copy takes a millisecond. The key (the float16 file's
inode, size and modification time) ties the copy to the very file it was made from. A folder
that cannot be written is read as it is: its rows are widened at each load."""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from img2prompt.errors import InputError
from img2prompt.io import atomic_path, readable_dir
from img2prompt.targets.encoder import TargetEncoder

BANK_FORMAT = 2  # 2: entries have a `norm`
ENTRIES_FILE = "entries.parquet"
EMBEDDINGS_FILE = "embeddings.npy"
MANIFEST_FILE = "manifest.json"
FLOAT32_PREFIX = "embeddings-float32-"
FLOAT32_MIN_BYTES = 16 * 2**20
"""Banks whose float16 vectors take this much or more keep a float32 copy (module docstring);
below it widening them costs next to nothing."""


FILLER_CATEGORIES = frozenset({"dictionary", "vocabulary"})
"""Entries that are words of a language (the packaged English dictionary, the encoder's
WordPiece words), not of prompts."""
PROMPT_WORD = re.compile(r"[a-z]+")


@dataclass
class PromptBank:
    """Entries and their unit vectors, searched exhaustively by inner product (FAISS)."""

    path: Path | None
    texts: list[str]
    categories: list[str]
    frequencies: np.ndarray  # int64, -1 where unknown
    tokens: np.ndarray  # int32 word pieces per entry (no special tokens)
    norms: np.ndarray  # float32 length of each entry's mean token vector, NaN where unknown
    embeddings: np.ndarray  # float16 (N, dim), what is stored (memory-mapped when read)
    manifest: dict[str, Any]
    float32_copy: Path | None = None
    """Where the float32 copy of `embeddings` is (or would be) kept; None: not kept."""
    _vectors: np.ndarray | None = field(default=None, repr=False)
    _prompt_words: frozenset[str] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.texts)

    def prompt_words(self) -> frozenset[str]:
        """Lower-case words of the entries that are prompt phrases, not language filler
        (`FILLER_CATEGORIES`): the vocabulary of prompts. Computed once."""
        if self._prompt_words is None:
            words: set[str] = set()
            for text, category in zip(self.texts, self.categories, strict=True):
                if category not in FILLER_CATEGORIES:
                    words.update(PROMPT_WORD.findall(text.lower()))
            self._prompt_words = frozenset(words)
        return self._prompt_words

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def vectors(self) -> np.ndarray:
        """The entries' float32 unit rows (searches and scores read these), on first use:
        mapped from the folder's float32 copy, else widened from `embeddings` (and the copy
        written for the next load, where the folder keeps one)."""
        if self._vectors is None:
            self._vectors = _mapped_copy(self.float32_copy, self.embeddings.shape)
        if self._vectors is None:
            self._vectors = self.embeddings.astype(np.float32)
            if self.float32_copy is not None:
                _write_copy(self.float32_copy, self._vectors)
        return self._vectors

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Cosines and entry ids of the `k` nearest entries to each (unit) query row: FAISS's
        exhaustive inner-product search straight over `vectors` (what an `IndexFlatIP` holding
        them returns, bit for bit, without copying the rows into an index)."""
        import faiss

        # FAISS multiplies with BLAS only from 128000 queries on by default; its own kernels
        # are ~4x slower than BLAS here from a few dozen queries on (decoding batches them).
        faiss.cvar.distance_compute_blas_threshold = 20
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = min(k, len(self))
        return faiss.knn(queries, self.vectors, k, metric=faiss.METRIC_INNER_PRODUCT)


def load_bank(path: str | Path, encoder: TargetEncoder | None = None) -> PromptBank:
    """Read a bank folder; with `encoder`, refuse a bank built with another one."""
    path = readable_dir(path)
    manifest = read_bank_manifest(path)
    if encoder is not None:
        check_encoder(path, manifest, encoder)
    # `source` (one string per entry) is only needed by `bank add`, which reads it itself. One
    # file: `ParquetFile` reads it without `pq.read_table`'s dataset layer (its imports: ~0.03 s).
    with pq.ParquetFile(path / ENTRIES_FILE) as entries:
        table = entries.read(columns=["text", "category", "frequency", "tokens", "norm"])
    embeddings, copy = _map_embeddings(path)
    if len(table) != len(embeddings) or len(table) != manifest.get("entries"):
        raise InputError(
            path,
            f"bank is inconsistent: {len(table)} entries, {len(embeddings)} vectors, manifest "
            f"says {manifest.get('entries')}; rebuild it",
        )
    bank = _bank_from_table(path, table, embeddings, manifest)
    bank.float32_copy = copy
    return bank


def _map_embeddings(path: Path) -> tuple[np.ndarray, Path | None]:
    """The folder's float16 vectors, memory-mapped (nothing is read until used), and where their
    float32 copy is kept: named after the very file mapped (its inode, size and time, the same
    before and after mapping it), so a copy of an earlier `embeddings.npy` is never taken for
    this one's. None for small banks."""
    file = path / EMBEDDINGS_FILE
    before = os.stat(file)
    embeddings = np.load(file, mmap_mode="r").view(np.ndarray)
    key = [(s.st_ino, s.st_size, s.st_mtime_ns) for s in (before, os.stat(file))]
    if embeddings.nbytes < FLOAT32_MIN_BYTES or key[0] != key[1]:
        return embeddings, None
    return embeddings, path / (FLOAT32_PREFIX + "-".join(map(str, key[0])) + ".npy")


def _mapped_copy(copy: Path | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """The float32 copy at `copy`, memory-mapped, if it is there and of the right shape."""
    if copy is None:
        return None
    try:
        mapped = np.load(copy, mmap_mode="r")
    except (OSError, ValueError):  # not written yet, or damaged: it is written again
        return None
    if mapped.shape != shape or mapped.dtype != np.float32:
        return None
    return mapped.view(np.ndarray)


def _write_copy(copy: Path, vectors: np.ndarray) -> None:
    """Keep `vectors` at `copy` for later loads, replacing copies of earlier files; a folder
    that cannot be written (read-only, full) is left as it is."""
    with contextlib.suppress(OSError):
        with atomic_path(copy) as tmp, open(tmp, "wb") as f:
            np.save(f, vectors)
        for stale in copy.parent.glob(f"{FLOAT32_PREFIX}*.npy"):
            if stale != copy:
                stale.unlink(missing_ok=True)


def read_bank_manifest(path: Path) -> dict:
    """A bank folder's manifest alone (cheap: no entries or vectors are read)."""
    path = readable_dir(path)  # a write cut off between its two renames left the old bank aside
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        what = "no such folder" if not path.exists() else f"not a prompt bank (no {MANIFEST_FILE})"
        raise InputError(path, what + "; build one with `img2prompt bank build`")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(manifest_path, f"unreadable manifest: {e}") from None
    if manifest.get("format") != BANK_FORMAT:
        raise InputError(
            manifest_path,
            f"bank format {manifest.get('format')!r}, expected {BANK_FORMAT}: rebuild it with "
            f"`img2prompt bank build` from its inputs ({', '.join(manifest.get('inputs', []))})",
        )
    return manifest


def check_encoder(path: Path, manifest: dict[str, Any], encoder: TargetEncoder) -> None:
    built = manifest.get("encoder", {})
    if built.get("fingerprint") != encoder.fingerprint:
        raise InputError(
            path,
            f"bank was built with encoder {built.get('spec')!r} (fingerprint "
            f"{built.get('fingerprint')}), but this run uses {encoder.spec!r} (fingerprint "
            f"{encoder.fingerprint}); its vectors would not match. Rebuild the bank with "
            f"--encoder {encoder.spec}, or decode with --encoder {built.get('spec')}",
        )


def _bank_from_table(
    path: Path | None, table: pa.Table, embeddings: np.ndarray, manifest: dict[str, Any]
) -> PromptBank:
    return PromptBank(
        path=path,
        texts=table.column("text").to_pylist(),
        categories=table.column("category").to_pylist(),
        frequencies=_filled(table.column("frequency"), -1).astype(np.int64),
        tokens=table.column("tokens").to_numpy().astype(np.int32),
        norms=_filled(table.column("norm"), np.nan).astype(np.float32),
        embeddings=embeddings,
        manifest=manifest,
    )


def _filled(column: pa.ChunkedArray, value: float) -> np.ndarray:
    """A numeric column's values with `value` where it is null: `fill_null(value).to_numpy()`,
    read from the column's buffers instead (pyarrow.compute's import costs every start)."""
    array = column.combine_chunks()
    if not array.null_count:
        return array.to_numpy()
    validity, data = array.buffers()[:2]
    raw = pa.Array.from_buffers(array.type, len(array), [None, data], offset=array.offset)
    bits = np.unpackbits(np.frombuffer(validity, np.uint8), bitorder="little")
    valid = bits[array.offset : array.offset + len(array)].astype(bool)
    return np.where(valid, raw.to_numpy(), value)
