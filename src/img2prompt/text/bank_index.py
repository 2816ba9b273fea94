"""The bank folder and the loaded bank: `PromptBank` (entries, float16 vectors memory-mapped
from the folder, their float32 rows searched exhaustively), `load_bank`, and the manifest checks
(format version, the encoder the vectors were made with).

Searches and scores read float32 rows. A large bank keeps them beside its vectors as a cache,
`embeddings-float32-<key>.npy` (twice the float16 file's size), written on its first load (a
second or two, once) and memory-mapped by every later one, so a start neither reads nor widens
the float16 file: widening 154k rows into 236 MB of fresh memory took 0.15-0.7 s of every
`describe` on the 2-core VM, mapping the copy takes a millisecond. The key (the float16 file's
inode, size and modification time) ties the copy to the very file it was made from. Likewise
`prompt-words-<format>-<key>.txt` keeps the words of its prompt phrases
(`PromptBank.prompt_words`), keyed by the entries file: finding them again took ~0.1 s of every
`describe`. A folder that cannot be written is read as it is: what it would keep is remade at
each load."""

from __future__ import annotations

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
from img2prompt.io import keep_copy, readable_dir
from img2prompt.targets.encoder import TargetEncoder

BANK_FORMAT = 2  # 2: entries have a `norm`
ENTRIES_FILE = "entries.parquet"
EMBEDDINGS_FILE = "embeddings.npy"
MANIFEST_FILE = "manifest.json"
FLOAT32_PREFIX = "embeddings-float32-"
WORDS_PREFIX = "prompt-words-"
WORDS_FORMAT = 1
"""In the kept prompt words' name: raised when what counts as a prompt word changes
(`FILLER_CATEGORIES`, `PROMPT_WORD`), so no bank reads words found the earlier way."""
FEW_QUERIES = 16
"""`PromptBank.search` scores up to this many queries with torch, more with FAISS."""
FLOAT32_MIN_BYTES = 16 * 2**20
"""Banks whose float16 vectors take this much or more keep a float32 copy and their prompt
words (module docstring); below it remaking them costs next to nothing."""


FILLER_CATEGORIES = frozenset({"dictionary", "vocabulary"})
"""Entries that are words of a language (the packaged English dictionary, the encoder's
WordPiece words), not of prompts."""
PROMPT_WORD = re.compile(r"[a-z]+")


