"""Captioners as a model kind: tiny random Florence-2 and BLIP checkpoints, saved and made into
captioner folders as a user's would be, through load_model, predict, describe (with and without
a judge), sidecar captions, the web API and ensemble fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import img2prompt
from img2prompt.app.cli import app
from img2prompt.describer import Describer
from img2prompt.errors import ConfigError, InputError
from img2prompt.models.captioner import KIND, CaptionerModel
from img2prompt.models.model import load_model
from img2prompt.predict.captioned import judge_candidates
from img2prompt.predict.tables import read_predictions, vector_column
from sd_files import a1111_text, picture, png_with_text
from tiny_captioners import save_tiny_blip, save_tiny_florence2

runner = CliRunner()
FAMILIES = {"florence2": save_tiny_florence2, "blip": save_tiny_blip}


def cli(*args: str):
    result = runner.invoke(app, [*args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    return {name: save(root / name) for name, save in FAMILIES.items()}


@pytest.fixture(scope="module")
def captioners(checkpoints, tmp_path_factory) -> dict[str, Path]:
    """`captioner make` folders: 3 beam candidates of at most 6 tokens."""
    root = tmp_path_factory.mktemp("captioners")
    for name, source in checkpoints.items():
        cli(
            "captioner",
            "make",
            str(source),
            "--out",
            str(root / name),
            "--candidates",
            "3",
            "--max-new-tokens",
            "6",
        )
    return {name: root / name for name in checkpoints}


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Three 32x32 images, the tiny captioners' own size, so the judge sees the file's pixels."""
    folder = tmp_path_factory.mktemp("images")
    for seed in range(3):
        picture(seed, size=(32, 32)).save(folder / f"img{seed}.png")
    return folder


def files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.glob("*.png"))


def test_make_records_each_familys_prompt_and_load_model_loads_it(
    captioners, checkpoints, tmp_path
):
    florence = json.loads((captioners["florence2"] / "model.json").read_text())
    blip = json.loads((captioners["blip"] / "model.json").read_text())
    assert florence["kind"] == blip["kind"] == KIND
    assert florence["config"]["task_prompt"] == "<MORE_DETAILED_CAPTION>"
    assert florence["config"]["prompt_style"] == "task"
    assert (blip["config"]["task_prompt"], blip["config"]["prompt_style"]) == ("", "none")
    assert florence["config"]["candidates"] == 3 and florence["captioner"]["parameters"] > 0
    model = img2prompt.load_model(captioners["blip"], device="cpu")
    assert isinstance(model.module, CaptionerModel) and "blip captioner" in repr(model)
    # An override is recorded; remaking from a captioner folder takes its checkpoint.
    out = tmp_path / "promptgen"
    cli(
        "captioner",
        "make",
        str(captioners["florence2"]),
        "--out",
        str(out),
        "--task-prompt",
        "<MIXED_CAPTION>",
    )
    assert json.loads((out / "model.json").read_text())["config"]["task_prompt"] == (
        "<MIXED_CAPTION>"
    )
    with pytest.raises(InputError, match="captioner make"):  # a raw checkpoint is named
        load_model(checkpoints["blip"])


@pytest.mark.parametrize("family", list(FAMILIES))
def test_predict_writes_minilm_of_the_best_candidate(
    family, captioners, images, encoder, small_bank, tmp_path
):
    out = tmp_path / "p.parquet"
    cli("predict", str(captioners[family]), str(images), "--out", str(out), "--quiet")
    predicted = read_predictions(out)
    model = load_model(captioners[family])
    described = Describer(model, small_bank, metadata="ignore").describe_files(files(images))
    best = [d.caption_candidates[0][0] for d in described.descriptions]
    assert [d.prompt for d in described.descriptions] == best
    np.testing.assert_allclose(predicted.embeddings, encoder.encode(best), atol=1e-5)
    api = img2prompt.load_model(captioners[family], device="cpu").predict(files(images))
    np.testing.assert_allclose(api, predicted.embeddings, atol=1e-5)
    for d in described.descriptions:  # beams: best score first, distinct texts
        scores = [s for _, s, _ in d.caption_candidates]
        assert scores == sorted(scores, reverse=True) and len(set(scores)) == len(scores)
        assert d.judge_choice is None and "judge_cosine" not in d.to_json()


