"""The zero-download default model: packaged, offline, built from package data, and honest."""

from __future__ import annotations

import csv
import json
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

import build_default_model as dm
from img2prompt.data.images import load_image
from img2prompt.data.transforms import preprocess
from img2prompt.models.backbones import build_backbone
from img2prompt.models.model import (
    ImageToPromptModel,
    ModelConfig,
    default_model_dir,
    load_model,
    resolve_model_dir,
    save_model,
)
from img2prompt.predict.submission import read_submission

# Figures printed by benchmarks/bench_default_model.py and quoted in the README.
README_DEFAULT, README_PRIOR = 0.392, 0.361


@pytest.fixture(scope="module")
def model() -> ImageToPromptModel:
    return load_model("default")


def _embed(model: ImageToPromptModel, paths: list[Path]) -> np.ndarray:
    pixels = torch.stack([preprocess(load_image(p), model.preprocess) for p in paths])
    with torch.no_grad():
        return torch.nn.functional.normalize(model(pixels), dim=-1).numpy()


def test_default_loads_offline_from_the_package_and_maps_images_to_384(model):
    assert resolve_model_dir("default") == default_model_dir()
    assert resolve_model_dir(Path("default")) == Path("default")  # a Path is always a folder
    assert model.cfg.backbone == "efficientnet-lite0-classifier"
    assert model.cfg.head == "class-mixture" and model.cfg.backbone_weights == "pretrained"
    with torch.no_grad():
        out = model(torch.randn(3, 3, 224, 224))
    assert out.shape == (3, 384) and torch.isfinite(out).all()
    # Only the head is shipped: the backbone's weights come from the pip package at load time.
    weights = default_model_dir() / "model.safetensors"
    with safe_open(str(weights), "pt") as f:
        assert sorted(f.keys()) == [
            "head.alpha",
            "head.class_embeddings",
            "head.prior",
            "head.temperature",
        ]
    assert weights.stat().st_size < 2 * 2**20
    from img2prompt.models.backbones import efficientnet_lite0_state_dict

    packaged = efficientnet_lite0_state_dict()
    assert torch.equal(model.backbone.model._fc.weight, packaged["_fc.weight"])


def test_class_names_are_package_data_in_the_classifiers_order():
    names = dm.imagenet_class_names()
    assert len(names) == 1000 == build_backbone(dm.BACKBONE, "random").feature_dim
    dist = metadata.distribution(dm.CLASS_NAMES_DIST)
    assert dm._package_file(dm.CLASS_NAMES_FILE) == Path(str(dist.locate_file(dm.CLASS_NAMES_FILE)))
    wnids = dm.imagenet_wnids()
    assert wnids == sorted(wnids) and len(set(wnids)) == 1000  # the standard ImageNet-1k order
    assert wnids[0] == "n01440764" and wnids[-1] == "n15075141"
    assert (names[0], names[1]) == ("tench", "goldfish")
    assert "crane bird" in names and "construction crane" in names  # no ambiguous duplicates


def test_the_classifier_agrees_with_the_names_on_a_real_photo():
    """matplotlib's sample photo of Grace Hopper in naval uniform: a wrong class order would not
    put a uniform among the classifier's top guesses."""
    from matplotlib import cbook

    path = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    backbone = build_backbone(dm.BACKBONE).eval()
    with torch.no_grad():
        logits = backbone.pooled(preprocess(load_image(path), backbone.preprocess)[None])[0]
    names = dm.imagenet_class_names()
    top = [names[i] for i in logits.topk(3).indices]
    assert "military uniform" in top, top
    assert set(top) <= {"military uniform", "academic gown", "graduation cap", "suit", "bow tie"}


def test_the_shipped_head_equals_a_rebuild(model, encoder):
    """The artefact cannot drift from the code: its inputs' checksums match, and a rebuild of a
    sample of the class vectors, the prior, T and alpha equals the shipped values (a full rebuild,
    `python scripts/build_default_model.py`, encodes 8,000 phrases: ~2 minutes here)."""
    record = model.manifest["training"]
    assert record["class_names"]["version"] == metadata.version(dm.CLASS_NAMES_DIST)
    assert record["class_names"]["sha256"] == dm._sha256(dm._package_file(dm.CLASS_NAMES_FILE))
    assert record["prior_prompts"]["sha256"] == dm._sha256(dm.PRIOR_PROMPTS)
    assert record["templates"] == list(dm.TEMPLATES)
    head = model.head
    shipped = head.class_embeddings.detach().numpy()
    names = dm.imagenet_class_names()
    sample = [*range(0, 1000, 37), 999]
    rebuilt = dm.class_embeddings([names[i] for i in sample], encoder)
    np.testing.assert_allclose(rebuilt, shipped[sample], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(shipped, axis=1), 1.0, atol=1e-5)
    prompts = encoder.encode(dm.prior_prompts())
    np.testing.assert_allclose(dm.prompt_prior(prompts), head.prior.detach().numpy(), atol=1e-5)
    alpha, scores = dm.fit_alpha(prompts, shipped)
    assert head.alpha.item() == pytest.approx(alpha) == record["alpha"]
    assert 0 < alpha < max(dm.ALPHA_GRID)  # an interior optimum, not the grid's edge
    assert head.temperature.item() == dm.TEMPERATURE == 1.0
    assert scores[alpha] == pytest.approx(record["alpha_fit"]["mean_cosine_by_alpha"][str(alpha)])


