"""Kaggle submissions: written in the competition's ids and order, and checked for every kind of
mistake Kaggle would reject."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from img2prompt.app.cli import app
from img2prompt.models.model import ImageToPromptModel, ModelConfig, save_model
from img2prompt.predict.check import check_submission
from img2prompt.predict.submission import read_submission, write_submission

runner = CliRunner()


def test_predict_submission_has_the_sample_ids_in_order(kaggle_sample, tmp_path):
    model_dir = save_model(
        ImageToPromptModel(ModelConfig(backbone="tiny-clip:32"), pretrained=False),
        tmp_path / "model",
    )
    out = tmp_path / "submission.csv"
    args = ["predict", str(model_dir), str(kaggle_sample / "images"), "--submission", str(out)]
    result = runner.invoke(app, [*args, "-q"])
    assert result.exit_code == 0, result.output
    sample_ids, _ = read_submission(kaggle_sample / "sample_submission.csv")
    ids, vectors = read_submission(out)
    assert ids == sample_ids
    assert vectors.shape == (7, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    lines = out.read_text().splitlines()
    expected_keys = [
        line.split(",")[0]
        for line in (kaggle_sample / "sample_submission.csv").read_text().splitlines()
    ]
    assert [line.split(",")[0] for line in lines] == expected_keys
    check = check_submission(out, sample=kaggle_sample / "sample_submission.csv")
    assert check.ok, check.problems


def test_the_true_targets_score_one(kaggle_sample, tmp_path):
    truth = kaggle_sample / "sample_submission.csv"
    ids, vectors = read_submission(truth)
    out = tmp_path / "perfect.csv"
    write_submission(out, ids, vectors * 3.0)  # scale does not change a cosine
    result = runner.invoke(
        app, ["submission", "check", str(out), "--sample", str(truth), "--truth", str(truth)]
    )
    assert result.exit_code == 0, result.output
    assert "score (mean cosine) 1.0000" in result.output
    # A truth with a NaN would make every score NaN: it is a problem, not "ok".
    lines = truth.read_text().splitlines()
    lines[5] = lines[5].rsplit(",", 1)[0] + ",nan"
    nan_truth = tmp_path / "nan_truth.csv"
    nan_truth.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["submission", "check", str(out), "--truth", str(nan_truth)])
    assert result.exit_code == 1 and "NaN or infinity" in result.output
    assert "score (mean cosine) nan" not in result.output


@pytest.fixture
def good(kaggle_sample, tmp_path) -> tuple[Path, Path, list[str]]:
    sample = kaggle_sample / "sample_submission.csv"
    lines = sample.read_text().splitlines()
    return sample, tmp_path / "broken.csv", lines


def _broken_cases(lines: list[str]) -> dict[str, tuple[list[str], str]]:
    header, rows = lines[0], lines[1:]
    first_image = rows[:384]
    return {
        "header": (["id,value", *rows], "header must be imgId_eId,val"),
        "not a number": ([header, "20057f34d_0,abc", *rows[1:]], "bad row"),
        "fields": ([header, "20057f34d_0,0.1,0.2", *rows[1:]], "expected 2 fields"),
        "eId order": ([header, rows[1], rows[0], *rows[2:]], "rows must run eId 0..dim-1"),
        "short image": ([header, *first_image[:-1], *rows[384:]], "different numbers"),
        "all short": (
            [header, *[r for r in rows if not r.split(",")[0].endswith("_383")]],
            "383 values per image, expected 384",
        ),
        "nan": ([header, "20057f34d_0,nan", *rows[1:]], "NaN or infinity"),
        "inf": ([header, *rows[:5], rows[5].split(",")[0] + ",inf", *rows[6:]], "NaN or infinity"),
        "duplicate": ([header, *rows, *first_image], "images listed twice: 20057f34d"),
        "missing": ([header, *rows[384:]], "1 images of sample_submission.csv missing"),
        "extra": (
            [header, *rows, *[r.replace("20057f34d", "0000extra") for r in first_image]],
            "1 images not in sample_submission.csv: 0000extra",
        ),
        "order": ([header, *rows[384:768], *first_image, *rows[768:]], "out of sample_submission"),
        "empty": ([header], "no rows"),
    }


@pytest.mark.parametrize("case", list(_broken_cases(["h", *["x"] * 800])))
def test_the_checker_catches_each_broken_submission(good, case):
    sample, broken, lines = good
    content, message = _broken_cases(lines)[case]
    broken.write_text("\n".join(content) + "\n")
    check = check_submission(broken, sample=sample)
    assert not check.ok
    assert any(message in problem for problem in check.problems), check.problems
    result = runner.invoke(app, ["submission", "check", str(broken), "--sample", str(sample)])
    assert result.exit_code == 1
    # The command names the bad file and says what is wrong with it.
    said = " ".join(result.output.split())
    assert broken.name in said, result.output
    assert " ".join(message.split()) in said, result.output


def test_a_non_utf8_file_is_a_problem_not_a_crash(good):
    sample, broken, _ = good
    broken.write_bytes(b"imgId_eId,val\n\xff\xfe_0,1\n")
    check = check_submission(broken, sample=sample)
    assert not check.ok