def test_sampled_candidates_are_seeded(checkpoints, images, small_bank, tmp_path):
    def sampled(seed: int) -> list[list[str]]:
        out = tmp_path / f"s{seed}"
        cli(
            "captioner",
            "make",
            str(checkpoints["blip"]),
            "--out",
            str(out),
            "--sampling",
            "--candidates",
            "4",
            "--max-new-tokens",
            "6",
            "--seed",
            str(seed),
        )
        run = Describer(out, small_bank, metadata="ignore").describe_files(files(images))
        return [[t for t, _, _ in d.caption_candidates] for d in run.descriptions]

    first = sampled(1)
    assert sampled(1) == first
    assert sampled(2) != first


def test_judge_reranks_like_brute_force(captioners, images, encoder, small_bank):
    describer = Describer(
        captioners["florence2"], small_bank, mode="fast", metadata="ignore", judge="default"
    )
    run = describer.describe_files(files(images))
    judge = img2prompt.load_model("default", device="cpu").predict(files(images))
    for d, expected in zip(run.descriptions, judge, strict=True):
        np.testing.assert_allclose(d.embedding, expected, atol=1e-5)
        texts = [t for t, _, _ in d.caption_candidates]
        cosines = [float(encoder.encode([t])[0] @ expected) for t in texts]  # one at a time
        best = max(range(len(texts)), key=lambda i: cosines[i])
        assert texts[best] == texts[0]
        assert d.judge_cosine == pytest.approx(max(cosines), abs=1e-5)
        assert d.judge_spread == pytest.approx(max(cosines) - min(cosines), abs=1e-5)
        assert [c for _, _, c in d.caption_candidates] == pytest.approx(cosines, abs=1e-5)
        bank = describer.decoder.decode(expected[None])[0]
        assert d.bank_prompt == bank.prompt
        winner = "caption" if max(cosines) >= bank.match else "bank"
        assert d.judge_choice == winner
        assert d.prompt == (texts[0] if winner == "caption" else bank.prompt)
        assert d.judge_margin == pytest.approx(abs(max(cosines) - bank.match), abs=1e-5)
        assert d.match == pytest.approx(max(max(cosines), bank.match), abs=1e-5)


def test_judge_candidates_matches_brute_force_with_ties():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(7, 384))
    vectors[4] = vectors[1]  # a tie keeps the captioner's order
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    judge = rng.normal(size=384)
    judge /= np.linalg.norm(judge)
    judged = judge_candidates(vectors, judge)
    brute = sorted(range(7), key=lambda i: (-float(vectors[i] @ judge), i))
    assert judged.order == brute
    assert judged.cosine == pytest.approx(max(vectors @ judge))


def test_judge_needs_a_captioner_and_the_cli_equals_the_api(captioners, images, small_bank):
    with pytest.raises(ConfigError, match="captioner"):
        Describer("default", small_bank, judge="default")
    model = str(captioners["blip"])
    args = ["--model", model, "--judge", "default", "--bank", str(small_bank), "--mode", "fast"]
    result = cli("describe", str(images), *args, "--json", "--quiet")
    body = json.loads(result.stdout)["results"]
    api = img2prompt.describe(
        files(images), model=model, bank=small_bank, mode="fast", judge="default"
    )
    assert [r["prompt"] for r in body] == [d.prompt for d in api]
    assert [r["caption_candidates"] for r in body] == [
        d.to_json()["caption_candidates"] for d in api
    ]
    assert {"judge_cosine", "judge_spread", "judge_choice", "judge_margin"} <= set(body[0])
    table = cli("describe", str(images), *args)
    words = " ".join(table.output.split())  # the terminal wraps the summary line
    assert "candidates' spread" in words and "caption beat the bank on" in words


