"""Run every benchmark: `python benchmarks/run_all.py [--quick]` (what `make bench` calls).

Full sizes take a while on a small machine (the 1M-row approximate and 200k-row exact
de-duplication take minutes each, as does bench_index's 1M-row search, and bench_decode builds
a 225k-phrase bank once); `--quick` uses small sizes and finishes in a few minutes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_decode
import bench_dedup
import bench_default_model
import bench_embed
import bench_generate
import bench_index
import bench_metadata
import bench_odd_images
import bench_predict
import bench_recipes
import bench_serve
import bench_startup
import bench_train

QUICK_GENERATE = ["--images", "16"]
QUICK_TRAIN = ["--images", "32", "--lp-epochs", "3"]
# The default bank only: the shared-data bank takes minutes to build the first time.
QUICK_DECODE = ["--no-big-bank", "--repeats", "1"]
QUICK_PREDICT = ["--images", "64", "--naive-images", "8", "--no-compile", "--whole-process", "64"]
QUICK_SERVE = ["--requests", "80", "--baseline-requests", "16"]
QUICK_INDEX = ["--n", "100000", "--hnsw-n", "20000", "--texts", "500", "--queries", "100"]
QUICK_EMBED = ["--n-prompts", "300", "--naive-n", "60", "--repeats", "1"]
# One cluster just over the seed method's k=5000, so its k limit still bites at n=20000.
QUICK_DEDUP = [
    "--n",
    "20000",
    "--approx-n",
    "100000",
    "--no-exact-200k",
    "--clusters",
    "1",
    "--cluster-size",
    "5500",
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes, about a minute")
    args = p.parse_args(argv)
    started = time.perf_counter()
    status = bench_embed.main(QUICK_EMBED if args.quick else [])
    print(flush=True)
    status |= bench_dedup.main(QUICK_DEDUP if args.quick else [])
    print(flush=True)
    status |= bench_generate.main(QUICK_GENERATE if args.quick else [])
    print(flush=True)
    status |= bench_train.main(QUICK_TRAIN if args.quick else [])
    print(flush=True)
    status |= bench_decode.main(QUICK_DECODE if args.quick else [])
    print(flush=True)
    status |= bench_predict.main(QUICK_PREDICT if args.quick else [])
    print(flush=True)
    status |= bench_startup.main(["--repeats", "1"] if args.quick else [])
    print(flush=True)
    # real_pairs' 1,161 images take minutes: full runs only.
    status |= bench_default_model.main(["--no-real-pairs"] if args.quick else [])
    print(flush=True)
    status |= bench_serve.main(QUICK_SERVE if args.quick else [])
    print(flush=True)
    status |= bench_index.main(QUICK_INDEX if args.quick else [])
    print(flush=True)
    status |= bench_odd_images.main(["--quick"] if args.quick else [])
    print(flush=True)
    status |= bench_metadata.main(["--repeats", "3"] if args.quick else [])
    if not args.quick:  # about an hour on a 2-core CPU (frozen features, then 5 fine-tunes)
        print(flush=True)
        status |= bench_recipes.main([])
    print(f"\nall benchmarks done in {time.perf_counter() - started:.0f} s", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
