"""Ensemble weights learned on OOF predictions, and `evaluate` against brute-force cosines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from img2prompt.app.cli import app
from img2prompt.io import vector_column
from img2prompt.metrics import unit
from img2prompt.predict.ensemble import blend, blend_objective, fit_weights
from img2prompt.predict.tables import read_predictions
from reference import unit_rows

runner = CliRunner()


def _write_oof(path: Path, ids, images, folds, vectors) -> Path:
    table = pa.table(
        {
            "id": pa.array(ids),
            "image": pa.array(images),
            "fold": pa.array(folds, pa.int64()),
            "embedding": vector_column(vectors),
        }
    )
    pq.write_table(table, path)
    return path


def _write_truth(folder: Path, ids, vectors, folds, sources) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "id": pa.array(ids),
            "prompt": pa.array([f"prompt {i}" for i in ids]),
            "target": vector_column(vectors),
            "fold": pa.array(folds, pa.int64()),
            "source": pa.array(sources),
        }
    )
    pq.write_table(table, folder / "prompts.parquet")
    return folder


def test_fit_recovers_a_known_blend():
    """Truth is exactly a blend of the members: the fit must find those weights (and a zero)."""
    rng = np.random.default_rng(0)
    members = np.stack([unit_rows(rng, 500, 384) for _ in range(4)])
    known = np.array([0.5, 0.3, 0.2, 0.0])
    truth = blend(members, known)
    weights = fit_weights(members, truth)
    np.testing.assert_allclose(weights, known, atol=0.01)
    assert weights.min() >= 0 and abs(weights.sum() - 1) < 1e-9
    score = np.einsum("nd,nd->n", blend(members, weights), truth).mean()
    assert score > 0.9999


def test_objective_and_gradient_match_brute_force():
    """The analytic gradient is what makes the fit fast: check it against finite differences,
    and the objective against the blend's cosines computed directly."""
    from scipy.optimize import check_grad

    rng = np.random.default_rng(1)
    members = np.stack([unit_rows(rng, 50, 16) for _ in range(3)]).astype(np.float64)
    truth = unit_rows(rng, 50, 16).astype(np.float64)
    objective = blend_objective(members, truth)
    for w in (np.array([0.2, 0.5, 0.3]), np.array([1.0, 0.0, 2.0])):
        direct = np.einsum("nd,nd->n", blend(members, w), truth).mean()
        assert objective(w)[0] == pytest.approx(direct, abs=1e-6)
        error = check_grad(lambda x: objective(x)[0], lambda x: objective(x)[1], w)
        assert error < 1e-6


@pytest.fixture
def oof_world(tmp_path):
    """Two members' OOF files (rows in different orders) and the prepared truth folder."""
    rng = np.random.default_rng(2)
    n = 60
    ids = [f"p{i:03d}" for i in range(n)]
    images = [f"images/{i}.png" for i in ids]
    truth_vectors = unit_rows(rng, n, 384)
    folds = np.arange(n) % 3
    sources = ["ddb" if i % 2 else "gen" for i in range(n)]
    truth = _write_truth(tmp_path / "data", ids, truth_vectors, folds, sources)
    good = unit(truth_vectors + 0.6 * unit_rows(rng, n, 384))
    weak = unit(truth_vectors + 1.5 * unit_rows(rng, n, 384))
    a = _write_oof(tmp_path / "a.parquet", ids, images, folds, good)
    order = rng.permutation(n)
    b = _write_oof(
        tmp_path / "b.parquet",
        [ids[i] for i in order],
        [images[i] for i in order],
        folds[order],
        weak[order],
    )
    return truth, a, b, truth_vectors, good, weak, folds, sources


