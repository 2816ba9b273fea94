"""The searchable part of an index folder: CLIP text features in FAISS, the prompts' MiniLM
targets, and the blend that turns an image's nearest prompts into a predicted target.

Files: `index.faiss` (inner product over unit CLIP text features: IndexFlatIP, IVF-Flat or
HNSW), `targets.npy` ((N, 384) float32, memory-mapped at load, so tens of millions of rows cost
page cache, not RAM) and `prompts.parquet` (`id`, `prompt`, `group`, in index row order).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

INDEX_FILE = "index.faiss"
TARGETS_FILE = "targets.npy"
PROMPTS_FILE = "prompts.parquet"
SEARCH_BLOCK = 1 << 18
"""Rows scored per matmul in exact search: 16 queries x 262k rows of float32 scores = 16 MB."""


def blend(scores: np.ndarray, targets: np.ndarray, temperature: float) -> np.ndarray:
    """(B, k) cosines and (B, k, D) targets of the k nearest prompts -> (B, D) unit vectors:
    normalise(sum_j softmax(s / T)_j * target_j). Rows with fewer neighbors carry -inf
    scores, which get zero weight."""
    logits = scores.astype(np.float64) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    weights /= weights.sum(axis=1, keepdims=True)
    mixed = np.einsum("bk,bkd->bd", weights, targets.astype(np.float64))
    norms = np.linalg.norm(mixed, axis=1, keepdims=True)
    return (mixed / np.maximum(norms, 1e-12)).astype(np.float32)


def top_k(
    queries: np.ndarray, blocks: Iterable[np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact search by brute force: (B, D) queries and the (n_i, D) row blocks of an index, in
    order -> (B, k) inner products (descending) and row ids of the k highest. One block's scores
    are held at a time; ties are broken by the lower row, at the k-th place too."""
    best_scores = np.zeros((len(queries), 0), np.float32)
    best_ids = np.zeros((len(queries), 0), np.int64)
    start = 0
    for rows in blocks:
        scores = queries @ rows.T
        ids = np.broadcast_to(np.arange(start, start + len(rows)), scores.shape)
        start += len(rows)
        scores = np.concatenate([best_scores, scores], axis=1)
        ids = np.concatenate([best_ids, ids], axis=1)
        if scores.shape[1] > k:
            scores, ids = _keep_top(scores, ids, k)
        best_scores, best_ids = scores, ids
    order = np.lexsort((best_ids, -best_scores), axis=1)
    return np.take_along_axis(best_scores, order, 1), np.take_along_axis(best_ids, order, 1)