@dataclass
class PromptBank:
    """Entries and their unit vectors, searched exhaustively by inner product (`search`)."""

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
    words_copy: Path | None = None
    """Where `prompt_words` is (or would be) kept; None: not kept."""
    _vectors: np.ndarray | None = field(default=None, repr=False)
    _prompt_words: frozenset[str] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.texts)

    def prompt_words(self) -> frozenset[str]:
        """Lower-case words of the entries that are prompt phrases, not language filler
        (`FILLER_CATEGORIES`): the vocabulary of prompts. Found once, read from `words_copy`
        where the folder keeps it (and written there for the next load)."""
        if self._prompt_words is None:
            kept = _kept_words(self.words_copy)
            self._prompt_words = kept if kept is not None else self._find_prompt_words()
        return self._prompt_words

    def _find_prompt_words(self) -> frozenset[str]:
        """`prompt_words` from the entries, kept at `words_copy` where there is one."""
        words: set[str] = set()
        for text, category in zip(self.texts, self.categories, strict=True):
            if category not in FILLER_CATEGORIES:
                words.update(PROMPT_WORD.findall(text.lower()))
        if self.words_copy is not None:
            listed = "".join(f"{word}\n" for word in sorted(words))

            def write(tmp: Path) -> None:
                tmp.write_text(listed, encoding="utf-8")

            keep_copy(self.words_copy, write, f"{WORDS_PREFIX}*.txt")
        return frozenset(words)

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
                keep_copy(self.float32_copy, self._save_vectors, f"{FLOAT32_PREFIX}*.npy")
        return self._vectors

    def _save_vectors(self, path: Path) -> None:
        with open(path, "wb") as f:  # a file object: `np.save` would add ".npy" to a name
            np.save(f, self._vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Cosines and entry ids of the `k` nearest entries to each (unit) query row, nearest
        first: an exhaustive inner-product search over `vectors`. Up to `FEW_QUERIES` queries
        (a beam search's residuals, one image) are scored in one pass of torch's matrix product
        over the rows; more go to FAISS (what an `IndexFlatIP` holding the rows returns, bit
        for bit, without copying them into an index). Both are exact; their cosines differ by
        float rounding (~1e-7)."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = min(k, len(self))
        if len(queries) <= FEW_QUERIES:
            return _search_few(self.vectors, queries, k)
        import faiss

        # FAISS multiplies with BLAS only from 128000 queries on by default; its own kernels
        # are ~4x slower than BLAS here from a few dozen queries on (decoding batches them).
        faiss.cvar.distance_compute_blas_threshold = 20
        return faiss.knn(queries, self.vectors, k, metric=faiss.METRIC_INNER_PRODUCT)


def _search_few(rows: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`PromptBank.search` for a few queries: the rows are read once for all of them. (FAISS,
    below its BLAS threshold, reads them once per query: 29 ms against 15 ms for 3 queries
    over the 154k rows of the default bank, 2 AVX2 cores; above it, it is the faster.)"""
    import torch

    # float32 even inside a caller's bfloat16 autocast (ranks must not depend on it).
    with torch.inference_mode(), torch.autocast("cpu", enabled=False):
        scores = torch.from_numpy(rows) @ torch.from_numpy(queries).T  # (rows, queries)
        top = torch.topk(scores.T.contiguous(), k, dim=1)  # sorted, nearest first
    return top.values.numpy(), top.indices.numpy()


def load_bank(path: str | Path, encoder: TargetEncoder | None = None) -> PromptBank:
    """Read a bank folder; with `encoder`, refuse a bank built with another one."""
    path = readable_dir(path)
    manifest = read_bank_manifest(path)
    if encoder is not None:
        check_encoder(path, manifest, encoder)
    # `source` (one string per entry) is only needed by `bank add`, which reads it itself. One
    # file: `ParquetFile` reads it without `pq.read_table`'s dataset layer (its imports: ~0.03 s).
    before = os.stat(path / ENTRIES_FILE)
    with pq.ParquetFile(path / ENTRIES_FILE) as entries:
        table = entries.read(columns=["text", "category", "frequency", "tokens", "norm"])
    entries_key = _file_key(before, os.stat(path / ENTRIES_FILE))
    embeddings, copy = _map_embeddings(path)
    if len(table) != len(embeddings) or len(table) != manifest.get("entries"):
        raise InputError(
            path,
            f"bank is inconsistent: {len(table)} entries, {len(embeddings)} vectors, manifest "
            f"says {manifest.get('entries')}; rebuild it",
        )
    bank = _bank_from_table(path, table, embeddings, manifest)
    bank.float32_copy = copy
    if copy is not None and entries_key is not None:  # a large bank
        bank.words_copy = path / f"{WORDS_PREFIX}{WORDS_FORMAT}-{entries_key}.txt"
    return bank


def _file_key(before: os.stat_result, after: os.stat_result) -> str | None:
    """What names a file's derived copies: its inode, size and modification time, the same
    before and after it was read (else None: it changed meanwhile, keep nothing)."""
    key = [(s.st_ino, s.st_size, s.st_mtime_ns) for s in (before, after)]
    return "-".join(map(str, key[0])) if key[0] == key[1] else None


def _map_embeddings(path: Path) -> tuple[np.ndarray, Path | None]:
    """The folder's float16 vectors, memory-mapped (nothing is read until used), and where their
    float32 copy is kept: named after the very file mapped (its inode, size and time, the same
    before and after mapping it), so a copy of an earlier `embeddings.npy` is never taken for
    this one's. None for small banks."""
    file = path / EMBEDDINGS_FILE
    before = os.stat(file)
    embeddings = np.load(file, mmap_mode="r").view(np.ndarray)
    key = _file_key(before, os.stat(file))
    if embeddings.nbytes < FLOAT32_MIN_BYTES or key is None:
        return embeddings, None
    return embeddings, path / f"{FLOAT32_PREFIX}{key}.npy"


def _mapped_copy(copy: Path | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """The float32 copy at `copy`, memory-mapped, if it is there and of the right shape."""
    if copy is None:
        return None
    try:
        # Copy-on-write: torch wraps it without a warning, and nothing reaches the file.
        mapped = np.load(copy, mmap_mode="c")
    except (OSError, ValueError):  # not written yet, or damaged: it is written again
        return None
    if mapped.shape != shape or mapped.dtype != np.float32:
        return None
    return mapped.view(np.ndarray)


def _kept_words(copy: Path | None) -> frozenset[str] | None:
    """The prompt words kept at `copy` (one per line), if they are there."""
    if copy is None:
        return None
    try:
        return frozenset(copy.read_text(encoding="utf-8").splitlines())
    except (OSError, UnicodeDecodeError):  # not written yet, or damaged: they are found again
        return None


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
