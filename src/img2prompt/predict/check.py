"""`img2prompt submission check`: everything Kaggle would reject in a submission file, and its
score against a truth file. Built on the file format (`submission.py`) and the prediction and
truth tables (`tables.py`); neither of those scores anything."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from img2prompt.errors import InputError
from img2prompt.metrics import mean_cosine, unit
from img2prompt.predict.submission import read_submission
from img2prompt.predict.tables import PredictionTable, read_truth


@dataclass
class SubmissionCheck:
    path: Path
    problems: list[str] = field(default_factory=list)
    images: int = 0
    dim: int = 0
    score: float | None = None
    """Mean cosine to the truth, when a truth file was given and the ids line up."""

    @property
    def ok(self) -> bool:
        return not self.problems


def check_submission(
    path: str | Path,
    sample: str | Path | None = None,
    truth: str | Path | None = None,
    dim: int = 384,
) -> SubmissionCheck:
    """Everything Kaggle would reject, as a list of problems: format, dimensions, finiteness,
    duplicate images, and (with `sample`) the ids and their order; the score with `truth`."""
    check = SubmissionCheck(Path(path))
    try:
        ids, vectors = read_submission(path)
    except (InputError, OSError, UnicodeDecodeError) as e:
        check.problems.append(str(e))
        return check
    check.images, check.dim = len(ids), vectors.shape[1]
    if vectors.shape[1] != dim:
        check.problems.append(f"{vectors.shape[1]} values per image, expected {dim}")
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if len(bad):
        check.problems.append(f"{len(bad)} images hold NaN or infinity (first: {ids[bad[0]]})")
    duplicates = sorted(image for image, n in Counter(ids).items() if n > 1)
    if duplicates:
        check.problems.append(f"images listed twice: {', '.join(duplicates[:5])}")
    if sample is not None:
        check.problems.extend(_compare_ids(ids, read_submission(sample)[0], Path(sample)))
    if truth is not None and check.ok:
        table = PredictionTable(check.path, ids, unit(vectors))
        try:
            _, targets, _ = read_truth(truth).targets_for(table)
        except ValueError as e:  # images without a truth row, or another dimension
            check.problems.append(str(e))
        else:
            check.score = mean_cosine(table.embeddings, targets)
    return check


def _compare_ids(ids: list[str], expected: list[str], sample: Path) -> list[str]:
    problems = []
    given, wanted = set(ids), set(expected)
    missing = [i for i in expected if i not in given]
    extra = [i for i in ids if i not in wanted]
    if missing:
        problems.append(f"{len(missing)} images of {sample.name} missing: {', '.join(missing[:5])}")
    if extra:
        problems.append(f"{len(extra)} images not in {sample.name}: {', '.join(extra[:5])}")
    if len(ids) != len(expected):
        problems.append(f"{len(ids)} images, {sample.name} has {len(expected)}")
    elif not missing and ids != expected:
        first = next(n for n, (a, b) in enumerate(zip(ids, expected, strict=True)) if a != b)
        problems.append(
            f"images out of {sample.name}'s order: position {first} is {ids[first]}, "
            f"expected {expected[first]}"
        )
    return problems
