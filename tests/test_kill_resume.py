"""SIGKILL at the worst moments, then the same command again.

`train` killed in the middle of an epoch, or while its checkpoint is being written, resumes to
the weights, out-of-fold predictions and metrics of a run that was never interrupted, bit for
bit: the loop checkpoints at every epoch's end and seeds every random choice by (seed, fold,
phase, epoch), so a kill loses the unfinished epoch (or the epoch whose checkpoint it tore) and
the resumed run redoes it exactly. `predict` killed after it saved some rows, or while saving
them, ends with one row per image, in input order, equal to an uninterrupted run's.

The killed runs are the real command line in a subprocess started through
`tests/kill_runner.py`, which wraps a library function so that the process kills itself at a
chosen point (nothing in `src/` knows). The uninterrupted and the resumed runs are the normal
command line, in-process. Everything runs on one thread, here and in the subprocesses: float
results depend on the thread count, and the training comparisons are exact.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from img2prompt.app.cli import app
from synthetic import make_shapes_dataset

REPO = Path(__file__).resolve().parents[1]
RUNNER = Path(__file__).with_name("kill_runner.py")
runner = CliRunner()

# 48 images, 24 in fold 0: 3 batches of 8 per epoch, 3 epochs (EMA and flips on: more state
# for the checkpoint to carry).
TRAIN = (
    *("--backbone", "tiny-clip", "--epochs", "3", "--batch-size", "8", "--workers", "0"),
    *("--fold", "0", "--ema", "0.9", "--hflip", "-q"),
)
METRICS = ("fold", "phase", "epoch", "train_loss", "val_cosine", "lr")
"""metrics.csv's columns that a resumed run must reproduce (not the timings)."""