def test_default_model_beats_the_constant_prior_on_the_kaggle_sample(model, kaggle_sample):
    ids, truth = read_submission(kaggle_sample / "sample_submission.csv")
    with open(kaggle_sample / "prompts.csv", newline="", encoding="utf-8") as f:
        assert {row["imgId"] for row in csv.DictReader(f)} == set(ids)
    predictions = _embed(model, [kaggle_sample / "images" / f"{i}.png" for i in ids])
    ours = float((predictions * truth).sum(1).mean())
    prior = model.head.prior.detach().numpy()
    baseline = float((truth @ (prior / np.linalg.norm(prior))).mean())
    assert ours > baseline + 0.02, (ours, baseline)
    assert (ours, baseline) == (
        pytest.approx(README_DEFAULT, abs=0.002),
        pytest.approx(README_PRIOR, abs=0.002),
    )


def test_the_default_model_round_trips_through_save_and_load(model, tmp_path):
    folder = save_model(model, tmp_path / "copy", training=model.manifest["training"])
    assert (folder / "model.safetensors").stat().st_size < 2 * 2**20  # still the head only
    manifest = json.loads((folder / "model.json").read_text())
    assert manifest["config"] == model.manifest["config"]
    again = load_model(folder)
    pixels = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(again(pixels), model(pixels), rtol=0, atol=0)
    for name, value in model.head.state_dict().items():
        assert torch.equal(again.head.state_dict()[name], value), name


def test_a_pretrained_backbone_folder_with_foreign_weights_is_refused(tmp_path):
    from safetensors.torch import save_file

    cfg = ModelConfig(dm.BACKBONE, head="linear", backbone_weights="pretrained")
    folder = save_model(ImageToPromptModel(cfg, pretrained=False), tmp_path / "m")
    save_file({"head.nope": torch.zeros(1)}, str(folder / "model.safetensors"))
    with pytest.raises(ValueError, match="does not fit the model"):
        load_model(folder)
    with pytest.raises(ValueError, match="--backbone-weights must be one of saved, pretrained"):
        ModelConfig(dm.BACKBONE, backbone_weights="maybe")


def test_class_mixture_head_is_the_documented_formula():
    from img2prompt.models.heads import build_head

    torch.manual_seed(0)
    head = build_head("class-mixture", 5, 4)
    with torch.no_grad():
        head.temperature.fill_(2.0)
        head.alpha.fill_(0.3)
    logits = torch.randn(3, 5)
    expected = torch.softmax(logits / 2.0, -1) @ head.class_embeddings + 0.3 * head.prior
    torch.testing.assert_close(head(logits), expected)
    head(logits).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


def test_default_model_beats_the_priors_leave_one_source_out_on_real_pairs(
    model, shared_data, encoder
):
    """Real SD 1.x images (real_pairs, a dev set): 32 images of each of its two large sources,
    against the constant prior a tuning on the *other* source would give (its mean prompt) and
    against the model's own prior alone. Full-data figures: benchmarks/bench_default_model.py."""
    root = shared_data / "real_pairs"
    with open(root / "pairs.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    by_source: dict[str, list[dict]] = {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row)
    waylon = by_source["WaylonWalker/stable-diffusion-waylonwalker-com"]
    drawbench = by_source["kennymckormick/DrawBench-Glance"]
    prior = model.head.prior.detach().numpy()
    prior = prior / np.linalg.norm(prior)
    figures = {}
    for name, test, train in (("waylon", waylon, drawbench), ("drawbench", drawbench, waylon)):
        sample = test[:: len(test) // 32][:32]
        truth = encoder.encode([r["prompt"] for r in sample])
        ours = float((_embed(model, [root / r["image"] for r in sample]) * truth).sum(1).mean())
        other = encoder.encode(sorted({r["prompt"] for r in train})).mean(0)
        loso = float((truth @ (other / np.linalg.norm(other))).mean())
        own = float((truth @ prior).mean())
        assert ours > loso + 0.08 and ours > own + 0.03, (name, ours, loso, own)
        figures[name] = ours
    # These 64 images' figures; drift here means the shipped model or its inputs changed.
    assert figures == {
        "waylon": pytest.approx(0.449, abs=0.003),
        "drawbench": pytest.approx(0.387, abs=0.003),
    }
