"""`img2prompt train`: learning, LP-FT freezing, K-fold OOF, resume, DDP, recipes and errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from img2prompt.app.cli import app
from img2prompt.fields import load_options_file
from img2prompt.models.model import ImageToPromptModel, load_model
from img2prompt.train.loop import train
from img2prompt.train.options import TrainConfig
from synthetic import make_shapes_dataset

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def shapes(tmp_path_factory, encoder) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), encoder, images_per_prompt=16)


@pytest.fixture(scope="module")
def small_shapes(tmp_path_factory, encoder) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("small"), encoder, images_per_prompt=2)


def _config(data: Path, out: Path, **overrides) -> TrainConfig:
    values = dict(data=data, backbone="tiny-clip", out=out, epochs=1, batch_size=8, workers=0)
    return TrainConfig.of(**(values | overrides))


def _predict(model: ImageToPromptModel, images: list[Path]) -> np.ndarray:
    from img2prompt.data.images import load_image
    from img2prompt.data.transforms import preprocess

    pixels = torch.stack([preprocess(load_image(p), model.preprocess) for p in images])
    with torch.no_grad():
        return torch.nn.functional.normalize(model(pixels), dim=-1).numpy()


@pytest.mark.slow
def test_learns_a_synthetic_task_from_scratch(shapes, tmp_path):
    """Coloured shapes, prompts that describe them, real MiniLM targets: held-out images of the
    validation fold reach mean cosine >= 0.9, clearly above predicting the mean target."""
    cfg = _config(
        shapes,
        tmp_path / "run",
        backbone="tiny-convnext",
        head="mlp",
        head_options="hidden=512",
        epochs=12,
        lr=3e-3,
        fold="1",
    )
    report = train(cfg, progress=False)
    table = pq.read_table(shapes / "prompts.parquet")
    targets = np.stack(table["target"].to_numpy(zero_copy_only=False))
    folds = table["fold"].to_numpy()
    mean = targets[folds == 0].mean(0)
    baseline = float((targets[folds == 1] @ (mean / np.linalg.norm(mean))).mean())
    held_out = report.folds[0].best_cosine
    assert held_out >= 0.9, (held_out, baseline)
    assert held_out > baseline + 0.05
    # The saved model reproduces the validation score without training code.
    model = load_model(tmp_path / "run" / "model")
    val_images = [
        shapes / p for p, f in zip(table["image"].to_pylist(), folds, strict=True) if f == 1
    ]
    predictions = _predict(model, val_images)
    assert float((predictions * targets[folds == 1]).sum(1).mean()) == pytest.approx(
        held_out, abs=1e-4
    )
    for name in ("config.yaml", "metrics.csv", "curves.png", "oof.parquet", "model/model.json"):
        assert (tmp_path / "run" / name).is_file(), name


def test_lp_phase_leaves_the_backbone_untouched(small_shapes, tmp_path):
    """Head-only epochs on cached features change the head and nothing else; the frozen style
    extractor stays unchanged even while the backbone fine-tunes."""
    cfg = _config(
        small_shapes, tmp_path / "lp", lp_epochs=2, epochs=0, style_backbone="tiny-convnext"
    )
    torch.manual_seed(0)
    train(cfg, progress=False)
    trained = load_model(tmp_path / "lp" / "model")
    from img2prompt.train.loop import _seed

    torch.manual_seed(_seed(cfg.seed, 0, "init"))  # the loop's initialisation, rebuilt
    initial = ImageToPromptModel(cfg.model)
    for name, value in initial.state_dict().items():
        same = torch.equal(trained.state_dict()[name], value)
        assert same != name.startswith("head."), name

    cfg = _config(small_shapes, tmp_path / "ft", epochs=1, style_backbone="tiny-convnext")
    train(cfg, progress=False)
    finetuned = load_model(tmp_path / "ft" / "model").state_dict()
    for name, value in initial.state_dict().items():
        if name.startswith("style."):
            assert torch.equal(finetuned[name], value), name
    name = "backbone.model.post_layernorm.weight"
    assert not torch.equal(finetuned[name], initial.state_dict()[name])


def test_resume_continues_exactly_where_it_stopped(small_shapes, tmp_path):
    """Stopped after each epoch and resumed, a run ends with the same weights, metrics and OOF
    predictions as one that never stopped (LP + FT, flips, EMA and MixGen all on)."""
    options = dict(lp_epochs=1, epochs=2, hflip=True, ema=0.9, mixgen=0.5, fold="0")
    train(_config(small_shapes, tmp_path / "straight", **options), progress=False)
    cfg = _config(small_shapes, tmp_path / "stopped", stop_after_epochs=1, **options)
    assert train(cfg, progress=False).stopped_early
    for _ in range(2):
        cfg = _config(
            small_shapes, tmp_path / "stopped", stop_after_epochs=1, resume=True, **options
        )
        train(cfg, progress=False)
    straight = load_model(tmp_path / "straight" / "model").state_dict()
    resumed = load_model(tmp_path / "stopped" / "model").state_dict()
    for name, value in straight.items():
        assert torch.equal(resumed[name], value), name
    a, b = (pq.read_table(tmp_path / run / "oof.parquet") for run in ("straight", "stopped"))
    assert a.equals(b)
    lines = (tmp_path / "stopped" / "metrics.csv").read_text().splitlines()
    assert len(lines) == 1 + 3  # header + one row per epoch, none repeated
    checkpoints = tmp_path / "stopped" / "checkpoints"
    assert [p.name for p in checkpoints.iterdir()] == ["last.pt"]  # saved whole, then renamed


def test_kfold_writes_every_row_out_of_fold_once(small_shapes, tmp_path):
    report = train(_config(small_shapes, tmp_path / "cv", fold="all"), progress=False)
    assert [f.fold for f in report.folds] == [0, 1]
    oof = pq.read_table(tmp_path / "cv" / "oof.parquet")
    table = pq.read_table(small_shapes / "prompts.parquet")
    assert sorted(oof["id"].to_pylist()) == sorted(table["id"].to_pylist())
    target_of = dict(zip(table["id"].to_pylist(), table["target"].to_pylist(), strict=True))
    fold_of = dict(zip(table["id"].to_pylist(), table["fold"].to_pylist(), strict=True))
    embeddings = np.stack(oof["embedding"].to_numpy(zero_copy_only=False))
    targets = np.stack([target_of[i] for i in oof["id"].to_pylist()])
    np.testing.assert_allclose(oof["cosine"].to_numpy(), (embeddings * targets).sum(1), atol=1e-5)
    assert oof["fold"].to_pylist() == [fold_of[i] for i in oof["id"].to_pylist()]
    assert report.oof_cosine == pytest.approx(float(oof["cosine"].to_numpy().mean()), abs=1e-6)
    for fold in (0, 1):
        assert (tmp_path / "cv" / f"fold-{fold}" / "model" / "model.json").is_file()
    assert (tmp_path / "cv" / "model" / "model.json").is_file()


@pytest.mark.slow
def test_ddp_with_two_cpu_processes_equals_one_process_of_the_global_batch(small_shapes, tmp_path):
    """Two gloo ranks of batch 4 train what one process of batch 8 trains, up to float rounding.

    Each rank takes every other position of the epoch's shared permutation (`_rank_order`), so
    step k of rank r holds positions 8k + 2j + r (j < 4): together, exactly the one-process
    batch k (positions 8k .. 8k + 7). DDP averages the two ranks' gradients of their batch-mean
    loss, which is the gradient of the one-process batch-mean loss (the cosine loss is a mean of
    per-row terms, the linear head has no BatchNorm, tiny-clip no dropout). Flips are keyed by
    table row, the schedule counts the same 3 steps per epoch. What differs is float32 reduction
    order: (mean of 4 + mean of 4) / 2 against the mean of 8, and the forward pass on batches of
    4 against 8, so weights agree to rounding error, not bit for bit (see the tolerances).
    The training loss logged is rank 0's half of the batch only, so it is not compared."""
    out = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "img2prompt",
        "train",
        "--data",
        str(small_shapes),
        "--backbone",
        "tiny-clip",
        "--out",
        str(out),
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--devices",
        "2",
        "--accelerator",
        "cpu",
        "--strategy",
        "ddp",
        "-q",
    ]
    env = os.environ | {"PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("best val cosine") == 1  # one summary, from rank 0
    assert len(list(out.rglob("model.safetensors"))) == 1
    assert len(list(out.rglob("last.pt"))) == 1
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 2

    one = tmp_path / "one"
    train(_config(small_shapes, one, epochs=2, batch_size=8), progress=False)
    ddp, single = load_model(out / "model").state_dict(), load_model(one / "model").state_dict()
    assert ddp.keys() == single.keys()
    for name, value in single.items():
        # An attention key bias adds q.b to every score of a query: softmax ignores it, so its
        # true gradient is 0 and what it gets is rounding noise, which AdamW scales up to steps
        # of about lr (1e-3). Its value is arbitrary and changes no output (checked below).
        if name.endswith("k_proj.bias"):
            continue
        # Other weights: rounding differences of ~1e-7 per gradient, through 6 AdamW steps; seen
        # within 2e-7. 1e-5 is 100 times below one step of lr, so one different batch in a step
        # (another sharding, gradients left unsynced) shows.
        torch.testing.assert_close(
            ddp[name], value, rtol=0, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}"
        )
    # The validation cosine of each epoch (every rank validates the same rows) and the OOF
    # predictions: float32 rounding of 384-wide unit vectors, seen within 1e-7.
    columns = [line.split(",") for line in rows[1:]]
    single_rows = [line.split(",") for line in (one / "metrics.csv").read_text().splitlines()[1:]]
    for a, b in zip(columns, single_rows, strict=True):
        assert a[:3] == b[:3] and float(a[5]) == pytest.approx(float(b[5]), abs=1e-9)  # lr
        assert float(a[4]) == pytest.approx(float(b[4]), abs=1e-6), (a, b)  # val_cosine
    embeddings = [
        np.stack(pq.read_table(run / "oof.parquet")["embedding"].to_numpy(zero_copy_only=False))
        for run in (out, one)
    ]
    np.testing.assert_allclose(embeddings[0], embeddings[1], rtol=0, atol=1e-5)


