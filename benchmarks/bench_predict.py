"""Prediction throughput: `Predictor` against a naive loop, and against bf16 ceilings.

    python benchmarks/bench_predict.py [--models b32,l14] [--images 64] [--naive-images 16]

For a ViT-B/32-shaped and a ViT-L/14-shaped (224 px) random CLIP vision tower with a linear head,
measured in one process on real Stable Diffusion images (the 7 competition samples, copied under
new names to make a folder):

  - naive: per image, PIL open, transformers `CLIPImageProcessor`, fp32 forward, one at a time;
  - predictor: `Predictor.predict_files` eager (`--no-compile`) and compiled (`--compile`), model
    load excluded; the job's first batch (the bf16 accuracy check, and the compile) is timed
    apart, as it is paid once per job;
  - ceilings: a bf16 matmul rate (GFLOP/s) divided by the model's GFLOP per image (counted by
    torch's FlopCounterMode: 8.7 for B/32, 156 for L/14 at 224), for three rates:
      square: large square matmuls measured here, just before and after each run (the
              strictest: 610-760 GFLOP/s on these 2 cores);
      shapes: the model's own linear layers at this batch's token count, measured here;
      issue:  the ~410 GFLOP/s the issue quotes for this machine.

Goals (issue 4, a CPU with native bf16): predictor >= 2.5x naive, and >= 70% of the ceiling; the
exit status judges the strictest (square) ceiling. Where bf16 is not native (most laptops, or the
emulation below) there is no bf16 ceiling to measure (emulated bf16 matmuls take minutes and say
nothing), and the goal is issue 35's: >= 2.0x naive.

Whole process (issue 35, `--whole-process N`, default 384 images for b32): the wall time of the
command a user runs, `img2prompt predict MODEL FOLDER --out x.npy`, against a naive script's
(import, the same model folder loaded, then the naive loop above), each a fresh process on the
same N images; goal >= 2.0x.

int8 (issue 35, `--int8`, on by default): the eager predictor at `--precision fp32` and at
`--precision int8` on the same images, in one process: the ratio of their img/s and the worst
cosine between their outputs, and what `--precision auto` chose here (its note). To see what a
CPU without native bf16 gets, run under the emulation docs/predict.md names.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SHARED_DIR, hardware_line, load_average

WHOLE_PROCESS_GOAL = 2.0
NAIVE_SCRIPT = """
import sys, torch, torch.nn.functional as F
from pathlib import Path
from PIL import Image
from transformers import CLIPImageProcessor
from img2prompt.models.model import load_model
model = load_model(sys.argv[1])
processor = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
with torch.no_grad():
    for path in sorted(Path(sys.argv[2]).iterdir()):
        pixels = processor(images=Image.open(path).convert("RGB"), return_tensors="pt")
        F.normalize(model(pixels["pixel_values"]), dim=-1)
