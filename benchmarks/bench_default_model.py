"""The zero-download default model on the competition's 7 sample images.

    python benchmarks/bench_default_model.py

Scores (mean cosine with the true MiniLM prompt vectors of ../shared/data/kaggle_sample) for:

  - the constant prior alone (baseline, measured in the same run): the default model's own prompt
    prior, the same vector for every image;
  - the class mixture alone (alpha = 0): what the ImageNet classifier contributes by itself;
  - the default model (`load_model("default")`): mixture + alpha * prior.

Nothing in the default model was tuned on these images (see img2prompt/models/default_model.py):
the 7 images are its test. Seven images make a noisy figure: read the per-image rows too.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SHARED_DIR, load_average, verdict

SAMPLE = SHARED_DIR / "data" / "kaggle_sample"


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.parse_args(argv)
    print("== bench_default_model: zero-download default model, Kaggle sample ==", flush=True)
    if not (SAMPLE / "sample_submission.csv").is_file():
        print(f"  SKIPPED: shared data not found under {SAMPLE}")
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from img2prompt.data.images import load_image
    from img2prompt.data.transforms import preprocess
    from img2prompt.metrics import cosines
    from img2prompt.models.default_model import imagenet_class_names
    from img2prompt.models.model import load_model
    from img2prompt.predict.submission import read_submission

    ids, truth = read_submission(SAMPLE / "sample_submission.csv")
    with open(SAMPLE / "prompts.csv", newline="", encoding="utf-8") as f:
        prompts = {row["imgId"]: row["prompt"] for row in csv.DictReader(f)}
    print(f"  torch {torch.__version__} ({torch.get_num_threads()} threads), load {load_average()}")

    start = time.perf_counter()
    model = load_model("default")
    load_s = time.perf_counter() - start
    head = model.head
    pixels = torch.stack(
        [preprocess(load_image(SAMPLE / "images" / f"{i}.png"), model.preprocess) for i in ids]
    )
    with torch.no_grad():
        start = time.perf_counter()
        full = model(pixels).numpy()
        predict_s = time.perf_counter() - start
        logits = model.backbone_features(pixels)  # untimed: for the mixture-alone row
        weights = torch.softmax(logits / head.temperature, dim=-1)
        mixture = weights @ head.class_embeddings
        prior = head.prior.numpy()
        top = weights.topk(3)
    scores = {
        "constant prior (baseline)": truth @ _unit(prior),
        "class mixture alone (alpha=0)": cosines(_unit(mixture.numpy()), truth),
        "default model": cosines(_unit(full), truth),
    }
    print(
        f"  default model: T={head.temperature.item():g}, alpha={head.alpha.item():g}; "
        f"load {load_s:.2f} s, 7 images {predict_s:.2f} s"
    )
    print(f"  {'method':<32} {'mean cosine':>11}  per image")
    for name, values in scores.items():
        cells = " ".join(f"{v:.3f}" for v in values)
        print(f"  {name:<32} {values.mean():>11.4f}  {cells}")
    classes = imagenet_class_names()
    print("  top classes (probability) per image, with the true prompt:")
    for row, image_id in enumerate(ids):
        guesses = ", ".join(
            f"{classes[int(c)]} {float(v):.2f}"
            for v, c in zip(top.values[row], top.indices[row], strict=True)
        )
        print(f"    {image_id}: {guesses}  | {prompts[image_id][:60]}")
    gain = scores["default model"].mean() - scores["constant prior (baseline)"].mean()
    ok = gain > 0
    print(
        f"  default model - constant prior: {gain:+.4f} "
        f"(better on {(scores['default model'] > scores['constant prior (baseline)']).sum()}/7 "
        f"images) {verdict(ok)}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
