"""Training throughput (images/s) and the frozen-feature cache's speed-up, through `train()`.

    python benchmarks/bench_train.py [--images 64] [--lp-epochs 3] [--batch-size 16]

Measured in the same process on synthetic 256 px images with random unit targets:

  - fine-tuning images/s (forward + backward + AdamW, fp32, this machine's threads) for
    `efficientnet-lite0` (real ImageNet weights) and a ViT-B/32-shaped random CLIP loaded from a
    folder with `hf-clip:DIR` (the path a real checkpoint takes);
  - linear probing for `--lp-epochs` epochs with the frozen-feature cache against the baseline
    that runs the frozen backbone forward every epoch (`--no-cache-features`): wall time of the
    whole `train()` call, caching included.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def make_dataset(folder: Path, n: int, side: int = 256, seed: int = 0) -> Path:
    import pyarrow as pa
    from PIL import Image

    from img2prompt.io import vector_column, write_parquet

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        pixels = rng.integers(0, 256, (side // 8, side // 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).resize((side, side), Image.Resampling.BILINEAR).save(
            folder / f"{i}.png"
        )
        names.append(f"{i}.png")
    targets = rng.normal(size=(n, 384)).astype(np.float32)
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    table = pa.table(
        {
            "id": [str(i) for i in range(n)],
            "prompt": ["a picture"] * n,
            "target": vector_column(targets),
            "group": np.arange(n),
            "fold": np.arange(n) % 2,
            "image": names,
        }
    )
    write_parquet(table, folder / "prompts.parquet")
    return folder


def save_vit_b32(folder: Path) -> str:
    """A random CLIP ViT-B/32 vision tower (768 wide, 12 layers, patch 32, 224 px)."""
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    config = CLIPVisionConfig(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        image_size=224,
        patch_size=32,
    )
    CLIPVisionModel(config).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 224}).save_pretrained(folder)
    return f"hf-clip:{folder}"


def run(data: Path, out: Path, backbone: str, **options) -> tuple[float, list[dict]]:
    from img2prompt.train.loop import train
    from img2prompt.train.options import TrainConfig

    cfg = TrainConfig.of(data=data, backbone=backbone, out=out, workers=1, fold="1", **options)
    started = time.perf_counter()
    train(cfg, progress=False)
    seconds = time.perf_counter() - started
    with open(out / "metrics.csv") as f:
        return seconds, list(csv.DictReader(f))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--images", type=int, default=64, help="images in the table (half train)")
    p.add_argument("--lp-epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args(argv)

    import torch

    print(
        f"== training ({args.images // 2} training images, torch threads {torch.get_num_threads()})"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = make_dataset(tmp / "data", args.images)
        backbones = {
            "efficientnet-lite0": "efficientnet-lite0",
            "ViT-B/32 CLIP": save_vit_b32(tmp / "vit"),
        }
        for label, spec in backbones.items():
            _, rows = run(data, tmp / f"ft-{label[:3]}", spec, epochs=2, batch_size=args.batch_size)
            speed = float(rows[-1]["images_per_s"])  # the second epoch: no first-call warm-up
            print(f"{label:>20}: fine-tuning {speed:6.1f} images/s (fp32, batch {args.batch_size})")
            common = dict(lp_epochs=args.lp_epochs, epochs=0, batch_size=args.batch_size)
            slow, _ = run(data, tmp / f"lp-full-{label[:3]}", spec, cache_features=False, **common)
            fast, _ = run(data, tmp / f"lp-cache-{label[:3]}", spec, **common)
            print(
                f"{'':>20}  linear probe, {args.lp_epochs} epochs: forward every epoch "
                f"{slow:6.1f} s, cached features {fast:6.1f} s -> {slow / fast:4.1f}x faster"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