"""
ISSUE_BF16_GFLOPS = 410.0
"""The bf16 matmul rate issue 4 quotes for this machine (2 threads here measure 650-760)."""

SHAPES = {
    # name: (hidden, intermediate, layers, heads, patch)
    "b32": (768, 3072, 12, 12, 32),
    "l14": (1024, 4096, 24, 16, 14),
}


def build_model(shape: str):
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from img2prompt.data.transforms import CLIP_MEAN, CLIP_STD, PreprocessConfig
    from img2prompt.models.backbones import HFCLIPBackbone
    from img2prompt.models.model import ImageToPromptModel, ModelConfig

    hidden, intermediate, layers, heads, patch = SHAPES[shape]
    torch.manual_seed(0)
    config = CLIPVisionConfig(
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        patch_size=patch,
        image_size=224,
    )
    backbone = HFCLIPBackbone(
        CLIPVisionModel(config), PreprocessConfig(224, 224, CLIP_MEAN, CLIP_STD, "bicubic")
    )
    return ImageToPromptModel(ModelConfig(backbone=f"hf-clip:{shape}"), backbone=backbone).eval()


def gflop_per_image(model) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(torch.zeros(1, 3, 224, 224))
    return counter.get_total_flops() / 1e9


def bf16_matmul_gflops(n: int = 2048, repeats: int = 20) -> float:
    import torch

    a = torch.randn(n, n, dtype=torch.bfloat16)
    b = torch.randn(n, n, dtype=torch.bfloat16)
    a @ b
    best = float("inf")
    for _ in range(3):  # best of three: the ceiling is what the hardware can do
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 * repeats / best / 1e9


def linear_layers_gflops(model, batch: int) -> float:
    """bf16 rate of the model's own matmuls (its nn.Linear shapes, at this batch's token count),
    weighted by their FLOPs: a second, shape-aware ceiling beside the square-matmul one."""
    import torch
    import torch.nn.functional as F

    config = model.backbone.model.config
    rows = batch * ((config.image_size // config.patch_size) ** 2 + 1)
    shapes: dict[tuple[int, int], int] = {}
    for layer in model.backbone.modules():
        if isinstance(layer, torch.nn.Linear):
            key = (layer.in_features, layer.out_features)
            shapes[key] = shapes.get(key, 0) + 1
    total_flop = total_seconds = 0.0
    with torch.inference_mode():
        for (k, n), count in shapes.items():
            x = torch.randn(rows, k, dtype=torch.bfloat16)
            w = torch.randn(n, k, dtype=torch.bfloat16)
            F.linear(x, w)
            start = time.perf_counter()
            for _ in range(3):
                F.linear(x, w)
            seconds = (time.perf_counter() - start) / 3
            total_flop += 2 * rows * k * n * count
            total_seconds += seconds * count
    return total_flop / total_seconds / 1e9


def naive_loop(model, paths: list[Path]) -> float:
    """Images per second of the loop most first attempts write."""
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from transformers import CLIPImageProcessor

    processor = CLIPImageProcessor(
        size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}
    )
    start = time.perf_counter()
    with torch.no_grad():
        for path in paths:
            image = Image.open(path).convert("RGB")
            pixels = processor(images=image, return_tensors="pt")["pixel_values"]
            F.normalize(model(pixels), dim=-1)
    return len(paths) / (time.perf_counter() - start)


def image_folder(folder: Path, n: int) -> list[Path]:
    samples = sorted((SHARED_DIR / "data" / "kaggle_sample" / "images").glob("*.png"))
    if not samples:
        raise SystemExit(f"needs the competition sample images in {SHARED_DIR}/data/kaggle_sample")
    paths = []
    for i in range(n):
        path = folder / f"{i:05d}.png"
        shutil.copyfile(samples[i % len(samples)], path)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="b32,l14")
    parser.add_argument(
        "--images", type=int, default=0, help="images for the predictor (default: 4 batches)"
    )
    parser.add_argument("--naive-images", type=int, default=16, help="images for the naive loop")
    parser.add_argument(
        "--batch-size", type=int, default=0, help="default: the predictor's own choice"
    )
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--int8", action=argparse.BooleanOptionalAction, default=True, help="int8 against fp32"
    )
    parser.add_argument(
        "--whole-process",
        type=int,
        default=384,
        help="images for the whole-process comparison (b32 only; 0: skip)",
    )
    args = parser.parse_args(argv)
    print(hardware_line())

    import torch

    from img2prompt.device import native_bf16
    from img2prompt.predict.engine import auto_batch_size

    bf16 = native_bf16("cpu")
    status = 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        print(f"load average before: {load_average()}")
        for shape in args.models.split(","):
            model = build_model(shape)
            batch = args.batch_size or auto_batch_size(model.backbone, 1, torch.device("cpu"))
            images = args.images or 4 * batch
            copies = image_folder(folder, max(images, args.naive_images))
            gflop = gflop_per_image(model)
            naive = naive_loop(model, copies[: args.naive_images])
            print(f"{shape}: {gflop:.1f} GFLOP/image | naive loop {naive:.2f} img/s", flush=True)
            for compiled in [False, True] if args.compile else [False]:
                ours = in_process(model, copies[:images], batch, compiled, naive)
                if bf16:
                    ok = against_ceilings(model, copies[:images], batch, gflop, (ours, naive))
                    status |= not ok
                else:  # no bf16 ceiling to reach: issue 35's goal against the naive loop
                    status |= ours / naive < WHOLE_PROCESS_GOAL
            if args.int8:
                int8_against_fp32(model, copies[:images], batch)
            if shape == "b32" and args.whole_process:
                status |= not whole_process(model, Path(tmp), args.whole_process)
        print(f"load average after: {load_average()}")
    return status


def in_process(model, paths: list[Path], batch: int, compiled: bool, naive: float) -> float:
    """The predictor's img/s on `paths` (its first batch timed apart), printed against `naive`."""
    from img2prompt.predict.options import PredictOptions
    from img2prompt.predict.predictor import Predictor

    predictor = Predictor(model, PredictOptions(batch_size=batch, compile=compiled))
    start = time.perf_counter()
    predictor.predict_files(paths[:batch], progress=False)
    first_batch = time.perf_counter() - start  # precision check (+ compile): once per job
    result = predictor.predict_files(paths, progress=False)
    ours = len(result.images) / result.seconds
    label = "predictor --compile" if compiled else "predictor"
    note = predictor.engine.precision_note or predictor.engine.compile_note
    print(
        f"  {label}: {ours:.2f} img/s ({result.precision}{f': {note}' if note else ''}; batch "
        f"{batch}; first batch {first_batch:.1f} s) | {ours / naive:.2f}x naive",
        flush=True,
    )
    return ours


