"""Near-duplicate prompts with FAISS.

Semantics (exact mode): walk prompts in input order; keep a prompt unless its cosine with an already
*kept* prompt is >= threshold. Cosines are decided in float64 from the stored float32 vectors, with
a tolerance of `TOLERANCE` for rounding (so at threshold 1.0 two identical vectors are duplicates).
FAISS screens candidates in float32 with a little slack; every candidate is then confirmed in
float64, so the result equals a float64 brute force, not just "almost".

Approximate mode, for corpora of millions: an IVF index finds candidate pairs (range search over
`nprobe` lists), the same greedy walk runs over them, and the pair recall against exact search on a
random sample is measured and returned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import faiss
import numpy as np

from img2prompt.errors import ConfigError
from img2prompt.metrics import cosines
from img2prompt.progress import progress_bar

TOLERANCE = 1e-6
# float32 BLAS dot products of unit vectors in 384-d differ from float64 by ~1e-7; screen wider.
_SCREEN_SLACK = 1e-4


@dataclass
class DedupResult:
    keep: np.ndarray  # bool (N,)
    duplicate_of: np.ndarray  # int64 (N,): the kept row that made a row a duplicate, else -1
    pair_recall: float | None = None  # approximate mode only: measured on a sample


def _cosine64(emb: np.ndarray, a: np.ndarray, b: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """float64 inner products of row pairs, a chunk at a time (millions would not fit at once)."""
    out = np.empty(len(a), dtype=np.float64)
    for start in range(0, len(a), chunk):
        part = slice(start, start + chunk)
        out[part] = cosines(emb[a[part]].astype(np.float64), emb[b[part]].astype(np.float64))
    return out


def _similar_hits(
    index: faiss.Index,
    emb: np.ndarray,
    query_rows: np.ndarray,
    threshold: float,
    id_rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (query row, hit row) with cosine >= threshold.

    FAISS screens in float32 a little below the threshold; only pairs within the float32 error of
    it are decided again in float64, so the answer is exact at the cost of a few dot products.
    `id_rows` maps the index's ids to rows of `emb` (None: they are rows already).
    """
    lims, sims, ids = index.range_search(emb[query_rows], threshold - TOLERANCE - _SCREEN_SLACK)
    query = np.repeat(query_rows, np.diff(lims).astype(np.int64))
    hit = ids.astype(np.int64) if id_rows is None else id_rows[ids]
    unsure = np.flatnonzero(sims < threshold - TOLERANCE + _SCREEN_SLACK)
    ok = np.ones(len(query), dtype=bool)
    ok[unsure] = _cosine64(emb, query[unsure], hit[unsure]) >= threshold - TOLERANCE
    return query[ok], hit[ok]


def _greedy_over_pairs(
    earlier: np.ndarray, later: np.ndarray, dropped: np.ndarray, duplicate_of: np.ndarray
) -> None:
    """Keep-first walk over confirmed pairs (earlier < later), updating `dropped` in place.

    A row's fate depends on the fate of earlier rows, which is why this is a loop; it only visits
    rows that have an earlier neighbor, a small share of a corpus.
    """
    if len(later) == 0:
        return
    order = np.lexsort((earlier, later))
    earlier, later = earlier[order], later[order]
    starts = np.flatnonzero(np.r_[True, later[1:] != later[:-1]])
    ends = np.r_[starts[1:], len(later)]
    for start, end in zip(starts, ends, strict=True):
        row = later[start]
        if dropped[row]:
            continue
        for candidate in earlier[start:end]:
            if not dropped[candidate]:
                dropped[row] = True
                duplicate_of[row] = candidate
                break


def _check(emb: np.ndarray, threshold: float) -> np.ndarray:
    if emb.ndim != 2:
        raise ValueError(f"embeddings must be a 2-d array, got shape {emb.shape}")
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"threshold must be in (0, 1], got {threshold}")
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    squared_norms = np.einsum("ij,ij->i", emb, emb)  # no (N, dim) temporary, unlike linalg.norm
    if len(emb) and not np.allclose(squared_norms[np.isfinite(squared_norms)], 1.0, atol=2e-3):
        raise ValueError("embeddings must be L2-normalised (cosine is their inner product)")
    return emb


def exact_near_duplicates(
    emb: np.ndarray, threshold: float, block_size: int = 4096, progress: bool = False
) -> DedupResult:
    """Exact keep-first de-duplication: each block of rows is checked against the kept rows so far
    (a FAISS flat index that grows), then within itself."""
    emb = _check(emb, threshold)
    n, dim = emb.shape
    dropped = np.zeros(n, dtype=bool)
    duplicate_of = np.full(n, -1, dtype=np.int64)
    kept_index = faiss.IndexFlatIP(dim)
    kept_rows = np.empty(0, dtype=np.int64)
    with progress_bar("near-duplicates (exact)", total=n, enabled=progress) as bar:
        for start in range(0, n, block_size):
            rows = np.arange(start, min(start + block_size, n))
            if kept_index.ntotal:
                query, hit = _similar_hits(kept_index, emb, rows, threshold, kept_rows)
                # Any kept neighbor will do; keep the first one FAISS listed for the report.
                dropped[query[::-1]] = True
                duplicate_of[query[::-1]] = hit[::-1]
            block_index = faiss.IndexFlatIP(dim)
            block_index.add(emb[rows])
            later, earlier = _similar_hits(block_index, emb, rows, threshold, rows)
            inside = earlier < later
            _greedy_over_pairs(earlier[inside], later[inside], dropped, duplicate_of)
            newly_kept = rows[~dropped[rows]]
            kept_index.add(emb[newly_kept])
            kept_rows = np.concatenate([kept_rows, newly_kept])
            bar.advance(len(rows))
    return DedupResult(keep=~dropped, duplicate_of=duplicate_of)


