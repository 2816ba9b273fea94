"""The Python API (`img2prompt.load_model / decode / describe`), `hf:` model specs and `push`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

import img2prompt
from img2prompt.app.cli import app
from img2prompt.app.demo import example_images
from img2prompt.errors import InputError
from img2prompt.io import vectors_from_column
from img2prompt.models.model import default_model_dir

runner = CliRunner()


def test_public_names_resolve_lazily_and_only_those():
    import pkgutil

    assert set(img2prompt.__all__) == {"__version__", *img2prompt._LAZY}
    # a submodule of the same name would replace the function once imported
    submodules = {m.name for m in pkgutil.iter_modules(img2prompt.__path__)}
    assert not submodules & set(img2prompt.__all__)
    for name in img2prompt._LAZY:
        assert getattr(img2prompt, name) is not None, name
    assert img2prompt.Predictor.__name__ == "Predictor"
    assert "load_model" in dir(img2prompt)
    with pytest.raises(AttributeError, match="no_such_name"):
        img2prompt.no_such_name  # noqa: B018


def test_predict_takes_paths_and_pil_images_and_equals_the_cli(tmp_path):
    first, second = example_images()[:2]
    model = img2prompt.load_model("default", device="cpu")
    vectors = model.predict([first, Image.open(second)])
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    out = tmp_path / "preds.parquet"
    result = runner.invoke(
        app,
        ["predict", "default", str(first), str(second), "--out", str(out), "--device", "cpu", "-q"],
    )
    assert result.exit_code == 0, result.output
    cli = vectors_from_column(pq.read_table(out).column("embedding"), out)
    np.testing.assert_allclose(vectors, cli, atol=1e-6)
    # One path alone works too (batch shape moves float32 sums by ~1e-8, so not bit-equal).
    np.testing.assert_allclose(model.predict(first), vectors[:1], atol=1e-6)
    with pytest.raises(InputError, match=r"nope\.png"):
        model.predict([tmp_path / "nope.png"])


def test_decode_round_trips_a_text_made_of_bank_phrases(small_bank, encoder):
    text = "a red fox, covered in snow, oil painting"
    target = encoder.encode([text])
    (fast,) = img2prompt.decode(target, bank=small_bank, mode="fast")
    best = img2prompt.decode(target[0], bank=small_bank, mode="best")  # one vector works too
    for prompt in (fast, *best):
        assert "a red fox" in prompt
        assert float(encoder.encode([prompt])[0] @ target[0]) > 0.9, prompt
    with pytest.raises(
        ValueError, match=r"unknown decode mode 'fastest' \(--mode\); known: best, fast, max"
    ):
        img2prompt.decode(target, bank=small_bank, mode="fastest")


def test_describe_gives_prompt_score_and_the_models_embedding(small_bank, encoder):
    image = example_images()[1]  # the cat photograph
    (described,) = img2prompt.describe([image], bank=small_bank, mode="fast")
    assert described.image == str(image) and described.prompt
    expected = img2prompt.load_model("default").predict([image])[0]
    np.testing.assert_allclose(described.embedding, expected, atol=1e-6)
    prompt_vector = encoder.encode([described.prompt])[0]
    assert described.match == pytest.approx(float(prompt_vector @ described.embedding), abs=1e-4)
    again = img2prompt.describe(Image.open(image), bank=small_bank, mode="fast")
    assert again[0].prompt == described.prompt and again[0].image == "image 0"


def test_describe_answers_a_file_with_its_embedded_prompt(small_bank, tmp_path):
    from sd_files import a1111_text, picture, png_with_text

    path = png_with_text(tmp_path / "fox.png", {"parameters": a1111_text("a fox, ukiyo-e")})
    (found,) = img2prompt.describe([path], bank=small_bank, mode="fast")
    assert (found.prompt, found.source) == ("a fox, ukiyo-e", "metadata")
    assert found.metadata.negative_prompt == "blurry" and found.model_prompt
    assert img2prompt.read_metadata(path).settings["steps"] == 20
    (pixels,) = img2prompt.describe([path], bank=small_bank, mode="fast", metadata="ignore")
    assert pixels.source == "model" and pixels.prompt == found.model_prompt
    (image,) = img2prompt.describe(picture(), bank=small_bank, mode="fast")  # no file, no metadata
    assert image.source == "model"


def test_create_model_and_list_backbones():
    assert "efficientnet-lite0" in img2prompt.list_backbones()
    model = img2prompt.create_model(
        "tiny-clip", head="mlp", head_options="hidden=8", pretrained=False
    )
    assert model.cfg.head == "mlp" and model.cfg.out_dim == 384


def _fill_hub_cache(cache: Path, repo: str, refs: dict[str, str]) -> None:
    """The hub cache's own layout: models--owner--name/{refs/REF, snapshots/SHA/...}."""
    root = cache / f"models--{repo.replace('/', '--')}"
    for ref, sha in refs.items():
        snapshot = root / "snapshots" / sha
        if not snapshot.exists():
            shutil.copytree(default_model_dir(), snapshot)
            manifest = json.loads((snapshot / "model.json").read_text())
            manifest["training"] = {"snapshot": sha}
            (snapshot / "model.json").write_text(json.dumps(manifest))
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / ref).write_text(sha)


