"""Image generation throughput (images/s) with the tiny random Stable Diffusion pipeline on CPU.

    python benchmarks/bench_generate.py [--images 24] [--batch-size 8] [--steps 10] [--size 64]

No real SD weights can be downloaded here, so this measures the machinery, not SD itself: the
pipeline is `scripts/tiny_pipeline.py` (same classes as SD, ~1M UNet parameters), loaded from a
folder like a real checkpoint. Measured in the same process:

  - baseline, one image per pipeline call (`render` with batch size 1);
  - `render` with `--batch-size` images per call (one generator per image);
  - the whole `generate` run (shards, PNG files, index) at that batch size, so the cost of the
    command around the pipeline shows.

Real SD 2 at 768 px on a GPU is a different regime (the UNet dominates); its throughput is not
measured here.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Timer, load_average, peak_rss_mb

WORDS = [
    "a",
    "red",
    "cat",
    "sitting",
    "on",
    "the",
    "wooden",
    "chair",
    "lighthouse",
    "at",
    "sunset",
    "oil",
    "painting",
]


def _prompts(n: int) -> list[str]:
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(4, 12)))) for _ in range(n)]


def _report(label: str, n: int, seconds: float) -> float:
    rate = n / seconds
    print(f"  {label:<52} {rate:>8,.2f} images/s  ({n} in {seconds:.2f} s)", flush=True)
    return rate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--scheduler", default="dpm++")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads; 1 by default: on a small machine shared with other work, two "
        "OpenMP threads ran this tiny model up to 100x slower (spinning on each other)",
    )
    args = p.parse_args(argv)

    print("== bench_generate: tiny Stable Diffusion pipeline on CPU ==", flush=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from img2prompt.generate.options import GenerateConfig
    from img2prompt.generate.run import generate
    from img2prompt.generate.sd import load_pipeline, render
    from tiny_pipeline import build_tiny_pipeline

    torch.set_num_threads(args.threads)
    texts = _prompts(args.images)
    seeds = list(range(args.images))
    with tempfile.TemporaryDirectory(prefix="bench-generate-") as tmp:
        model = build_tiny_pipeline(Path(tmp) / "model", WORDS)
        with Timer() as load:
            pipe = load_pipeline(str(model), args.scheduler, torch.device("cpu"), torch.float32)
        print(
            f"  {args.images} images, {args.size} px, {args.steps} {args.scheduler} steps, "
            f"guidance 7; torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
            f"{os.cpu_count()} CPUs, load {load_average()}; pipeline loaded in "
            f"{load.seconds:.2f} s",
            flush=True,
        )

        def run(batch_size: int) -> float:
            with Timer() as timer:
                for start in range(0, len(texts), batch_size):
                    stop = start + batch_size
                    render(
                        pipe,
                        texts[start:stop],
                        seeds[start:stop],
                        steps=args.steps,
                        guidance=7.0,
                        size=args.size,
                    )
            return timer.seconds

        run(args.batch_size)  # warm-up: first calls pay for kernel setup
        single = _report("baseline: render, 1 image per call", args.images, run(1))
        batched = _report(
            f"render, {args.batch_size} images per call", args.images, run(args.batch_size)
        )

        prompts_file = Path(tmp) / "prompts.parquet"
        ids = [f"p{i}" for i in range(args.images)]
        pq.write_table(pa.table({"id": ids, "prompt": texts}), prompts_file)
        cfg = GenerateConfig(
            prompts=prompts_file,
            out=Path(tmp) / "out",
            model=str(model),
            steps=args.steps,
            size=args.size,
            save_size=args.size,
            scheduler=args.scheduler,
            batch_size=args.batch_size,
            shard_size=max(args.batch_size, args.images // 4),
            device="cpu",
        )
        with Timer() as whole:
            report = generate(cfg, progress=False)
        command = _report(
            f"generate (load, {report.shards} shards, PNGs, index)", args.images, whole.seconds
        )
    print(
        f"  RATIO batch {args.batch_size} / single: {batched / single:.2f}x;"
        f" generate command / bare batched render: {command / batched:.2f}x"
        f" (includes loading the pipeline again)",
        flush=True,
    )
    print(f"  peak RSS of this process: {peak_rss_mb():,.0f} MiB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
