"""The `predict` command: image files and folders -> embeddings Parquet and/or Kaggle CSV."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from img2prompt.data.images import scan_images
from img2prompt.errors import ConfigError, InputError
from img2prompt.models.model import resolve_model_dir
from img2prompt.predict.predictor import Predictions, PredictOptions, Predictor
from img2prompt.predict.resume import PredictJob, job_identity, partial_folder
from img2prompt.predict.submission import write_submission
from img2prompt.predict.tables import image_keys, write_predictions


def run_predict(
    model: str | Path,
    inputs: Sequence[Path],
    options: PredictOptions,
    out: Path | None = None,
    submission: Path | None = None,
    progress: bool = True,
    restart: bool = False,
) -> tuple[Predictor, Predictions]:
    """Predict every image under `inputs` (input order) and write the requested files. Images
    that cannot be decoded are listed in the result, never written; files are replaced
    atomically, so a crash leaves no partial output. Finished rows are saved as the job goes
    (`resume.PredictJob`): the same command after an interruption predicts only the rest."""
    if out is not None and out.suffix.lower() != ".parquet":
        raise ConfigError(f"--out must end in .parquet, got {out.name!r}")
    if out is None and submission is None:
        raise ConfigError("give --out and/or --submission")
    search = scan_images(inputs)
    paths = [str(path) for path in search.images]
    if not paths:
        raise ConfigError(f"no image files under {', '.join(map(str, inputs))}{search.summary()}")
    if submission is not None:
        _check_unique_stems([Path(path) for path in paths])
    folder = resolve_model_dir(model)  # once: an hf: model would otherwise be looked up twice
    job = PredictJob(partial_folder(out or submission), job_identity(folder, options), restart)
    if job.precision and options.precision == "auto":
        options = replace(options, precision=job.precision)  # as decided when the job began
    predictor = Predictor(folder, options)
    start = time.perf_counter()
    pending = job.pending(paths)
    for batch in predictor.iter_batches(pending, progress):
        job.record(batch)
    images, embeddings, failures = job.rows(paths, predictor.output_dim)
    result = Predictions(
        images,
        embeddings,
        failures,
        precision=job.precision or "fp32",  # this run's, or the interrupted one's
        seconds=time.perf_counter() - start,
        resumed=len(paths) - len(pending),
        skipped=search.summary(),
    )
    if out is not None:
        write_predictions(out, result.images, result.embeddings)
    if submission is not None:
        write_submission(submission, image_keys(result.images), result.embeddings)
    job.finish()
    return predictor, result


def _check_unique_stems(paths: list[Path]) -> None:
    """Kaggle ids are file stems; two images with one stem would make an ambiguous submission."""
    repeated = [stem for stem, n in Counter(p.stem for p in paths).items() if n > 1]
    if repeated:
        first = [str(p) for p in paths if p.stem == repeated[0]]
        raise InputError(
            first[1], f"same image id {repeated[0]!r} as {first[0]}; a submission needs unique ids"
        )
