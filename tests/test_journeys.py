"""User journeys on real Stable Diffusion images, through the real command line.

A small grouped subset of `../shared/data/real_pairs` (48 images: 8 DrawBench prompts and 8
WaylonWalker prompts, 3 images each; five of the latter are near-duplicate variants) goes
through what a new user runs: data prepare -> train (frozen linear `--fold none`; `--fold all`
linear and mlp) -> predict --tta hflip -> evaluate -> ensemble fit/apply -> submission check ->
bank build -> describe -> serve. Every command runs as its own process (`python -m img2prompt`),
and every score a command prints is recomputed here from the files it wrote.
"""

from __future__ import annotations

import csv
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from img2prompt.io import vectors_from_column

pytestmark = pytest.mark.slow

SOURCES = ("kennymckormick/DrawBench-Glance", "WaylonWalker/stable-diffusion-waylonwalker-com")
PROMPTS_PER_SOURCE = 8
# WaylonWalker's prompt variants, some of which `data prepare` drops as near duplicates.
VARIANTS = (
    "An astronaut working in a lab, there is a series of eggs",
    "simple pictogram of an astronaut helmet",
)
IMAGES_PER_PROMPT = 3
PHRASES = [
    "a kitten",
    "a baby duck",
    "a poster",
    "a yearbook photo",
    "a fennec fox",
    "a strawberry",
    "a banana",
    "an apple",
    "a bicycle",
    "a boat",
    "a scarecrow",
    "a bird",
    "a backpack",
    "a dog drinking tea",
    "a door opening",
    "a garage workshop",
    "a lung ct scan",
    "made of thread",
    "medical image",
    "highly detailed",
    "sharp focus",
    "studio lighting",
    "macro photography",
    "black and white",
    "pink light",
]


