"""The Kaggle submission format: one row per image and dimension, `imgId_eId,val`, eId 0..dim-1,
images in input order."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from img2prompt.errors import InputError
from img2prompt.io import atomic_path


def write_submission(path: str | Path, image_ids: Sequence[str], embeddings: np.ndarray) -> None:
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or len(embeddings) != len(image_ids):
        raise ValueError(
            f"need one embedding row per image: {len(image_ids)} ids, array {embeddings.shape}"
        )
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        f.write("imgId_eId,val\n")
        for image_id, vector in zip(image_ids, embeddings, strict=True):
            f.writelines(f"{image_id}_{e},{v:.9g}\n" for e, v in enumerate(vector.tolist()))


def read_submission(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Image ids in file order and their (N, dim) float32 vectors; errors name the line."""
    path = Path(path)
    ids: list[str] = []
    rows: list[list[float]] = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != ["imgId_eId", "val"]:
            raise InputError(path, f"header must be imgId_eId,val, got {header}", 1)
        for line, fields in enumerate(reader, start=2):
            if len(fields) != 2:
                raise InputError(path, f"expected 2 fields, found {len(fields)}", line)
            image_id, _, e_text = fields[0].rpartition("_")
            try:
                e_id, value = int(e_text), float(fields[1])
            except ValueError:
                raise InputError(path, f"bad row {fields!r}", line) from None
            if e_id == 0:
                ids.append(image_id)
                rows.append([])
            if not ids or image_id != ids[-1] or e_id != len(rows[-1]):
                raise InputError(
                    path,
                    f"expected {ids[-1] if ids else '?'}_{len(rows[-1]) if rows else 0}, "
                    f"got {fields[0]} (rows must run eId 0..dim-1 per image)",
                    line,
                )
            rows[-1].append(value)
    if not ids:
        raise InputError(path, "no rows")
    if len({len(r) for r in rows}) != 1:
        raise InputError(path, "images have different numbers of dimensions")
    return ids, np.asarray(rows, dtype=np.float32)


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
        # tables reads submissions with this module, so it is imported here, not at the top
        from img2prompt.predict.tables import PredictionTable, normalise, read_truth

        table = PredictionTable(check.path, ids, normalise(vectors))
        try:
            _, targets, _ = read_truth(truth).targets_for(table)
        except ValueError as e:  # images without a truth row, or another dimension
            check.problems.append(str(e))
        else:
            check.score = float(np.einsum("nd,nd->n", table.embeddings, targets).mean())
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