def against_ceilings(
    model, paths: list[Path], batch: int, gflop: float, rates_seen: tuple[float, float]
) -> bool:
    """Where bf16 is native: the predictor's img/s (`rates_seen`: ours, the naive loop's)
    against the bf16 ceilings for `gflop` per image (module docstring) and issue 4's goals."""
    from img2prompt.predict.options import PredictOptions
    from img2prompt.predict.predictor import Predictor

    ours, naive = rates_seen
    # This VM's speed drifts by 10-20% within a minute: the square rate is measured twice.
    rates = {
        "square": (bf16_matmul_gflops() + bf16_matmul_gflops()) / 2,
        "shapes": linear_layers_gflops(model, batch),
        "issue": ISSUE_BF16_GFLOPS,
    }
    ceilings = {name: rate / gflop for name, rate in rates.items()}
    predictor = Predictor(model, PredictOptions(batch_size=batch, compile=False))
    crops = np.concatenate([predictor.load_views(p) for p in paths[:batch]])
    predictor.embed_crops(crops)  # the precision check
    start = time.perf_counter()
    predictor.embed_crops(crops)
    model_only = batch / (time.perf_counter() - start)
    ok = ours / naive >= 2.5 and ours / ceilings["square"] >= 0.7
    print(
        "    bf16 ceilings: "
        + ", ".join(f"{n} {rates[n]:.0f} GFLOP/s = {c:.2f} img/s" for n, c in ceilings.items())
        + " | of the ceilings (goal 70%): "
        + ", ".join(f"{name} {ours / c:.0%}" for name, c in ceilings.items())
        + f" | goal 2.5x naive: {'ok' if ok else 'MISSED'} | model alone on decoded images "
        f"{model_only:.2f} img/s = {model_only / ceilings['square']:.0%} of square",
        flush=True,
    )
    return ok


def whole_process(model, tmp: Path, n: int) -> bool:
    """`img2prompt predict` against the naive script, each a fresh process on the same `n`
    images and model folder (module docstring)."""
    from img2prompt.models.model import save_model

    model_dir = save_model(model, tmp / "model")
    images = tmp / "whole"
    images.mkdir()
    image_folder(images, n)
    commands = {
        "img2prompt predict": [
            str(Path(sys.executable).with_name("img2prompt")),
            "predict",
            str(model_dir),
            str(images),
            "--out",
            str(tmp / "whole.parquet"),
        ],
        "naive script": [sys.executable, "-c", NAIVE_SCRIPT, str(model_dir), str(images)],
    }
    seconds = {}
    for name, command in commands.items():
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        seconds[name] = time.perf_counter() - start
        if done.returncode:
            raise SystemExit(f"{name} failed:\n{done.stderr[-2000:]}")
        if name == "img2prompt predict":
            said = " ".join(done.stderr.split())  # its summary: images, rate, precision
            print(f"  whole process: {name} said: {said[-300:]}")
            if "Warning" in done.stderr:  # a library's warning reached the user
                raise SystemExit(f"{name} printed a warning:\n{done.stderr[-2000:]}")
    ratio = seconds["naive script"] / seconds["img2prompt predict"]
    ok = ratio >= WHOLE_PROCESS_GOAL
    print(
        f"  RATIO whole process, {n} images: img2prompt predict {seconds['img2prompt predict']:.1f}"
        f" s vs naive script {seconds['naive script']:.1f} s = {ratio:.2f}x faster"
        f" (goal >= {WHOLE_PROCESS_GOAL}x): {'ok' if ok else 'MISSED'}",
        flush=True,
    )
    return ok


def int8_against_fp32(model, paths: list[Path], batch: int) -> None:
    """Eager fp32 and int8 predictors on `paths` (first batch run apart), and auto's choice."""
    from img2prompt.metrics import cosines
    from img2prompt.predict.options import PredictOptions
    from img2prompt.predict.predictor import Predictor

    rates, outputs = {}, {}
    for precision in ("fp32", "int8", "fp32", "int8"):  # interleaved: this VM's speed drifts
        predictor = Predictor(
            model, PredictOptions(batch_size=batch, compile=False, precision=precision)
        )
        predictor.predict_files(paths[:batch], progress=False)
        result = predictor.predict_files(paths, progress=False)
        rates.setdefault(precision, []).append(len(result.images) / result.seconds)
        outputs[precision] = result.embeddings
    auto = Predictor(model, PredictOptions(batch_size=batch, compile=False))
    auto.predict_files(paths[:batch], progress=False)
    fp32, int8 = max(rates["fp32"]), max(rates["int8"])
    worst = float(cosines(outputs["fp32"], outputs["int8"]).min())
    print(
        f"  int8 vs fp32 (eager, best of 2 each): {int8:.2f} vs {fp32:.2f} img/s = "
        f"{int8 / fp32:.2f}x; worst cosine {worst:.5f} over {len(paths)} images | auto ran "
        f"{auto.engine.precision} ({auto.engine.precision_note or 'no note'})",
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