def cli(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """`img2prompt ARGS...` in a fresh process, as a user's shell runs it."""
    env = {**os.environ, "COLUMNS": "250", "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    env["IMG2PROMPT_CACHE"] = str(cwd / "cache")  # one embedding cache for the journey
    done = subprocess.run(
        [sys.executable, "-m", "img2prompt", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"img2prompt {' '.join(args)} exited {done.returncode}\n"
            f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
        )
    return done


def printed_float(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in:\n{text}"
    return float(match.group(1))


def vectors(path: Path, column: str = "embedding") -> np.ndarray:
    return vectors_from_column(pq.read_table(path).column(column), path)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def targets_by(prepared: Path, key: str) -> dict[str, np.ndarray]:
    """The prepared table's true vectors by row `id`, or by image file stem (`key="stem"`)."""
    table = pq.read_table(prepared / "prompts.parquet")
    keys = table.column("id" if key == "id" else "image").to_pylist()
    if key == "stem":
        keys = [Path(k).stem for k in keys]
    return dict(zip(keys, vectors(prepared / "prompts.parquet", "target"), strict=True))


@pytest.fixture(scope="module")
def work(shared_data: Path, tmp_path_factory) -> Path:
    """A CSV of the 48 chosen pairs (image paths absolute), in a scratch folder."""
    folder = tmp_path_factory.mktemp("journey")
    pairs = shared_data / "real_pairs"
    by_prompt: dict[tuple[str, str], list[dict]] = defaultdict(list)
    with open(pairs / "pairs.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            by_prompt[row["source"], row["prompt"]].append(row)
    chosen = []
    for source in SOURCES:
        keys = sorted(
            k for k, rows in by_prompt.items() if k[0] == source and len(rows) >= IMAGES_PER_PROMPT
        )
        variants = [k for k in keys if k[1].startswith(VARIANTS)]
        keys = variants + [k for k in keys if k not in variants]
        for key in keys[:PROMPTS_PER_SOURCE]:
            for row in sorted(by_prompt[key], key=lambda r: r["id"])[:IMAGES_PER_PROMPT]:
                chosen.append({**row, "image": str(pairs / row["image"])})
    with open(folder / "pairs.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, list(chosen[0]))
        writer.writeheader()
        writer.writerows(chosen)
    (folder / "images.txt").write_text("\n".join(r["image"] for r in chosen) + "\n")
    return folder


def images(work: Path) -> list[str]:
    return (work / "images.txt").read_text().split()


@pytest.fixture(scope="module")
def prepared(work: Path) -> Path:
    cli("data", "prepare", "pairs.csv", "--out", "d", "--folds", "3", cwd=work)
    return work / "d"


@pytest.fixture(scope="module")
def runs(work: Path, prepared: Path) -> dict[str, subprocess.CompletedProcess]:
    common = ["--data", "d", "--backbone", "efficientnet-lite0", "--freeze-backbone"]
    common += ["--epochs", "3", "--lr", "3e-3", "--workers", "0", "--batch-size", "16"]
    return {
        "none": cli(
            "train", *common, "--head", "linear", "--fold", "none", "--out", "r-none", cwd=work
        ),
        "linear": cli(
            "train", *common, "--head", "linear", "--fold", "all", "--out", "r-lin", cwd=work
        ),
        "mlp": cli(
            "train",
            *common,
            "--head",
            "mlp",
            "--head-options",
            "hidden=64",
            "--fold",
            "all",
            "--out",
            "r-mlp",
            cwd=work,
        ),
    }


@pytest.fixture(scope="module")
def predicted(work: Path, runs) -> dict[str, Path]:
    """Each K-fold model's predictions with mirror TTA, plus the linear model's plain ones."""
    paths = images(work)
    for name, run in (("lin", "r-lin"), ("mlp", "r-mlp")):
        cli(
            "predict",
            f"{run}/model",
            *paths,
            "--tta",
            "hflip",
            "--out",
            f"{name}.parquet",
            "--submission",
            f"{name}.csv",
            "--workers",
            "0",
            "-q",
            cwd=work,
        )
    cli(
        "predict",
        "r-lin/model",
        *paths,
        "--out",
        "lin-plain.parquet",
        "--workers",
        "0",
        "-q",
        cwd=work,
    )
    return {name: work / f"{name}.parquet" for name in ("lin", "mlp", "lin-plain")}


def test_prepare_keeps_sources_and_drops_near_duplicates(prepared: Path):
    table = pq.read_table(prepared / "prompts.parquet")
    manifest = json.loads((prepared / "manifest.json").read_text())
    assert manifest["counts"]["removed"]["near duplicates"] > 0  # the lung-scan variants
    assert table.num_rows == 48 - sum(manifest["counts"]["removed"].values())
    assert set(table.column("source").to_pylist()) == set(SOURCES)
    assert set(table.column("fold").to_pylist()) == {0, 1, 2}
    folds_of_group: dict[int, set[int]] = defaultdict(set)
    groups, folds = table.column("group").to_pylist(), table.column("fold").to_pylist()
    for group, fold in zip(groups, folds, strict=True):
        folds_of_group[group].add(fold)
    assert all(len(f) == 1 for f in folds_of_group.values())  # a group never spans folds


def test_train_fold_none_writes_a_model_trained_on_everything(work: Path, runs):
    model = json.loads((work / "r-none/model/model.json").read_text())
    assert model["training"]["fold"] is None
    assert model["training"]["best_epoch"] == "ft-3"  # no validation: the last epoch
    assert not (work / "r-none/oof.parquet").exists()
    assert "all data" in runs["none"].stdout


@pytest.mark.parametrize("run, name", [("r-lin", "linear"), ("r-mlp", "mlp")])
def test_kfold_oof_covers_every_row_once_and_its_printed_score(
    work: Path, prepared: Path, runs, run: str, name: str
):
    truth = pq.read_table(prepared / "prompts.parquet")
    oof = pq.read_table(work / run / "oof.parquet")
    assert sorted(oof.column("id").to_pylist()) == sorted(truth.column("id").to_pylist())
    fold_of = dict(
        zip(truth.column("id").to_pylist(), truth.column("fold").to_pylist(), strict=True)
    )
    assert [fold_of[i] for i in oof.column("id").to_pylist()] == oof.column("fold").to_pylist()
    target_of = targets_by(prepared, "id")
    targets = np.stack([target_of[i] for i in oof.column("id").to_pylist()])
    cosines = (unit(vectors(work / run / "oof.parquet")) * targets).sum(1)
    printed = printed_float(r"Out-of-fold mean cosine: ([\d.]+)", runs[name].stdout)
    assert printed == pytest.approx(cosines.mean(), abs=6e-5)
    for fold in range(3):
        assert (work / run / f"fold-{fold}/model/model.json").is_file()
    assert (work / run / "model/model.json").is_file()
    if name == "linear":  # real signal, not noise (a random head scores ~0); the mlp's 64-wide
        assert cosines.mean() > 0.2  # BatchNorm head gets only a few steps on 30 images


def test_predict_keeps_order_and_writes_a_valid_submission(work: Path, predicted):
    table = pq.read_table(predicted["lin"])
    assert table.column("image").to_pylist() == images(work)
    embeddings = vectors(predicted["lin"])
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    # mirror TTA changes the answer, and only a little
    plain = vectors(predicted["lin-plain"])
    cosine = (embeddings * plain).sum(1)
    assert (cosine < 1 - 1e-6).any() and cosine.min() > 0.9
    check = cli("submission", "check", "lin.csv", cwd=work)
    assert "ok, 48 images x 384 values" in check.stderr.replace("\n", " ")
    with open(work / "lin.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    assert len(rows) == 48 * 384
    stems = [Path(p).stem for p in images(work)]
    assert [r[0] for r in rows[::384]] == [f"{s}_0" for s in stems]
    values = np.array([float(r[1]) for r in rows]).reshape(48, 384)
    np.testing.assert_allclose(values, embeddings, atol=1e-6)


def test_evaluate_names_dropped_rows_and_scores_the_rest(work: Path, prepared: Path, predicted):
    done = cli("evaluate", "lin.parquet", "--truth", "d", "--report", "eval", cwd=work)
    target_of = targets_by(prepared, "stem")
    stems = [Path(p).stem for p in images(work)]
    kept = [i for i, s in enumerate(stems) if s in target_of]
    dropped = [images(work)[i] for i in range(48) if stems[i] not in target_of]
    assert dropped, "the subset is chosen so that prepare drops some near-duplicate prompts"
    embeddings = vectors(predicted["lin"])[kept]
    cosines = (embeddings * np.stack([target_of[stems[i]] for i in kept])).sum(1)
    printed = printed_float(r"mean cosine ([\d.]+) over", done.stdout)
    assert printed == pytest.approx(cosines.mean(), abs=6e-5)
    err = " ".join(done.stderr.split())
    assert f"left out {len(dropped)} of 48 rows" in err
    assert Path(dropped[0]).name in err
    report = json.loads((work / "eval/report.json").read_text())
    assert report["rows"] == len(kept) and len(report["unmatched"]) == len(dropped)
    assert set(report["per_source"]) == set(SOURCES)  # prepare kept the repositories
    strict = cli("evaluate", "lin.parquet", "--truth", "d", "--strict", cwd=work, check=False)
    assert strict.returncode == 2 and "have no truth" in strict.stderr


def test_ensemble_fit_and_apply_on_real_oof(work: Path, prepared: Path, predicted):
    fit = cli(
        "ensemble",
        "fit",
        "r-lin/oof.parquet",
        "r-mlp/oof.parquet",
        "--truth",
        "d",
        "--out",
        "w.json",
        cwd=work,
    )
    weights = np.array(json.loads((work / "w.json").read_text())["weights"])
    oof_ids = pq.read_table(work / "r-lin/oof.parquet").column("id").to_pylist()
    mlp = pq.read_table(work / "r-mlp/oof.parquet")
    order = {k: i for i, k in enumerate(mlp.column("id").to_pylist())}
    members = [
        unit(vectors(work / "r-lin/oof.parquet")),
        unit(vectors(work / "r-mlp/oof.parquet"))[[order[i] for i in oof_ids]],
    ]
    target_of = targets_by(prepared, "id")
    targets = np.stack([target_of[i] for i in oof_ids])
    blend = unit(weights[0] * members[0] + weights[1] * members[1])
    best_member = max(float((m * targets).sum(1).mean()) for m in members)
    printed = printed_float(r"([\d.]+)  blend of 2", fit.stdout)
    assert printed == pytest.approx((blend * targets).sum(1).mean(), abs=6e-5)
    assert printed >= best_member - 1e-4  # the weights may pick one member, never do worse
    cli(
        "ensemble",
        "apply",
        "w.json",
        "lin.parquet",
        "mlp.parquet",
        "--out",
        "blend.parquet",
        "--submission",
        "blend.csv",
        cwd=work,
    )
    expected = unit(weights[0] * vectors(predicted["lin"]) + weights[1] * vectors(predicted["mlp"]))
    np.testing.assert_allclose(vectors(work / "blend.parquet"), expected, atol=1e-5)
    cli("submission", "check", "blend.csv", cwd=work)


@pytest.fixture(scope="module")
def bank(work: Path) -> Path:
    (work / "phrases.txt").write_text("\n".join(PHRASES) + "\n")
    cli("bank", "build", "phrases.txt", "--out", "bank", cwd=work)
    return work / "bank"


def test_describe_with_the_trained_model(work: Path, predicted, bank, encoder):
    image = images(work)[0]
    done = cli(
        "describe",
        image,
        "--model",
        "r-lin/model",
        "--bank",
        "bank",
        "--mode",
        "fast",
        "--json",
        "-q",
        cwd=work,
    )
    result = json.loads(done.stdout)["results"][0]
    embedding = np.array(result["embedding"], dtype=np.float32)
    np.testing.assert_allclose(embedding, vectors(predicted["lin-plain"])[0], atol=2e-4)
    assert result["prompt"] and all(p in PHRASES for p in result["phrases"])
    own = encoder.encode([result["prompt"]])[0]
    assert result["match"] == pytest.approx(float(own @ embedding), abs=2e-3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_the_trained_model(work: Path, predicted, bank):
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "IMG2PROMPT_CACHE": str(work / "cache")}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "img2prompt",
            "serve",
            "--port",
            str(port),
            "--model",
            "r-lin/model",
            "--bank",
            "bank",
            "--mode",
            "fast",
        ],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/health", timeout=5) as answer:
                    health = json.loads(answer.read())
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                assert time.monotonic() < deadline, "serve did not start in 120 s"
                time.sleep(0.5)
        assert "r-lin" in json.dumps(health)
        image = Path(images(work)[1])
        boundary = "img2promptjourney"
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
                f'filename="{image.name}"\r\nContent-Type: image/jpeg\r\n\r\n'
            ).encode()
            + image.read_bytes()
            + f"\r\n--{boundary}--\r\n".encode()
        )
        request = urllib.request.Request(
            f"{base}/api/describe",
            data=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            result = json.loads(answer.read())
    finally:
        server.terminate()
        server.wait(timeout=30)
    embedding = np.array(result["embedding"], dtype=np.float32)
    np.testing.assert_allclose(embedding, vectors(predicted["lin-plain"])[1], atol=2e-4)
    assert result["prompt"] and result["image"]["name"] == image.name
