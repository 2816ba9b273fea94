"""Run the img2prompt command line and SIGKILL it at a chosen point, with no hook in `src/`.

    python tests/kill_runner.py POINT N [--save-every K] -- img2prompt-arguments...

POINT says where the process kills itself (signal 9: no handler, no `finally`, no flush):

- `train-batch`: as training asks for its N-th batch (counted over every epoch), so N - 1
  optimizer steps have run and the epoch in progress is cut off;
- `train-checkpoint`: in the N-th checkpoint write, with half of the file's bytes on disk;
- `predict-batch`: right after the N-th batch of rows reaches the resumable job (rows not saved
  yet are lost);
- `predict-part`: in the N-th write of a part file of saved rows, half of its bytes on disk.

`--save-every K` makes `predict` save its rows every K images (the library's constant, 2048,
is too many for a test's few dozen images). Everything else is the real command line.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def torn(path: Path) -> None:
    """Leave the first half of the file just written, as a write cut off midway does, and die."""
    os.truncate(path, os.path.getsize(path) // 2)
    die()


def counter(n: int):
    """A function that returns True on its n-th call."""
    calls = [0]

    def tick() -> bool:
        calls[0] += 1
        return calls[0] == n

    return tick


def kill_in_training_batch(n: int) -> None:
    from img2prompt.train import loop

    original, tick = loop.BatchSource.epoch, counter(n)

    def epoch(self, *args, **kwargs):
        for batch in original(self, *args, **kwargs):
            if tick():
                die()
            yield batch

    loop.BatchSource.epoch = epoch


def kill_in_checkpoint(n: int) -> None:
    from lightning.fabric import Fabric

    original, tick = Fabric.save, counter(n)

    def save(self, path, state, *args, **kwargs):
        original(self, path, state, *args, **kwargs)
        if tick():
            torn(Path(path))

    Fabric.save = save


def kill_after_predict_batch(n: int) -> None:
    from img2prompt.predict.resume import PredictJob

    original, tick = PredictJob.record, counter(n)

    def record(self, batch):
        original(self, batch)
        if tick():
            die()

    PredictJob.record = record


def kill_in_part_file(n: int) -> None:
    import pyarrow.parquet as pq

    original, tick = pq.write_table, counter(n)

    def write_table(table, where, *args, **kwargs):
        original(table, where, *args, **kwargs)
        # Part files of saved rows only (their temporary files are named after them).
        if "part-" in Path(where).name and tick():
            torn(Path(where))

    pq.write_table = write_table


POINTS = {
    "train-batch": kill_in_training_batch,
    "train-checkpoint": kill_in_checkpoint,
    "predict-batch": kill_after_predict_batch,
    "predict-part": kill_in_part_file,
}


def main() -> None:
    import sys

    split = sys.argv.index("--")
    parser = argparse.ArgumentParser()
    parser.add_argument("point", choices=POINTS)
    parser.add_argument("n", type=int)
    parser.add_argument("--save-every", type=int)
    options = parser.parse_args(sys.argv[1:split])
    if options.save_every:
        from img2prompt.predict import resume

        resume.SAVE_EVERY_IMAGES = options.save_every
    POINTS[options.point](options.n)
    from img2prompt.app.cli import main as cli

    sys.argv = ["img2prompt", *sys.argv[split + 1 :]]
    cli()


if __name__ == "__main__":
    main()
