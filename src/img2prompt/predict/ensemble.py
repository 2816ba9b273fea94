"""Ensembles: non-negative member weights that maximise mean cosine on out-of-fold predictions.

The blend of an image is normalise(sum_m w_m * p_m) with every member's p_m L2-normalised first.
The objective is smooth in w and cheap: with A[m, i] = p_mi . t_i and the per-image Gram matrices
G_i = P_i P_i^T it needs no pass over the 384 dimensions, so L-BFGS-B (scipy, which keeps w >= 0
as bounds) converges in milliseconds even for 100k OOF rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from img2prompt.errors import ConfigError, InputError
from img2prompt.io import write_json
from img2prompt.metrics import mean_cosine, unit
from img2prompt.predict.tables import PredictionTable, Truth

WEIGHTS_FORMAT = "img2prompt-ensemble"


@dataclass
class EnsembleFit:
    members: list[str]
    weights: np.ndarray
    """(M,) non-negative, summing to 1."""
    member_scores: list[float]
    blend_score: float
    rows: int
    matched_by: str

    def to_dict(self) -> dict:
        return {
            "format": WEIGHTS_FORMAT,
            "members": self.members,
            "weights": [float(w) for w in self.weights],
            "member_scores": self.member_scores,
            "blend_score": self.blend_score,
            "rows": self.rows,
            "matched_by": self.matched_by,
        }


def align(members: list[PredictionTable]) -> np.ndarray:
    """(M, N, D) member predictions in the first member's row order (rows matched by image)."""
    first = members[0]
    stacked = [first.embeddings]
    for member in members[1:]:
        position = {image: i for i, image in enumerate(member.images)}
        if len(position) != len(member) or set(position) != set(first.images):
            raise InputError(
                member.path,
                f"its images differ from {first.path}'s ({len(member)} vs {len(first)} rows); "
                "ensemble members must predict the same images",
            )
        if member.embeddings.shape[1] != first.embeddings.shape[1]:
            raise InputError(member.path, "embedding size differs from the first member's")
        stacked.append(member.embeddings[[position[image] for image in first.images]])
    return np.stack(stacked)


def blend(predictions: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(M, N, D) normalised member predictions, (M,) weights -> (N, D) unit vectors."""
    return unit(np.einsum("m,mnd->nd", np.asarray(weights, np.float32), predictions))


def blend_objective(
    predictions: np.ndarray, targets: np.ndarray
) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    """w -> (mean cosine of the blend to the targets, its gradient in w), in float64."""
    p = predictions.astype(np.float64)
    t = targets.astype(np.float64)
    a = np.einsum("mnd,nd->mn", p, t)  # member-to-truth dot products
    gram = np.einsum("mnd,knd->nmk", p, p)  # (N, M, M)

    def mean_cosine(w: np.ndarray) -> tuple[float, np.ndarray]:
        bw = gram @ w  # (N, M): b_i . p_mi, with b_i the unnormalised blend
        norm_sq = np.maximum(np.einsum("nm,m->n", bw, w), 1e-24)
        norm = np.sqrt(norm_sq)
        bt = w @ a  # (N,): b_i . t_i
        grad = (a / norm - (bt / (norm_sq * norm))[None, :] * bw.T).mean(axis=1)
        return float((bt / norm).mean()), grad

    return mean_cosine


def fit_weights(predictions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Non-negative weights maximising mean cosine(blend, target); they sum to 1."""
    from scipy.optimize import minimize

    objective = blend_objective(predictions, targets)

    def negative(w: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = objective(w)
        return -value, -grad

    m = len(predictions)
    result = minimize(
        negative, np.full(m, 1.0 / m), jac=True, method="L-BFGS-B", bounds=[(0.0, None)] * m
    )
    weights = np.clip(result.x, 0.0, None)
    if weights.sum() <= 0:
        raise ValueError("ensemble fit failed: all weights went to zero")
    return weights / weights.sum()


def fit_ensemble(members: list[PredictionTable], truth: Truth) -> EnsembleFit:
    if len(members) < 2:
        raise ConfigError("an ensemble needs at least two prediction files")
    predictions = align(members)
    rows, targets, matched_by = truth.targets_for(members[0])  # align() checked the others
    weights = fit_weights(predictions, targets)
    member_scores = [mean_cosine(p, targets) for p in predictions]
    blend_score = mean_cosine(blend(predictions, weights), targets)
    return EnsembleFit(
        [str(m.path) for m in members], weights, member_scores, blend_score, len(rows), matched_by
    )


def save_weights(fit: EnsembleFit, path: str | Path) -> None:
    write_json(fit.to_dict(), path)


def load_weights(path: str | Path) -> EnsembleFit:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(path, f"not a weights file: {e}") from None
    if not isinstance(data, dict) or data.get("format") != WEIGHTS_FORMAT:
        raise InputError(path, "not an img2prompt ensemble weights file (see `ensemble fit`)")
    return EnsembleFit(
        data["members"],
        np.asarray(data["weights"], dtype=np.float64),
        data["member_scores"],
        data["blend_score"],
        data["rows"],
        data["matched_by"],
    )


def apply_ensemble(fit: EnsembleFit, members: list[PredictionTable]) -> np.ndarray:
    """The blend for new prediction files, given in the order the weights were fitted."""
    if len(members) != len(fit.weights):
        raise ConfigError(
            f"the weights are for {len(fit.weights)} members ({', '.join(fit.members)}); "
            f"got {len(members)} prediction files"
        )
    return blend(align(members), fit.weights)