def test_sidecars_from_a_captioner_keep_resume_and_metadata_rules(captioners, small_bank, tmp_path):
    folder = tmp_path / "train"
    folder.mkdir()
    for seed in range(2):
        picture(seed, size=(32, 32)).save(folder / f"plain{seed}.png")
    png_with_text(folder / "made.png", {"parameters": a1111_text("a castle, (red:1.2)")})
    model = str(captioners["florence2"])
    bank = ["--bank", str(small_bank)]
    cli("describe", str(folder), "--sidecar", "txt", "--model", model, *bank, "--prefix", "sks, ")
    assert (folder / "made.txt").read_text() == "sks, a castle, red\n"
    expected = Describer(model, small_bank, metadata="ignore").describe_files(
        [folder / "plain0.png", folder / "plain1.png"]
    )
    for d in expected.descriptions:
        assert Path(d.image).with_suffix(".txt").read_text() == f"sks, {d.prompt}\n"
    (folder / "plain0.txt").write_text("mine\n")
    result = cli("describe", str(folder), "--sidecar", "txt", "--model", model, *bank)
    assert (folder / "plain0.txt").read_text() == "mine\n"
    assert "3 kept" in " ".join(result.output.split())  # nothing rewritten


def test_serve_shows_candidates_with_the_judges_scores(captioners, small_bank):
    from img2prompt.app.serve.app import create_app

    describer = Describer(captioners["blip"], small_bank, mode="fast", judge="default")
    png = tmp_png()
    with TestClient(create_app(describer)) as client:
        answer = client.post("/api/describe", files={"image": ("a.png", png, "image/png")})
        page = client.get("/").text
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert len(body["caption_candidates"]) >= 1
    assert all(c["judge_cosine"] is not None for c in body["caption_candidates"])
    assert body["judge_choice"] in ("caption", "bank")
    assert body["judge_cosine"] == max(c["judge_cosine"] for c in body["caption_candidates"])
    assert 'id="caption-candidates"' in page


def tmp_png() -> bytes:
    import io

    data = io.BytesIO()
    picture(5, size=(32, 32)).save(data, "PNG")
    return data.getvalue()


def test_ensemble_fit_blends_a_captioners_predictions(captioners, images, encoder, tmp_path):
    stems = [Path(f).stem for f in files(images)]
    truth = tmp_path / "data"
    truth.mkdir()
    targets = encoder.encode([f"a picture number {i}" for i in range(len(stems))])
    table = pa.table(
        {
            "id": stems,
            "image": [f"images/{stem}.png" for stem in stems],
            "prompt": [f"a picture number {i}" for i in range(len(stems))],
            "target": vector_column(targets),
            "fold": pa.array([0, 1, 2], pa.int64()),
            "source": ["gen"] * len(stems),
        }
    )
    pq.write_table(table, truth / "prompts.parquet")
    outs = []
    for name in ("florence2", "blip"):
        outs.append(tmp_path / f"{name}.parquet")
        cli("predict", str(captioners[name]), str(images), "--out", str(outs[-1]), "--quiet")
    weights = tmp_path / "w.json"
    cli("ensemble", "fit", *map(str, outs), "--truth", str(truth), "--out", str(weights))
    fit = json.loads(weights.read_text())
    assert len(fit["weights"]) == 2 and fit["blend_score"] >= max(fit["member_scores"]) - 1e-6


def test_a_captioner_keeps_its_own_precision(captioners, images):
    """Generation runs in the dtype the captioner was loaded in: no bf16 or int8 copy is made
    or checked (it would generate every first batch twice), and asking for one is refused."""
    from img2prompt.predict.options import PredictOptions
    from img2prompt.predict.predictor import Predictor

    model = load_model(captioners["blip"])
    predictor = Predictor(model, PredictOptions(workers=0))
    predictor.predict_files(files(images), progress=False)
    assert predictor.engine.precision == "fp32"  # on a CPU
    assert predictor.engine.precision_note == "the model sets its own precision"
    for precision in ("bf16", "int8"):
        with pytest.raises(ConfigError, match=f"--precision {precision}: this model sets its own"):
            Predictor(model, PredictOptions(precision=precision, workers=0))