def similar_pairs(
    emb: np.ndarray,
    threshold: float,
    mode: str = "exact",
    block_size: int = 4096,
    nprobe: int = 16,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """All pairs (a, b), a < b, with cosine >= threshold (confirmed in float64).

    Exact mode queries each block against the rows before it (the lower triangle, half the work of
    a full self-search); approximate mode uses an IVF index.
    """
    emb = _check(emb, threshold)
    if mode == "approx":
        return _ivf_similar_pairs(emb, threshold, nprobe, block_size, progress)
    if mode != "exact":
        raise ConfigError(f"mode must be 'exact' or 'approx', got {mode!r}")
    index = faiss.IndexFlatIP(emb.shape[1])
    parts_a, parts_b = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    with progress_bar("similar pairs (exact)", total=len(emb), enabled=progress) as bar:
        for start in range(0, len(emb), block_size):
            rows = np.arange(start, min(start + block_size, len(emb)))
            index.add(emb[rows])
            query, hit = _similar_hits(index, emb, rows, threshold)
            below = hit < query
            parts_a.append(hit[below])
            parts_b.append(query[below])
            bar.advance(len(rows))
    return np.concatenate(parts_a), np.concatenate(parts_b)


def _ivf_similar_pairs(
    emb: np.ndarray, threshold: float, nprobe: int, block_size: int, progress: bool
) -> tuple[np.ndarray, np.ndarray]:
    n, dim = emb.shape
    if n == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    nlist = min(int(4 * math.sqrt(n)), n // 39)  # k-means wants >= 39 points per list
    if nlist < 2:  # too few rows to cluster: a flat index is exact and just as fast
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).choice(n, size=min(n, nlist * 64), replace=False)
        index.train(emb[np.sort(sample)])
        index.nprobe = min(nprobe, nlist)
    index.add(emb)
    parts_a, parts_b = [], []
    with progress_bar("similar pairs (IVF)", total=n, enabled=progress) as bar:
        for start in range(0, n, block_size):
            rows = np.arange(start, min(start + block_size, n))
            query, hit = _similar_hits(index, emb, rows, threshold)
            other = hit != query
            parts_a.append(np.minimum(query, hit)[other])
            parts_b.append(np.maximum(query, hit)[other])
            bar.advance(len(rows))
    pairs = np.unique(np.stack([np.concatenate(parts_a), np.concatenate(parts_b)], axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1]


def approx_near_duplicates(
    emb: np.ndarray,
    threshold: float,
    nprobe: int = 16,
    block_size: int = 4096,
    recall_sample: int = 2000,
    progress: bool = False,
) -> DedupResult:
    """Keep-first de-duplication over IVF candidate pairs; pair recall measured on a sample."""
    emb = _check(emb, threshold)
    earlier, later = _ivf_similar_pairs(emb, threshold, nprobe, block_size, progress)
    n = len(emb)
    dropped = np.zeros(n, dtype=bool)
    duplicate_of = np.full(n, -1, dtype=np.int64)
    _greedy_over_pairs(earlier, later, dropped, duplicate_of)
    recall = pair_recall(emb, threshold, earlier, later, recall_sample)
    return DedupResult(keep=~dropped, duplicate_of=duplicate_of, pair_recall=recall)


def pair_recall(
    emb: np.ndarray,
    threshold: float,
    found_a: np.ndarray,
    found_b: np.ndarray,
    sample_size: int = 2000,
    seed: int = 0,
) -> float | None:
    """Share of the true similar pairs that touch a random sample of rows which were found.

    Truth is an exact flat search of the sampled rows against all rows. None when the sample holds
    no similar pair at all.
    """
    emb = _check(emb, threshold)  # cheap: one einsum over the rows
    n = len(emb)
    if n == 0:
        return None
    sample = np.sort(np.random.default_rng(seed).choice(n, size=min(n, sample_size), replace=False))
    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(emb)
    query, hit = _similar_hits(index, emb, sample, threshold)
    other = hit != query
    query, hit = query[other], hit[other]
    true_pairs = set(
        zip(np.minimum(query, hit).tolist(), np.maximum(query, hit).tolist(), strict=True)
    )
    if not true_pairs:
        return None
    in_sample = np.isin(found_a, sample) | np.isin(found_b, sample)
    found = set(zip(found_a[in_sample].tolist(), found_b[in_sample].tolist(), strict=True))
    return len(true_pairs & found) / len(true_pairs)


def near_duplicates(
    emb: np.ndarray,
    threshold: float,
    mode: str = "exact",
    nprobe: int = 16,
    progress: bool = False,
) -> DedupResult:
    """The filter `data prepare` runs: exact, or approximate with `nprobe` IVF lists per query."""
    if mode == "exact":
        return exact_near_duplicates(emb, threshold, progress=progress)
    if mode == "approx":
        return approx_near_duplicates(emb, threshold, nprobe=nprobe, progress=progress)
    raise ConfigError(f"mode must be 'exact' or 'approx', got {mode!r}")
