"""The `predict` command: image files and folders -> embeddings Parquet and/or Kaggle CSV."""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from img2prompt.data.images import ImageSearch, scan_images
from img2prompt.errors import ConfigError, InputError
from img2prompt.models.model import resolve_model_dir
from img2prompt.predict.options import PredictOptions
from img2prompt.predict.predictor import Predictions, Predictor
from img2prompt.predict.resume import (
    PredictJob,
    job_identity,
    joined_rows,
    partial_folder,
    rank_folder,
    ranks_done,
)
from img2prompt.predict.submission import write_submission
from img2prompt.predict.tables import image_keys, write_predictions
from img2prompt.ranks import Ranks, join_ranks, leave_ranks


def run_predict(
    model: str | Path,
    inputs: Sequence[Path],
    options: PredictOptions,
    *,
    out: Path | None = None,
    submission: Path | None = None,
    progress: bool = True,
    restart: bool = False,
) -> tuple[Predictor, Predictions]:
    """Predict every image under `inputs` (input order) and write the requested files. Images
    that cannot be decoded are listed in the result, never written; files are replaced
    atomically, so a crash leaves no partial output. Finished rows are saved as the job goes
    (`resume.PredictJob`): the same command after an interruption predicts only the rest.
    Under torchrun (RANK, WORLD_SIZE) the images are split between the ranks and the output is
    the one a single process writes."""
    search = _find_images(inputs, out, submission)
    paths = [str(path) for path in search.images]
    folder = resolve_model_dir(model)  # once: an hf: model would otherwise be looked up twice
    identity = job_identity(folder, options)
    partial = partial_folder(out or submission)
    ranks = join_ranks()
    try:
        # Under torchrun each rank predicts every WORLD_SIZE-th image into its own folder of
        # saved rows (so each resumes on its own); then one process joins them in input order.
        share = paths[ranks.rank :: ranks.world_size]
        job = PredictJob(rank_folder(partial, ranks.rank, ranks.world_size), identity, restart)
        if job.precision and options.precision == "auto":
            options = replace(options, precision=job.precision)  # as decided when it began
        predictor = Predictor(folder, options)
        start = time.perf_counter()
        pending = job.pending(share)
        for batch in predictor.iter_batches(pending, progress):
            job.record(batch)
        dim = predictor.output_dim
        writes = ranks.world_size == 1 or _is_writer(job, ranks, partial)
        if not writes:  # another rank joins and writes; this one reports its share
            rows = job.rows(share, dim)
        elif ranks.world_size == 1:
            rows = job.rows(paths, dim)
        else:
            rows = joined_rows(partial, ranks.world_size, identity, paths, dim)
        result = Predictions(
            *rows,
            precision=job.precision or "fp32",  # this run's, or the interrupted one's
            seconds=time.perf_counter() - start,
            resumed=len(share) - len(pending),
            skipped=search.summary(),
            split=_split(len(paths), ranks),
            wrote=writes,
        )
        if result.wrote:
            _write_outputs(result, out, submission)
            job.finish()  # the outputs hold every row now
            if ranks.world_size > 1:
                shutil.rmtree(partial, ignore_errors=True)  # every rank's rows
        return predictor, result
    finally:
        leave_ranks(ranks)


def _find_images(inputs: Sequence[Path], out: Path | None, submission: Path | None) -> ImageSearch:
    """The images under `inputs`, once the outputs asked for are known to be writable."""
    if out is not None and out.suffix.lower() != ".parquet":
        raise ConfigError(f"--out must end in .parquet, got {out.name!r}")
    if out is None and submission is None:
        raise ConfigError("give --out and/or --submission")
    search = scan_images(inputs)
    search.require_images(inputs)
    if submission is not None:
        _check_unique_stems(list(search.images))
    return search


def _is_writer(job: PredictJob, ranks: Ranks, partial: Path) -> bool:
    """Under torchrun: this rank's share is saved; the main rank (or, with ranks started by
    hand, the last one to finish) joins every rank's rows and writes the outputs."""
    job.mark_done()
    ranks.barrier()
    return ranks.is_main if ranks.group else ranks_done(partial, ranks.world_size)


def _split(images: int, ranks: Ranks) -> str:
    return f"{images:,} images over {ranks.world_size} ranks" if ranks.world_size > 1 else ""


def _write_outputs(result: Predictions, out: Path | None, submission: Path | None) -> None:
    if out is not None:
        write_predictions(out, result.images, result.embeddings)
    if submission is not None:
        write_submission(submission, image_keys(result.images), result.embeddings)


def _check_unique_stems(paths: list[Path]) -> None:
    """Kaggle ids are file stems; two images with one stem would make an ambiguous submission."""
    repeated = [stem for stem, n in Counter(p.stem for p in paths).items() if n > 1]
    if repeated:
        first = [str(p) for p in paths if p.stem == repeated[0]]
        raise InputError(
            first[1], f"same image id {repeated[0]!r} as {first[0]}; a submission needs unique ids"
        )