def test_ensemble_cli_fit_and_apply(oof_world, tmp_path):
    truth, a, b, truth_vectors, good, weak, *_ = oof_world
    weights = tmp_path / "w.json"
    result = runner.invoke(
        app, ["ensemble", "fit", str(a), str(b), "--truth", str(truth), "--out", str(weights)]
    )
    assert result.exit_code == 0, result.output
    fit = json.loads(weights.read_text())
    w = np.array(fit["weights"])
    assert w[0] > w[1] > 0  # the better member counts more, the weaker still helps
    expected = np.einsum("nd,nd->n", blend(np.stack([good, weak]), w), truth_vectors).mean()
    assert fit["blend_score"] == pytest.approx(expected, abs=1e-5)
    assert fit["blend_score"] > max(fit["member_scores"])
    assert f"{fit['blend_score']:.4f}  blend of 2" in result.output

    out = tmp_path / "blend.parquet"
    result = runner.invoke(
        app, ["ensemble", "apply", str(weights), str(a), str(b), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    blended = read_predictions(out)
    np.testing.assert_allclose(blended.embeddings, blend(np.stack([good, weak]), w), atol=1e-6)

    result = runner.invoke(app, ["ensemble", "apply", str(weights), str(a), "--out", str(out)])
    assert result.exit_code == 2 and "weights are for 2 members" in result.output


def test_evaluate_matches_brute_force_per_fold_and_source(oof_world, tmp_path):
    truth, a, _, truth_vectors, good, _, folds, sources = oof_world
    report_dir = tmp_path / "report"
    result = runner.invoke(
        app, ["evaluate", str(a), "--truth", str(truth), "--report", str(report_dir)]
    )
    assert result.exit_code == 0, result.output
    cosines = np.einsum("nd,nd->n", good, truth_vectors)
    assert f"mean cosine {cosines.mean():.4f} over 60 images" in result.output
    report = json.loads((report_dir / "report.json").read_text())
    assert report["mean_cosine"] == pytest.approx(cosines.mean(), abs=1e-6)
    assert report["matched_by"] == "id"
    for fold in range(3):
        got = report["per_fold"][str(fold)]
        assert got["rows"] == 20
        assert got["mean_cosine"] == pytest.approx(cosines[folds == fold].mean(), abs=1e-6)
    gen = np.array(sources) == "gen"
    assert report["per_source"]["gen"]["mean_cosine"] == pytest.approx(
        cosines[gen].mean(), abs=1e-6
    )
    worst = np.argsort(cosines)[:10]
    assert [w["image"] for w in report["worst"]] == [f"images/p{i:03d}.png" for i in worst]
    assert (report_dir / "cosine_histogram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_a_submission_against_the_kaggle_truth(kaggle_sample, tmp_path):
    from img2prompt.predict.submission import read_submission, write_submission

    ids, truth = read_submission(kaggle_sample / "sample_submission.csv")
    rng = np.random.default_rng(3)
    noisy = unit(truth + 0.3 * unit_rows(rng, len(ids), 384))
    sub = tmp_path / "sub.csv"
    write_submission(sub, ids[::-1], noisy[::-1])  # order does not matter to evaluate
    result = runner.invoke(app, ["evaluate", str(sub), "--truth", str(kaggle_sample)])
    assert result.exit_code == 0, result.output
    expected = np.einsum("nd,nd->n", noisy, unit(truth)).mean()
    assert f"mean cosine {expected:.4f} over 7 images" in result.output


def test_evaluate_errors_name_the_problem(oof_world, tmp_path):
    truth, a, *_ = oof_world
    stranger = _write_oof(tmp_path / "s.parquet", ["zzz"], ["zzz.png"], [0], np.ones((1, 384)))
    result = runner.invoke(app, ["evaluate", str(stranger), "--truth", str(truth)])
    assert result.exit_code == 2 and "1 of 1 rows have no truth" in result.output
    small = _write_oof(tmp_path / "d.parquet", ["p000"], ["x.png"], [0], np.ones((1, 12)))
    result = runner.invoke(app, ["evaluate", str(small), "--truth", str(truth)])
    assert result.exit_code == 2 and "12 dimensions" in result.output
    result = runner.invoke(app, ["evaluate", str(a), "--truth", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "no such truth" in result.output
