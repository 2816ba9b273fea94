"""A `predict` job that survives interruption: its rows are saved as it goes, beside the output.

`OUT.partial/` (OUT being `--out`, else `--submission`) holds `job.json`, what makes the
embeddings what they are (the model's files, the views, the precision), and `part-*.parquet`
files of finished rows, each written atomically every minute or so. Running the same command
again predicts only the images not done yet (or changed since: rows are keyed by path, size and
modification time) and then writes the outputs whole, in input order, and removes the folder.
A different model or settings is refused rather than mixed in.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from img2prompt.errors import InputError
from img2prompt.io import vector_column, vectors_from_column, write_json, write_parquet
from img2prompt.models.model import resolve_model_dir
from img2prompt.predict.options import PredictOptions
from img2prompt.predict.predictor import Failure, Predictions

JOB_FILE = "job.json"
SAVE_EVERY_IMAGES = 2048
SAVE_EVERY_SECONDS = 60.0
"""Rows are saved at least this often: an interruption costs at most a minute of work."""


def partial_folder(output: Path) -> Path:
    return output.with_name(output.name + ".partial")


def job_identity(model: str | Path, options: PredictOptions) -> dict:
    """What decides the rows: every file of the model folder (by size and time, not hashed, so
    a multi-GB checkpoint costs nothing to check) and the options that change a row."""
    directory = resolve_model_dir(model).resolve()
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    return {
        "model": str(directory),
        "model_files": {
            str(p.relative_to(directory)): [p.stat().st_size, p.stat().st_mtime_ns] for p in files
        },
        "tta": options.tta,
        "precision": options.precision,
        "max_pixels": options.max_pixels,
        "k": options.k,
        "temperature": options.temperature,
    }


@dataclass
class _Done:
    stamp: tuple[int, int]
    """(size, mtime_ns) of the image file when it was predicted."""
    embedding: np.ndarray | None
    reason: str | None


def _stamp(image: str | Path) -> tuple[int, int]:
    try:
        stat = os.stat(image)
    except OSError:
        return (-1, -1)
    return (stat.st_size, stat.st_mtime_ns)


class PredictJob:
    """The saved rows of one `predict` job; see the module docstring."""

    def __init__(self, folder: Path, identity: dict, restart: bool = False) -> None:
        self.folder = folder
        self.identity = identity
        self.job_file = folder / JOB_FILE
        self.done: dict[str, _Done] = {}
        self.precision: str | None = None
        """The precision the job's first run settled on; a resumed run keeps it."""
        if restart and folder.exists():
            shutil.rmtree(folder)
        if self.job_file.is_file():
            self._load()  # the folder is written from the first batch on, not before
        self._stamps: dict[str, tuple[int, int]] = {}  # of the pending images, before decoding
        self._buffer: list[tuple[str, tuple[int, int], np.ndarray | None, str | None]] = []
        self._saved_at = time.monotonic()
        numbers = [int(part.stem.split("-")[1]) for part in folder.glob("part-*.parquet")]
        self._next_part = max(numbers, default=-1) + 1  # later parts override earlier rows

    def _load(self) -> None:
        try:
            recorded = json.loads(self.job_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise InputError(self.job_file, f"unreadable ({e}); delete {self.folder}") from None
        before = recorded.get("identity", {})
        changed = [
            f"{key}: {before.get(key)!r} -> {value!r}"
            for key, value in self.identity.items()
            if before.get(key) != value
        ]
        if changed:
            what = "; ".join(change[:200] for change in changed)
            raise InputError(
                self.folder,
                f"holds an unfinished predict job with another model or settings ({what}); "
                "run with the same ones to resume it, or pass --restart to discard it",
            )
        self.precision = recorded.get("precision")
        for part in sorted(self.folder.glob("part-*.parquet")):  # oldest first
            table = pq.read_table(part)
            vectors = vectors_from_column(table.column("embedding"), part)
            columns = [table.column(name).to_pylist() for name in ("image", "size", "mtime_ns")]
            reasons = table.column("reason").to_pylist()
            for row, (image, size, mtime, reason) in enumerate(zip(*columns, reasons, strict=True)):
                embedding = None if reason is not None else vectors[row]
                self.done[image] = _Done((size, mtime), embedding, reason)

    def pending(self, images: list[str]) -> list[str]:
        """The images without a saved row for their current file. Each file is stamped here,
        before it is read: one changed while the job runs is then redone by the next run."""
        self._stamps = {image: _stamp(image) for image in images}
        return [
            image
            for image in images
            if image not in self.done or self.done[image].stamp != self._stamps[image]
        ]

    def record(self, batch: Predictions) -> None:
        """Keep a batch's rows; save them when enough work is unsaved."""
        if self.precision is None:
            self.precision = batch.precision
            write_json({"identity": self.identity, "precision": batch.precision}, self.job_file)
        rows = zip(batch.images, batch.embeddings, strict=True)
        self._buffer += [(image, self._stamps[image], vector, None) for image, vector in rows]
        self._buffer += [(f.image, self._stamps[f.image], None, f.reason) for f in batch.failures]
        old = time.monotonic() - self._saved_at >= SAVE_EVERY_SECONDS
        if len(self._buffer) >= SAVE_EVERY_IMAGES or old:
            self.save()

    def save(self) -> None:
        """Write the unsaved rows as one more part file (atomically)."""
        self._saved_at = time.monotonic()
        if not self._buffer:
            return
        images, stamps, embeddings, reasons = zip(*self._buffer, strict=True)
        dim = next((len(e) for e in embeddings if e is not None), 1)
        vectors = np.stack([np.zeros(dim, np.float32) if e is None else e for e in embeddings])
        table = pa.table(
            {
                "image": pa.array(images, pa.string()),
                "size": pa.array([s for s, _ in stamps], pa.int64()),
                "mtime_ns": pa.array([m for _, m in stamps], pa.int64()),
                "embedding": vector_column(vectors),
                "reason": pa.array(reasons, pa.string()),
            }
        )
        write_parquet(table, self.folder / f"part-{self._next_part:06d}.parquet")
        self._next_part += 1
        for image, stamp, embedding, reason in self._buffer:
            self.done[image] = _Done(stamp, embedding, reason)
        self._buffer = []

    def rows(self, images: list[str], dim: int) -> tuple[list[str], np.ndarray, list[Failure]]:
        """Every image's saved row, in input order: (predicted images, (N, dim) embeddings,
        failures)."""
        self.save()
        return rows_in_order(self.done, images, dim, self.folder)

    def mark_done(self) -> None:
        """This process's share is saved whole (what the other ranks look for)."""
        self.save()
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json({"rows": len(self.done)}, self.folder / DONE_FILE)

    def finish(self) -> None:
        """The outputs are written: the saved rows are no longer needed."""
        shutil.rmtree(self.folder, ignore_errors=True)


DONE_FILE = "done.json"


def rank_folder(partial: Path, rank: int, world_size: int) -> Path:
    """Where rank `rank` of `world_size` keeps its rows (a single process: `partial` itself)."""
    return partial if world_size == 1 else partial / f"rank-{rank}-of-{world_size}"


def ranks_done(partial: Path, world_size: int) -> bool:
    return all(
        (rank_folder(partial, r, world_size) / DONE_FILE).is_file() for r in range(world_size)
    )


def joined_rows(
    partial: Path, world_size: int, identity: dict, images: list[str], dim: int
) -> tuple[list[str], np.ndarray, list[Failure]]:
    """Every rank's saved rows joined, in the input order of `images`."""
    done: dict[str, _Done] = {}
    for rank in range(world_size):
        done.update(PredictJob(rank_folder(partial, rank, world_size), identity).done)
    return rows_in_order(done, images, dim, partial)


def rows_in_order(
    done: dict[str, _Done], images: list[str], dim: int, folder: Path
) -> tuple[list[str], np.ndarray, list[Failure]]:
    """(predicted images, (N, dim) embeddings, failures), in the order of `images`."""
    missing = [image for image in images if image not in done]
    if missing:
        raise InputError(folder, f"no saved row for {len(missing)} images, e.g. {missing[0]}")
    rows = [(image, done[image]) for image in images]
    predicted = [image for image, row in rows if row.embedding is not None]
    vectors = [row.embedding for _, row in rows if row.embedding is not None]
    failures = [Failure(image, row.reason or "") for image, row in rows if row.embedding is None]
    return predicted, np.stack(vectors) if vectors else np.zeros((0, dim), np.float32), failures
