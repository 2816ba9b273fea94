"""`img2prompt evaluate`: the competition metric (mean cosine to the true prompt embedding),
broken down by fold and source, with the worst images listed and a histogram drawn."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from img2prompt.errors import InputError
from img2prompt.io import atomic_path, write_json
from img2prompt.metrics import cosines as row_cosines
from img2prompt.predict.tables import PredictionTable, Truth, read_predictions, read_truth

WORST_SHOWN = 10


@dataclass
class Evaluation:
    predictions: PredictionTable
    truth: Truth
    matched_by: str
    cosines: np.ndarray
    """(N,) cosine of every prediction row to its true embedding."""
    per_fold: dict[str, tuple[int, float]]
    per_source: dict[str, tuple[int, float]]
    unmatched: list[str] = field(default_factory=list)
    """Prediction rows left out because the truth has no row for them (e.g. images whose prompt
    `data prepare` dropped as a near duplicate)."""

    @property
    def mean(self) -> float:
        return float(self.cosines.mean())

    def worst(self, k: int = WORST_SHOWN) -> list[tuple[str, float]]:
        order = np.argsort(self.cosines, kind="stable")[:k]
        return [(self.predictions.images[i], float(self.cosines[i])) for i in order]

    def to_dict(self) -> dict:
        return {
            "predictions": str(self.predictions.path),
            "truth": str(self.truth.path),
            "matched_by": self.matched_by,
            "rows": len(self.cosines),
            "unmatched": self.unmatched,
            "mean_cosine": self.mean,
            "median_cosine": float(np.median(self.cosines)),
            "per_fold": {k: {"rows": n, "mean_cosine": m} for k, (n, m) in self.per_fold.items()},
            "per_source": {
                k: {"rows": n, "mean_cosine": m} for k, (n, m) in self.per_source.items()
            },
            "worst": [{"image": image, "cosine": c} for image, c in self.worst()],
        }


def evaluate(predictions: str | Path, truth: str | Path, strict: bool = False) -> Evaluation:
    """Score every prediction row that has a true embedding. Rows without one are listed in
    `unmatched` and left out, or, with `strict`, an error."""
    table = read_predictions(predictions)
    reference = read_truth(truth)
    rows, matched_by = reference.match(table, allow_missing=not strict)
    unmatched = [table.images[i] for i in np.flatnonzero(rows < 0)]
    if len(unmatched) == len(table):
        raise InputError(
            table.path,
            f"{len(table)} of {len(table)} rows have no truth in {reference.path} "
            f"(matched by {matched_by}; first: {', '.join(table.keys(matched_by)[:3])})",
        )
    if unmatched:
        kept = np.flatnonzero(rows >= 0)
        table, rows = table.take(kept), rows[kept]
    targets = reference.targets_of(table, rows)
    cosines = row_cosines(table.embeddings, targets)
    folds = table.folds if table.folds is not None else _take(reference.folds, rows)
    sources = _take(reference.sources, rows)
    return Evaluation(
        table,
        reference,
        matched_by,
        cosines,
        _group(cosines, folds),
        _group(cosines, sources),
        unmatched,
    )


def _take(values, rows: np.ndarray):
    if values is None:
        return None
    return [values[i] for i in rows]


def _group(cosines: np.ndarray, labels) -> dict[str, tuple[int, float]]:
    if labels is None:
        return {}
    groups: dict[str, list[float]] = defaultdict(list)
    for label, cosine in zip(labels, cosines.tolist(), strict=True):
        groups[str(label)].append(cosine)
    return {k: (len(v), float(np.mean(v))) for k, v in sorted(groups.items())}


def write_report(evaluation: Evaluation, out: str | Path) -> tuple[Path, Path]:
    """`out/report.json` and `out/cosine_histogram.png`; returns both paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    report = out / "report.json"
    write_json(evaluation.to_dict(), report)
    figure, axes = plt.subplots(figsize=(6, 3.5), dpi=120)
    axes.hist(evaluation.cosines, bins=min(50, max(5, len(evaluation.cosines) // 4)))
    mean = evaluation.mean
    axes.axvline(mean, color="crimson", linestyle="--", label=f"mean {mean:.4f}")
    axes.set_xlabel("cosine to the true prompt embedding")
    axes.set_ylabel("images")
    axes.set_title(evaluation.predictions.path.name)
    axes.legend()
    figure.tight_layout()
    histogram = out / "cosine_histogram.png"
    with atomic_path(histogram) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
    return report, histogram
