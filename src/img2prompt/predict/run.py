"""The `predict` command: image files and folders -> embeddings Parquet and/or Kaggle CSV."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from img2prompt.data.images import find_images
from img2prompt.errors import InputError
from img2prompt.predict.predictor import Predictions, PredictOptions, Predictor
from img2prompt.predict.submission import write_submission
from img2prompt.predict.tables import image_keys, write_predictions


def run_predict(
    model: str | Path,
    inputs: Sequence[Path],
    options: PredictOptions,
    out: Path | None = None,
    submission: Path | None = None,
    progress: bool = True,
) -> tuple[Predictor, Predictions]:
    """Predict every image under `inputs` (input order) and write the requested files. Images
    that cannot be decoded are listed in the result, never written; files are replaced
    atomically, so a crash leaves no partial output."""
    if out is not None and out.suffix.lower() != ".parquet":
        raise ValueError(f"--out must end in .parquet, got {out.name!r}")
    paths = find_images(list(inputs))
    if not paths:
        raise ValueError(f"no images (png, jpg, jpeg, webp) under {', '.join(map(str, inputs))}")
    if submission is not None:
        _check_unique_stems(paths)
    predictor = Predictor(model, options)
    result = predictor.predict_files(paths, progress=progress)
    if out is not None:
        write_predictions(out, result.images, result.embeddings)
    if submission is not None:
        write_submission(submission, image_keys(result.images), result.embeddings)
    return predictor, result


def _check_unique_stems(paths: list[Path]) -> None:
    """Kaggle ids are file stems; two images with one stem would make an ambiguous submission."""
    repeated = [stem for stem, n in Counter(p.stem for p in paths).items() if n > 1]
    if repeated:
        first = [str(p) for p in paths if p.stem == repeated[0]]
        raise InputError(
            first[1], f"same image id {repeated[0]!r} as {first[0]}; a submission needs unique ids"
        )
