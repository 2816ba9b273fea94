"""The competition metric, written once: cosine similarity of predicted and true prompt vectors,
row by row, and its mean. Works on numpy arrays and torch tensors alike (same type out as in).
Imports nothing else from img2prompt."""

from __future__ import annotations

from typing import TypeVar

import numpy as np

Array = TypeVar("Array")


def cosines(pred: Array, truth: Array, normalised: bool = True) -> Array:
    """(N, D) x (N, D) -> (N,) cosine of each row pair. Rows are taken as unit vectors (every
    table here stores them so); `normalised=False` divides by the norms first."""
    if not normalised:
        pred, truth = unit(pred), unit(truth)
    if isinstance(pred, np.ndarray):
        return np.einsum("nd,nd->n", pred, truth)  # no (N, D) temporary
    return (pred * truth).sum(-1)


def mean_cosine(pred: Array, truth: Array, normalised: bool = True) -> float:
    """The Kaggle "Image to Prompts" score: the mean of `cosines` over the rows."""
    return float(cosines(pred, truth, normalised).mean())


def unit(x: Array) -> Array:
    """Rows scaled to length 1 (a zero row stays zero)."""
    if isinstance(x, np.ndarray):
        x = x.astype(np.float32, copy=False)
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