def test_accumulating_two_batches_of_4_trains_what_one_batch_of_8_trains(small_shapes, tmp_path):
    """`--accumulate 2 --batch-size 4` takes the same 8 positions of the epoch's permutation per
    optimizer step as `--batch-size 8`, and the mean of two micro-batch means of the cosine loss
    is the batch mean (linear head, no BatchNorm): the weights agree to float rounding, as in
    the DDP test above (the same tolerance, the same key-bias exception)."""
    accumulated, whole = tmp_path / "accumulated", tmp_path / "whole"
    train(_config(small_shapes, accumulated, epochs=2, batch_size=4, accumulate=2), progress=False)
    train(_config(small_shapes, whole, epochs=2, batch_size=8), progress=False)
    a, b = (load_model(run / "model").state_dict() for run in (accumulated, whole))
    for name, value in b.items():
        if not name.endswith("k_proj.bias"):
            torch.testing.assert_close(a[name], value, rtol=0, atol=1e-5, msg=name)
    assert any(not torch.equal(a[n], v) for n, v in b.items())  # not one run read twice


@pytest.mark.slow
def test_efficientnet_lite0_end_to_end_on_the_kaggle_sample(kaggle_sample, tmp_path):
    """prepare -> train (LP then FT, on the real ImageNet weights) -> a loadable model folder."""
    data, run = tmp_path / "data", tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "data",
            "prepare",
            str(kaggle_sample / "prompts.csv"),
            "--images",
            str(kaggle_sample / "images"),
            "--out",
            str(data),
            "--folds",
            "2",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(data),
            "--backbone",
            "efficientnet-lite0",
            "--out",
            str(run),
            "--lp-epochs",
            "1",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--workers",
            "0",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "best val cosine" in result.output
    model = load_model(run / "model")
    images = sorted((kaggle_sample / "images").glob("*.png"))
    predictions = _predict(model, images)
    assert predictions.shape == (7, 384) and np.isfinite(predictions).all()


