"""The bank folder and the loaded bank: `PromptBank` (entries, float16 vectors, a FAISS
inner-product index built on first use), `load_bank`, and the manifest checks (format version,
the encoder the vectors were made with)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from img2prompt.errors import InputError
from img2prompt.io import readable_dir
from img2prompt.targets.encoder import TargetEncoder

BANK_FORMAT = 2  # 2: entries have a `norm`
ENTRIES_FILE = "entries.parquet"
EMBEDDINGS_FILE = "embeddings.npy"
MANIFEST_FILE = "manifest.json"


FILLER_CATEGORIES = frozenset({"dictionary", "vocabulary"})
"""Entries that are words of a language (the packaged English dictionary, the encoder's
WordPiece words), not of prompts."""
PROMPT_WORD = re.compile(r"[a-z]+")


@dataclass
class PromptBank:
    """Entries and their unit vectors, with a FAISS inner-product index over them."""

    path: Path | None
    texts: list[str]
    categories: list[str]
    frequencies: np.ndarray  # int64, -1 where unknown
    tokens: np.ndarray  # int32 word pieces per entry (no special tokens)
    norms: np.ndarray  # float32 length of each entry's mean token vector, NaN where unknown
    embeddings: np.ndarray  # float16 (N, dim), what is stored
    manifest: dict[str, Any]
    _index: Any = field(default=None, repr=False)
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
    def index(self):
        """faiss.IndexFlatIP over the entries, built on first use."""
        if self._index is None:
            import faiss

            # FAISS multiplies with BLAS only from 128000 queries on by default; its own kernels
            # are ~4x slower than BLAS here from a few dozen queries on (decoding batches them).
            faiss.cvar.distance_compute_blas_threshold = 20
            index = faiss.IndexFlatIP(self.dim)
            # The float16 rows are widened straight into the index's own storage: `add` would
            # take a float32 copy and copy it again (~0.2 s more of every start at 154k rows).
            index.codes.resize(len(self) * self.dim * 4)
            index.ntotal = len(self)
            rows = self._rows(index)
            for start in range(0, len(self), 65536):
                rows[start : start + 65536] = self.embeddings[start : start + 65536]
            self._index = index
        return self._index

    @property
    def vectors(self) -> np.ndarray:
        """The index's own float32 rows (a view, no copy)."""
        return self._rows(self.index)

    def _rows(self, index) -> np.ndarray:
        import faiss

        return faiss.rev_swig_ptr(index.get_xb(), index.ntotal * self.dim).reshape(-1, self.dim)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Cosines and entry ids of the `k` nearest entries to each (unit) query row."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        return self.index.search(queries, min(k, len(self)))


def load_bank(path: str | Path, encoder: TargetEncoder | None = None) -> PromptBank:
    """Read a bank folder; with `encoder`, refuse a bank built with another one."""
    path = readable_dir(path)
    manifest = read_bank_manifest(path)
    if encoder is not None:
        check_encoder(path, manifest, encoder)
    # `source` (one string per entry) is only needed by `bank add`, which reads it itself.
    table = pq.read_table(
        path / ENTRIES_FILE, columns=["text", "category", "frequency", "tokens", "norm"]
    )
    embeddings = np.load(path / EMBEDDINGS_FILE)
    if len(table) != len(embeddings) or len(table) != manifest.get("entries"):
        raise InputError(
            path,
            f"bank is inconsistent: {len(table)} entries, {len(embeddings)} vectors, manifest "
            f"says {manifest.get('entries')}; rebuild it",
        )
    return _bank_from_table(path, table, embeddings, manifest)


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
    frequencies = table.column("frequency").fill_null(-1).to_numpy().astype(np.int64)
    return PromptBank(
        path=path,
        texts=table.column("text").to_pylist(),
        categories=table.column("category").to_pylist(),
        frequencies=frequencies,
        tokens=table.column("tokens").to_numpy().astype(np.int32),
        norms=table.column("norm").fill_null(np.nan).to_numpy().astype(np.float32),
        embeddings=embeddings,
        manifest=manifest,
    )