def _keep_top(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k highest of each row (unordered), by argpartition; the rare rows whose k-th score
    is tied with a left-out one are redone by a full sort, so the lower rows win the tie."""
    if k == 0:
        return scores[:, :0], ids[:, :0]
    keep = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    kept_scores, kept_ids = np.take_along_axis(scores, keep, 1), np.take_along_axis(ids, keep, 1)
    kth = kept_scores.min(axis=1, keepdims=True)
    tied = (scores == kth).sum(1) > (kept_scores == kth).sum(1)
    for row in np.flatnonzero(tied):
        order = np.lexsort((ids[row], -scores[row]))[:k]
        kept_scores[row], kept_ids[row] = scores[row, order], ids[row, order]
    return kept_scores, kept_ids


def configure_search(faiss_index, nprobe: int, ef_search: int) -> None:
    """Search effort of an approximate FAISS index: lists probed (IVF) or candidate list size
    (HNSW); exact indexes ignore both."""
    import faiss

    ivf = faiss.try_extract_index_ivf(faiss_index)
    if ivf is not None:
        ivf.nprobe = nprobe
    if hasattr(faiss_index, "hnsw"):
        faiss_index.hnsw.efSearch = ef_search


class PromptIndex:
    """FAISS over the prompts' unit CLIP text features plus their MiniLM targets. Read-only once
    built, so copies of a model share it (`__deepcopy__`): the predictor's bf16 copy of the CLIP
    tower must not duplicate millions of rows."""

    def __init__(
        self,
        faiss_index,
        targets: np.ndarray,
        folder: Path | None = None,
        nprobe: int = 32,
        ef_search: int = 128,
    ) -> None:
        if faiss_index.ntotal != len(targets):
            raise ValueError(
                f"{folder}: the index holds {faiss_index.ntotal:,} prompts but "
                f"{TARGETS_FILE} {len(targets):,}; rebuild it"
            )
        self.faiss = faiss_index
        self.targets = targets
        self.folder = folder
        self._rows = _flat_rows(faiss_index)
        self._prompts: list[str] | None = None
        self._groups: np.ndarray | None = None
        self.configure(nprobe, ef_search)

    def configure(self, nprobe: int, ef_search: int) -> None:
        """Search effort of approximate indexes (ignored by exact ones)."""
        configure_search(self.faiss, nprobe, ef_search)

    def __len__(self) -> int:
        return int(self.faiss.ntotal)

    def __deepcopy__(self, memo: dict) -> PromptIndex:
        return self

    @property
    def dim(self) -> int:
        return int(self.faiss.d)

    def search(self, features: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(B, D) unit float32 features -> (B, k) cosines (descending) and row ids; k is capped
        at the index size. Exact indexes are searched with numpy's BLAS over FAISS's own rows
        (no copy): faster than FAISS's own flat search for small batches, and not slowed by its
        OpenMP threads competing with other work (docs/clip-index.md). Ties go to the lower row."""
        features = np.ascontiguousarray(np.atleast_2d(features), dtype=np.float32)
        k = min(k, len(self))
        if self._rows is None:
            return self.faiss.search(features, k)
        rows = self._rows
        blocks = (rows[start : start + SEARCH_BLOCK] for start in range(0, len(rows), SEARCH_BLOCK))
        return top_k(features, blocks, k)

    def predict(self, features: np.ndarray, k: int, temperature: float) -> np.ndarray:
        """The retrieval model's output for (B, D) unit CLIP image features."""
        scores, ids = self.search(features, k)
        return self.blend(scores, ids, temperature)

    def blend(self, scores: np.ndarray, ids: np.ndarray, temperature: float) -> np.ndarray:
        valid = ids >= 0  # approximate searches may return fewer than k
        rows = np.where(valid, ids, 0)
        scores = np.where(valid, scores, -np.inf)
        targets = np.asarray(self.targets[rows.reshape(-1)]).reshape(*rows.shape, -1)
        return blend(scores, targets, temperature)

    def features(self, rows: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Stored CLIP text features of some rows (all by default), float32."""
        rows = np.arange(len(self)) if rows is None else np.asarray(rows, dtype=np.int64)
        if self._rows is not None:
            return np.array(self._rows[rows])
        if not len(rows):
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self.faiss.reconstruct(int(i)) for i in rows])

    @property
    def prompts(self) -> list[str]:
        if self._prompts is None:
            self._load_table()
        return self._prompts  # type: ignore[return-value]

    @property
    def groups(self) -> np.ndarray:
        if self._groups is None:
            self._load_table()
        return self._groups  # type: ignore[return-value]

    def _load_table(self) -> None:
        if self.folder is None:
            raise ValueError("this index has no prompts table (built in memory)")
        table = pq.read_table(self.folder / PROMPTS_FILE, columns=["prompt", "group"])
        self._prompts = table.column("prompt").to_pylist()
        self._groups = table.column("group").to_numpy().astype(np.int64)


def _flat_rows(index) -> np.ndarray | None:
    """An exact inner-product index's stored rows as an (N, D) numpy view, else None."""
    import faiss

    if not isinstance(index, faiss.IndexFlat) or index.metric_type != faiss.METRIC_INNER_PRODUCT:
        return None
    if index.ntotal == 0:
        return np.zeros((0, index.d), np.float32)
    flat = faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d)
    return flat.reshape(index.ntotal, index.d)


def open_index(folder: Path, nprobe: int = 32, ef_search: int = 128) -> PromptIndex:
    import faiss

    for name in (INDEX_FILE, TARGETS_FILE, PROMPTS_FILE):
        if not (folder / name).is_file():
            raise ValueError(f"{folder / name}: missing; the index folder is incomplete")
    index = faiss.read_index(str(folder / INDEX_FILE))
    targets = np.load(folder / TARGETS_FILE, mmap_mode="r")
    return PromptIndex(index, targets, folder, nprobe, ef_search)