def test_recipe_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("backbone: tiny-clip\nepochs: [1\n")
    with pytest.raises(ValueError, match=r"bad\.yaml.*not valid YAML"):
        load_options_file(bad, TrainConfig)
    bad.write_text("backbone: tiny-clip\nepoch: 3\n")
    with pytest.raises(ValueError, match=r"bad\.yaml.*unknown keys \['epoch'\]"):
        load_options_file(bad, TrainConfig)


def test_cli_refuses_to_overwrite_or_to_resume_with_other_settings(small_shapes, tmp_path):
    base = [
        "train",
        "--data",
        str(small_shapes),
        "--backbone",
        "tiny-clip",
        "--out",
        str(tmp_path / "run"),
        "--epochs",
        "1",
        "--workers",
        "0",
        "-q",
    ]
    assert runner.invoke(app, base).exit_code == 0
    again = runner.invoke(app, base)
    assert again.exit_code == 2 and "already holds a run" in again.output
    changed = runner.invoke(app, [*base[:-1], "--lr", "0.5", "--resume", "-q"])
    assert changed.exit_code == 2 and "lr: 0.001 -> 0.5" in changed.output
    missing = runner.invoke(app, ["train", "--backbone", "tiny-clip"])
    assert missing.exit_code == 2 and "--data" in missing.output