@pytest.fixture(scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_killed(point: str, n: int, args: list[str], *options: str) -> subprocess.CompletedProcess:
    """The command line, killed by kill_runner.py at `point` (see its docstring)."""
    env = os.environ | {"PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(RUNNER), point, str(n), *options, "--", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == -signal.SIGKILL, (done.returncode, done.stderr[-3000:])
    return done


def invoke(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


# --- train ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes(tmp_path_factory, encoder) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), encoder, images_per_prompt=2)


def train_args(data: Path, out: Path) -> list[str]:
    return ["train", "--data", str(data), "--out", str(out), *TRAIN]


@pytest.fixture(scope="module")
def straight(shapes, tmp_path_factory, one_thread) -> Path:
    out = tmp_path_factory.mktemp("straight") / "run"
    invoke(train_args(shapes, out))
    return out


@dataclass
class Killed:
    """A run killed at `point`, what the kill left, and the folder once resumed."""

    point: str
    metrics_rows: int
    checkpoint_epoch: int
    leftovers: list[tuple[str, int]]
    """Files beside last.pt after the kill: (name, size)."""
    last_size: int
    out: Path


KILLS = {
    "mid-epoch": ("train-batch", 5),  # epoch 1 checkpointed, epoch 2 one step in
    "mid-checkpoint": ("train-checkpoint", 2),  # epoch 2 trained, its checkpoint half written
}


@pytest.fixture(scope="module", params=list(KILLS))
def killed(request, shapes, tmp_path_factory, one_thread) -> Killed:
    out = tmp_path_factory.mktemp(request.param) / "run"
    args = train_args(shapes, out)
    run_killed(*KILLS[request.param], args)
    last = out / "checkpoints" / "last.pt"
    saved = torch.load(last, map_location="cpu", weights_only=False)  # our own file
    record = Killed(
        point=request.param,
        metrics_rows=len(read_metrics(out)),
        checkpoint_epoch=saved["epoch"],
        leftovers=sorted((p.name, p.stat().st_size) for p in last.parent.iterdir() if p != last),
        last_size=last.stat().st_size,
        out=out,
    )
    invoke([*args, "--resume"])
    return record


def read_metrics(out: Path) -> list[dict]:
    with open(out / "metrics.csv", newline="") as f:
        return [{k: row[k] for k in METRICS} for row in csv.DictReader(f)]


def test_training_killed_resumes_to_the_uninterrupted_weights(killed, straight):
    """The kill came where it was meant to, the checkpoint on disk is the last whole one, and the
    resumed run ends with the same model (bit for bit), choice of epoch and OOF predictions."""
    assert killed.checkpoint_epoch == 1  # epoch 2 is lost and redone in both cases
    if killed.point == "mid-epoch":
        assert killed.metrics_rows == 1 and killed.leftovers == []
    else:
        # The half-written file is the temporary one: last.pt was never replaced by it.
        [(torn, size)] = killed.leftovers
        assert torn.startswith(".last.pt.") and 0 < size < killed.last_size
    expected = load_file(straight / "model" / "model.safetensors")
    resumed = load_file(killed.out / "model" / "model.safetensors")
    assert resumed.keys() == expected.keys()
    for name, value in expected.items():
        assert torch.equal(resumed[name], value), name
    a, b = (json.loads((r / "model" / "model.json").read_text()) for r in (straight, killed.out))
    assert a["training"]["best_epoch"] == b["training"]["best_epoch"] == "ft-3"
    assert a["training"]["val_cosine"] == b["training"]["val_cosine"]
    assert pq.read_table(killed.out / "oof.parquet").equals(pq.read_table(straight / "oof.parquet"))
    state = torch.load(killed.out / "checkpoints" / "last.pt", weights_only=False)
    assert state["epoch"] == 3


def test_training_killed_resumes_to_the_uninterrupted_metrics(killed, straight, request):
    """metrics.csv: one row per epoch, none repeated, the same losses and cosines."""
    # (A kill between an epoch's metrics row and its checkpoint once left that row twice.)
    assert read_metrics(killed.out) == read_metrics(straight)
    # and a half-written checkpoint left by the kill is gone once the run resumed
    assert not list(killed.out.rglob(".last.pt.*.tmp"))


# --- predict --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> list[str]:
    """40 small images of different sizes, in a shuffled order (input order is not name order)."""
    folder = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(40):
        pixels = rng.integers(0, 256, (24 + i, 40 - i % 7, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:02d}.png")
        paths.append(str(folder / f"img{i:02d}.png"))
    random.Random(0).shuffle(paths)
    return paths


def predict_args(model: Path, images: list[str], out: Path) -> list[str]:
    options = ["--batch-size", "4", "--precision", "fp32", "--workers", "0"]
    return ["predict", str(model), *images, "--out", str(out), *options]


@pytest.fixture(scope="module")
def uninterrupted(tiny_clip_model_dir, pictures, tmp_path_factory, one_thread) -> pq.Table:
    out = tmp_path_factory.mktemp("uninterrupted") / "preds.parquet"
    invoke(predict_args(tiny_clip_model_dir, pictures, out))
    return pq.read_table(out)


@pytest.mark.parametrize(
    "point, n",
    [
        ("predict-batch", 4),  # 12 rows saved, the next 4 predicted and lost
        ("predict-part", 2),  # 12 rows saved, the next 12 killed while being saved
    ],
)
def test_predict_killed_resumes_with_no_row_lost_or_repeated(
    point, n, tiny_clip_model_dir, pictures, uninterrupted, tmp_path, one_thread
):
    out = tmp_path / "preds.parquet"
    args = predict_args(tiny_clip_model_dir, pictures, out)
    run_killed(point, n, args, "--save-every", "12")  # batches of 4: a part every 3 batches
    partial = tmp_path / "preds.parquet.partial"
    assert not out.exists()
    parts = sorted(partial.glob("part-*.parquet"))
    assert [p.name for p in parts] == ["part-000000.parquet"]
    assert pq.read_table(parts[0])["image"].to_pylist() == pictures[:12]
    torn = [p.name for p in partial.iterdir() if p.name.endswith(".tmp")]
    assert len(torn) == (point == "predict-part")

    output = invoke(args)  # the same command again
    assert "12 saved by an interrupted run; 28 predicted" in output
    table = pq.read_table(out)
    assert table["image"].to_pylist() == pictures  # each image once, in input order
    assert table["image"].to_pylist() == uninterrupted["image"].to_pylist()
    embeddings = np.stack(table["embedding"].to_numpy(zero_copy_only=False))
    expected = np.stack(uninterrupted["embedding"].to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(embeddings, expected, rtol=0, atol=1e-6)
    assert not partial.exists()
