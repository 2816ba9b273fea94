"""Brute-force references, written the plainest way, to check the fast code against."""

from __future__ import annotations

import numpy as np

from img2prompt.data.dedup import TOLERANCE


def brute_force_keep(emb: np.ndarray, threshold: float) -> np.ndarray:
    """Walk rows in order; keep a row unless its float64 cosine with a kept row is >= threshold."""
    gram = emb.astype(np.float64) @ emb.astype(np.float64).T
    kept: list[int] = []
    for i in range(len(emb)):
        if not any(gram[i, k] >= threshold - TOLERANCE for k in kept):
            kept.append(i)
    keep = np.zeros(len(emb), dtype=bool)
    keep[kept] = True
    return keep


def brute_force_pairs(emb: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    gram = emb.astype(np.float64) @ emb.astype(np.float64).T
    a, b = np.nonzero(np.triu(gram >= threshold - TOLERANCE, k=1))
    return set(zip(a.tolist(), b.tolist(), strict=True))


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """Random unit vectors (float32)."""
    x = rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered_unit_rows(rng: np.random.Generator, n: int, dim: int, spread: float) -> np.ndarray:
    """Rows scattered around a few centres, so many pairs sit near any threshold."""
    centres = rng.normal(size=(max(1, n // 4), dim))
    x = centres[rng.integers(0, len(centres), n)] + spread * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