def test_hf_models_load_offline_from_the_hub_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    main, tagged = "a" * 40, "b" * 40
    _fill_hub_cache(tmp_path, "someone/img2prompt-test", {"main": main, "v1": tagged})
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    model = img2prompt.load_model("hf:someone/img2prompt-test", device="cpu")
    assert model.manifest["training"] == {"snapshot": main}
    default = img2prompt.load_model("default", device="cpu")
    image = example_images()[0]
    np.testing.assert_array_equal(model.predict([image]), default.predict([image]))
    for revision, sha in (("v1", tagged), (main, main)):
        pinned = img2prompt.load_model(f"hf:someone/img2prompt-test@{revision}", device="cpu")
        assert pinned.manifest["training"] == {"snapshot": sha}
    with pytest.raises(InputError, match=r"hf:someone/absent: .*not in the hub cache"):
        img2prompt.load_model("hf:someone/absent")
    with pytest.raises(ValueError, match="expected hf:owner/repo"):
        img2prompt.load_model("hf:no-owner")


class _FakeHfApi:
    calls: ClassVar[list[tuple[str, dict]]] = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", {"repo_id": repo_id, **kwargs}))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        return "https://huggingface.co/someone/m/commit/123"


def test_push_uploads_a_model_folder(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", _FakeHfApi)
    _FakeHfApi.calls = []
    folder = tmp_path / "model"
    shutil.copytree(default_model_dir(), folder)
    result = runner.invoke(
        app, ["push", str(folder), "someone/m", "--private", "--revision", "dev"]
    )
    assert result.exit_code == 0, result.output
    assert "commit/123" in result.output
    names = [name for name, _ in _FakeHfApi.calls]
    assert names == ["create_repo", "create_branch", "upload_folder"]
    assert _FakeHfApi.calls[0][1] == {
        "repo_id": "someone/m",
        "repo_type": "model",
        "private": True,
        "exist_ok": True,
    }
    assert _FakeHfApi.calls[1][1]["branch"] == "dev"
    upload = _FakeHfApi.calls[2][1]
    assert upload["folder_path"] == str(folder) and upload["repo_id"] == "someone/m"
    assert upload["revision"] == "dev" and upload["repo_type"] == "model"


def test_push_refuses_a_folder_that_is_not_a_model(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", _FakeHfApi)
    _FakeHfApi.calls = []
    (tmp_path / "notes.txt").write_text("not a model")
    result = runner.invoke(app, ["push", str(tmp_path), "someone/m"])
    assert result.exit_code == 2 and "not a model folder (no model.json)" in result.output
    assert _FakeHfApi.calls == []


def test_decode_through_the_api_equals_the_cli(small_bank, encoder, tmp_path):
    targets = encoder.encode(["a red fox, covered in snow, oil painting", "a castle on a hill"])
    np.save(tmp_path / "targets.npy", targets)
    out = tmp_path / "prompts.txt"
    args = ["decode", "--embeddings", str(tmp_path / "targets.npy"), "--bank", str(small_bank)]
    result = runner.invoke(app, [*args, "--mode", "fast", "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    api = img2prompt.decode(targets, bank=small_bank, mode="fast")
    assert out.read_text().splitlines() == api
    assert all(api)


def test_describe_through_the_api_equals_the_cli(small_bank, tmp_path):
    images = example_images()[:2]
    out = tmp_path / "described.json"
    args = ["describe", *map(str, images), "--bank", str(small_bank), "--mode", "fast"]
    result = runner.invoke(app, [*args, "--device", "cpu", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    api = img2prompt.describe(images, bank=small_bank, mode="fast")
    written = json.loads(out.read_text())
    rows = written["results"]
    assert [r["prompt"] for r in rows] == [d.prompt for d in api]
    assert [r["image"] for r in rows] == [d.image for d in api]
    np.testing.assert_allclose(
        [r["match"] for r in rows], [d.to_json()["match"] for d in api], atol=1e-9
    )