def test_a_table_without_images_is_explained(tmp_path, encoder):
    from img2prompt.data.options import PrepareConfig
    from img2prompt.data.prepare import prepare

    prompts = tmp_path / "p.txt"
    prompts.write_text("a red fox in the snow\na castle on a hill at dawn\n")
    prepare(PrepareConfig(inputs=[prompts], out=tmp_path / "data", folds=1), progress=False)
    with pytest.raises(ValueError, match="missing columns \\['image'\\]"):
        train(_config(tmp_path / "data", tmp_path / "run"), progress=False)


@pytest.mark.parametrize(
    "options",
    [
        dict(freeze_backbone=True),  # frozen backbone, features cached, linear head
        dict(),  # everything trainable
        dict(head="mlp", head_options="hidden=32"),
        dict(lp_epochs=1, epochs=1, style_backbone="tiny-convnext"),  # LP-FT, cached style
    ],
    ids=["frozen-cached-linear", "unfrozen", "mlp", "lp-ft"],
)
def test_fold_none_trains_on_everything_without_validation(small_shapes, tmp_path, options):
    """`--fold none` has no validation rows: nothing is cached or validated for them, the last
    epoch's model is kept, and there are no out-of-fold predictions."""
    out = tmp_path / "run"
    report = train(_config(small_shapes, out, fold="none", **options), progress=False)
    assert [f.fold for f in report.folds] == [None]
    assert report.folds[0].best_cosine is None and report.oof_cosine is None
    epochs = options.get("lp_epochs", 0) + options.get("epochs", 1)
    assert report.folds[0].best_epoch.endswith(f"-{options.get('epochs', 1)}")
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + epochs
    assert not (out / "oof.parquet").exists()
    model = load_model(out / "model")
    images = sorted(small_shapes.rglob("*.png"))[:3]
    assert np.isfinite(_predict(model, images)).all()


def test_kfold_stopped_after_each_epoch_equals_an_uninterrupted_run(small_shapes, tmp_path):
    """--stop-after-epochs counts the epochs of one call across folds; finished folds are kept
    (state.json) and the resumed run ends with the same OOF predictions and models."""
    train(_config(small_shapes, tmp_path / "straight", fold="all"), progress=False)
    calls = 0
    while True:
        calls += 1
        cfg = _config(
            small_shapes, tmp_path / "stopped", fold="all", stop_after_epochs=1, resume=calls > 1
        )
        if not train(cfg, progress=False).stopped_early:
            break
    assert calls == 2  # one epoch per fold: fold 0, then fold 1
    a, b = (pq.read_table(tmp_path / run / "oof.parquet") for run in ("straight", "stopped"))
    assert a.equals(b)
    straight = load_model(tmp_path / "straight" / "model").state_dict()
    resumed = load_model(tmp_path / "stopped" / "model").state_dict()
    assert all(torch.equal(resumed[name], value) for name, value in straight.items())


def test_frozen_features_are_computed_once_for_every_fold(small_shapes, tmp_path, monkeypatch):
    from img2prompt.train import features
    from tiny_checkpoints import save_tiny_clip

    views: list[bool] = []  # the flip flag of every feature pass over the table
    real = features.compute_features

    def counting(*args, **kwargs):
        views.append(kwargs.get("flip", False))
        return real(*args, **kwargs)

    monkeypatch.setattr(features, "compute_features", counting)
    clip = save_tiny_clip(tmp_path / "clip")  # the same weights in every fold
    options = dict(backbone=f"hf-clip:{clip}", freeze_backbone=True, hflip=True, lp_epochs=1)
    both = train(_config(small_shapes, tmp_path / "cv", fold="all", **options), progress=False)
    assert len(both.folds) == 2 and sorted(views) == [False, True]  # 2 folds x 2 phases, once
    # Sliced per fold, the shared features give the run a fold alone gives.
    alone = train(_config(small_shapes, tmp_path / "one", fold="1", **options), progress=False)
    oof, one = (pq.read_table(tmp_path / run / "oof.parquet") for run in ("cv", "one"))
    shared = dict(zip(oof["id"].to_pylist(), oof["embedding"].to_pylist(), strict=True))
    expected = np.array(one["embedding"].to_pylist())
    np.testing.assert_allclose([shared[i] for i in one["id"].to_pylist()], expected, atol=1e-6)
    assert alone.folds[0].best_cosine == pytest.approx(both.folds[1].best_cosine, abs=1e-6)
    # A backbone whose weights differ per fold (tiny-clip is random, seeded by fold) is computed
    # again for each fold, never served the other fold's features.
    views.clear()
    train(_config(small_shapes, tmp_path / "random", fold="all", freeze_backbone=True), False)
    assert views == [False, False]
