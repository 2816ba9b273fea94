"""`describe` with the real default model: honest scores, input order, bad images listed with
their reasons and exit codes, machine-readable outputs, in-memory uploads; and the demo."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from image_helpers import drawn_png, png_header_only
from img2prompt.app.cli import app
from img2prompt.errors import InputError

runner = CliRunner()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for i in range(3):
        (folder / f"good{i}.png").write_bytes(drawn_png(seed=i))
    (folder / "notes.png").write_text("a text file with an image suffix\n")
    (folder / "cut.png").write_bytes(drawn_png()[:200])
    return folder


def test_descriptions_are_consistent(describer, encoder, images):
    paths = [images / f"good{i}.png" for i in (2, 0, 1)]
    run = describer.describe_files(paths)
    assert [Path(d.image).name for d in run.descriptions] == ["good2.png", "good0.png", "good1.png"]
    assert run.failures == []
    vectors = np.stack([d.embedding for d in run.descriptions])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # match is the cosine of the prompt's MiniLM vector to the embedding, recomputed here.
    prompts = [d.prompt for d in run.descriptions]
    assert all(prompts)
    again = np.einsum("ij,ij->i", encoder.encode(prompts), vectors)
    np.testing.assert_allclose([d.match for d in run.descriptions], again, atol=1e-5)
    for d in run.descriptions:
        assert d.neighbors and d.neighbors == sorted(d.neighbors, key=lambda n: -n[1])
        assert set(d.phrases) <= set(describer.bank.texts)


def test_bad_images_are_listed_with_reasons(describer, images):
    run = describer.describe_files([images, images / "missing.png"])
    assert sorted(Path(d.image).name for d in run.descriptions) == [
        f"good{i}.png" for i in range(3)
    ]
    reasons = {Path(f.image).name: f.reason for f in run.failures}
    assert set(reasons) == {"notes.png", "cut.png", "missing.png"}
    assert "cannot decode image" in reasons["notes.png"]
    assert "truncated" in reasons["cut.png"]
    assert reasons["missing.png"] == "no such file or folder"


def test_uploads_in_memory(describer, encoder):
    good = drawn_png(seed=3)
    results = describer.describe_uploads(
        [
            ("a.png", good),
            ("notes.txt", b"hello"),
            ("bomb.png", png_header_only(40000, 40000)),
            ("b.png", good),
        ],
        max_pixels=10_000_000,
    )
    assert [type(r).__name__ for r in results] == [
        "Description",
        "NotAnImage",
        "InputError",
        "Description",
    ]
    assert isinstance(results[1], InputError) and "not an image" in results[1].message
    assert "decompression bomb" in results[2].message or "pixel limit" in results[2].message
    a, b = results[0], results[3]
    np.testing.assert_allclose(a.embedding, b.embedding, atol=1e-6)
    # The same image from a file gives the same embedding.
    from io import BytesIO

    ref = describer.predictor.embed_images([Image.open(BytesIO(good))])[0]
    np.testing.assert_allclose(a.embedding, ref, atol=1e-5)
    assert a.match == pytest.approx(float(encoder.encode([a.prompt])[0] @ a.embedding), abs=1e-5)


def _cli(args, describer, monkeypatch):
    """Run the CLI with the session's describer (the model and bank are loaded once)."""
    import img2prompt.describer as describe_module

    monkeypatch.setattr(describe_module, "Describer", lambda *a, **k: describer)
    return runner.invoke(app, ["describe", *args, "--quiet"])


def test_cli_json_and_parquet(describer, images, tmp_path, monkeypatch):
    out = tmp_path / "described.parquet"
    good = [str(images / f"good{i}.png") for i in range(2)]
    result = _cli([*good, "--json", "--out", str(out)], describer, monkeypatch)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["image"] for r in data["results"]] == good and data["failures"] == []
    first = data["results"][0]
    assert len(first["embedding"]) == 384 and first["prompt"] and first["neighbors"]
    table = pq.read_table(out).to_pylist()
    assert [row["image"] for row in table] == good
    np.testing.assert_allclose(table[0]["embedding"], first["embedding"], atol=1e-6)
    assert table[0]["prompt"] == first["prompt"]
    # "match" (not the old, misleading "score") everywhere, with no alias left.
    assert table[0]["match"] == pytest.approx(first["match"], abs=1e-6) and "score" not in table[0]
    assert "score" not in first

    table_run = _cli(good[:1], describer, monkeypatch)
    assert table_run.exit_code == 0 and "good0.png" in table_run.stdout
    assert "match" in table_run.stdout and "score" not in table_run.stdout
    # Quiet and written to a file: the file is the output, stdout stays empty.
    quiet_run = _cli([*good, "--out", str(tmp_path / "quiet.parquet")], describer, monkeypatch)
    assert quiet_run.exit_code == 0 and quiet_run.stdout == ""
    assert len(pq.read_table(tmp_path / "quiet.parquet")) == 2


def test_cli_exit_codes(describer, images, monkeypatch):
    bad = str(images / "notes.png")
    good = str(images / "good0.png")
    mixed = _cli([good, bad], describer, monkeypatch)
    assert mixed.exit_code == 1
    assert "notes.png" in mixed.stderr and "cannot decode image" in mixed.stderr
    assert _cli([good, bad, "--skip-bad"], describer, monkeypatch).exit_code == 0
    # --skip-bad needs something described: all bad is still a failure.
    assert _cli([bad, "--skip-bad"], describer, monkeypatch).exit_code == 1
    wrong_out = _cli([good, "--out", "x.csv"], describer, monkeypatch)
    assert wrong_out.exit_code == 2 and "--out" in wrong_out.output


def test_demo_runs_end_to_end(describer, tmp_path, capsys):
    from img2prompt.app.demo import example_images, kaggle_sample_dir, run_demo

    assert len(example_images()) == 5
    run_demo(tmp_path, describer=describer, data_stage=False)
    printed = capsys.readouterr().out
    assert "astronaut.png" in printed
    assert pq.read_table(tmp_path / "examples.parquet").num_rows == 5
    if kaggle_sample_dir() is not None:
        assert "mean cosine of the predicted embeddings" in printed
        assert "20057f34d.png" in printed and "true prompt" in printed
        assert "matches" in printed


def test_demo_finds_the_shared_sample_beside_the_checkout_from_any_folder(
    kaggle_sample, tmp_path, monkeypatch
):
    from img2prompt.app.demo import kaggle_sample_dir, shared_dir_candidates

    monkeypatch.delenv("IMG2PROMPT_SHARED", raising=False)
    monkeypatch.chdir(tmp_path)  # the current folder's parent has no `shared`
    assert shared_dir_candidates()[0] == kaggle_sample.parents[1]
    assert kaggle_sample_dir() == kaggle_sample
    monkeypatch.setenv("IMG2PROMPT_SHARED", str(tmp_path))  # the override comes first ...
    assert shared_dir_candidates()[0] == tmp_path
    assert kaggle_sample_dir() == kaggle_sample  # ... and is passed over when it lacks the data
