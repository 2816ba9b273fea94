"""`predict` past one process: under torchrun each rank takes its share of the images and the
output equals a single process's, in input order; each rank resumes on its own; without a
rendezvous (RANK/WORLD_SIZE set by hand) the last rank to finish writes the output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from img2prompt.predict.predictor import PredictOptions, Predictor
from img2prompt.predict.run import run_predict
from img2prompt.predict.tables import read_predictions
from sd_files import picture

OPTIONS = PredictOptions(precision="fp32", workers=0, batch_size=2)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ranked")
    for i in range(9):
        picture(seed=i, size=(100 + 9 * i, 80)).save(folder / f"img{i}.png")
    (folder / "broken.png").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def single(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "one.parquet"
    run_predict("default", [images], OPTIONS, out=out, progress=False)
    return read_predictions(out)


@pytest.mark.slow
def test_torchrun_two_gloo_ranks_equal_one_process(images, single, tmp_path):
    out = tmp_path / "two.parquet"
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [
        str(torchrun),
        "--nproc-per-node",
        "2",
        "-m",
        "img2prompt",
        "predict",
        "default",
        str(images),
        "--out",
        str(out),
        "--precision",
        "fp32",
        "--batch-size",
        "2",
        "--skip-bad",
        "-q",
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    joined = read_predictions(out)
    assert joined.images == single.images  # input order, the broken file left out
    np.testing.assert_allclose(joined.embeddings, single.embeddings, atol=1e-5)
    assert "10 images over 2 ranks" in " ".join(done.stderr.split())
    assert not out.with_name(out.name + ".partial").exists()


def test_ranks_by_hand_resume_each_on_its_own_and_the_last_writes(
    images, single, tmp_path, monkeypatch
):
    out = tmp_path / "hand.parquet"
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")

    monkeypatch.setenv("RANK", "1")  # rank 1 is killed after its first batch...
    original, calls = Predictor.embed_pixels, []

    def killed(self, pixels):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return original(self, pixels)

    monkeypatch.setattr(Predictor, "embed_pixels", killed)
    from img2prompt.predict import resume

    monkeypatch.setattr(resume, "SAVE_EVERY_IMAGES", 1)
    with pytest.raises(RuntimeError, match="killed"):
        run_predict("default", [images], OPTIONS, out=out, progress=False)
    monkeypatch.setattr(Predictor, "embed_pixels", original)

    monkeypatch.setenv("RANK", "0")  # ...rank 0 finishes its share: not the last, writes nothing
    _, first = run_predict("default", [images], OPTIONS, out=out, progress=False)
    assert not first.wrote and not out.exists() and first.split == "10 images over 2 ranks"

    monkeypatch.setenv("RANK", "1")  # rank 1 again: only the rest of its share, then it writes
    _, last = run_predict("default", [images], OPTIONS, out=out, progress=False)
    assert last.wrote and last.resumed == 2  # its first batch had been saved
    joined = read_predictions(out)
    assert joined.images == single.images
    np.testing.assert_allclose(joined.embeddings, single.embeddings, atol=1e-5)
    assert [Path(f.image).name for f in last.failures] == ["broken.png"]
