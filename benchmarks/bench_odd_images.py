"""`predict default` over odd and huge image files: peak memory and images/s.

The set: every format and mode Pillow writes, broken, mislabelled and animated files, and 20
hostile headers declaring up to 84 Mpx in a few hundred bytes (BLP, DDS, FLI, TGA, PCX, SGI, PSD,
ICNS, TIFF, JPEG 2000...: `scripts/odd_images.py`), plus legal but huge strips (80 Mpx: RGB
PNG, JPEG, RGBA PNG, 16-bit PNG; the kind that once took 5.5 GB when four decoding threads held
them at once) and one over Pillow's limit.
Each run is a fresh process (its own peak memory), with 4 decoding threads:

- `bounded` (what ships): a huge file is decoded reduced toward the model's input size, and the
  threads share a pixel budget (`PixelBudget`), so a huge image decodes alone;
- `baseline`: the same code with the budget and the reduction switched off (every file decoded
  whole, as many at once as there are threads), as before.

Goal: peak <= 2 GB for `bounded`. Both runs must predict the same files and report the same bad
ones; the small files' embeddings must be equal and the huge ones' close.

    python benchmarks/bench_odd_images.py [--huge 8] [--megapixels 80] [--quick]

`--corpus DIR`: instead, `predict default` over every file under DIR, given as one list (as
`img2prompt predict default FILE...` takes them), in one fresh process with `--workers` decoding
threads (4: the most the command takes): peak memory against the same 2 GB goal, files/s, and
how many were predicted and reported bad. Pillow's own decoder test images (1,060 files of every
format, many of them fuzzers' finds) are the corpus it was written for; they are not in this
repository and nothing is copied into it. To obtain them:

    pip download pillow==<installed version> --no-binary :all: --no-deps -d /tmp/pilsrc
    tar -xzf /tmp/pilsrc/pillow-*.tar.gz -C /tmp/pilsrc
    python benchmarks/bench_odd_images.py --corpus /tmp/pilsrc/pillow-<version>/Tests/images
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import fmt_mb, hardware_line, run_isolated, verdict

GOAL_MB = 2048.0


def make_set(folder: Path, huge: int, megapixels: int) -> list[str]:
    from PIL import Image

    from odd_images import write_odd_images

    write_odd_images(folder, huge=None)
    width = 16000
    height = megapixels * 1_000_000 // width
    grey = Image.linear_gradient("L").resize((width, height))
    kinds = [  # (suffix, image): the modes that cost the most bytes a pixel to decode
        ("png", grey.convert("RGB")),
        ("jpg", grey.convert("RGB")),
        ("png", grey.convert("RGBA")),
        ("png", Image.fromarray(np.asarray(grey, np.uint16) * 257)),  # 16-bit grey
    ]
    for i in range(huge):
        suffix, strip = kinds[i % len(kinds)]
        options = {"quality": 85} if suffix == "jpg" else {"compress_level": 1}
        strip.save(folder / f"strip-{i}-{strip.mode}.{suffix}", **options)
    Image.new("L", (16000, 8000)).save(folder / "strip-over-limit.png", compress_level=1)
    return sorted(str(p) for p in folder.iterdir())


def predict(paths: list[str], bounded: bool) -> dict:
    from img2prompt.data import images
    from img2prompt.predict import reader
    from img2prompt.predict.predictor import PredictOptions, Predictor

    if not bounded:  # as before: every file decoded whole, as many at once as there are threads
        images.REDUCE_ABOVE_PIXELS = 1 << 62
        reader.DECODE_BUDGET_PIXELS = 1 << 62
    model = Predictor("default", PredictOptions(workers=4, precision="fp32"))
    result = model.predict_files(paths, progress=False)
    return {
        "images": result.images,
        "embeddings": result.embeddings,
        "failures": sorted(f.image for f in result.failures),
        "seconds": result.seconds,
    }


def predict_corpus(paths: list[str], workers: int) -> dict:
    """`predict default` over `paths` as one list, as the command runs it (precision auto)."""
    from img2prompt.predict.predictor import PredictOptions, Predictor

    model = Predictor("default", PredictOptions(workers=workers))
    result = model.predict_files(paths, progress=False)
    return {"predicted": len(result.images), "bad": len(result.failures), "seconds": result.seconds}


def run_corpus(folder: Path, workers: int) -> int:
    """The `--corpus` run: 0 when the peak is within the goal, 1 when not, 2 without a corpus."""
    if not folder.is_dir():
        print(
            f"error: no corpus folder {folder}: get Pillow's test images with `pip download "
            "pillow==<version> --no-binary :all: --no-deps`, extract them and pass their "
            "Tests/images folder (this script's docstring says how)",
            file=sys.stderr,
        )
        return 2
    paths = sorted(str(p) for p in folder.rglob("*") if p.is_file())
    print(f"== predict default over {len(paths):,} files under {folder}, as one list ==")
    print(f"  {hardware_line()}")
    run = run_isolated(predict_corpus, paths=paths, workers=workers)
    r = run.result
    print(
        f"  peak {fmt_mb(run.peak_rss_mb)} (goal {GOAL_MB:.0f} MB), {workers} decoding threads; "
        f"{len(paths) / r['seconds']:.1f} files/s, {r['seconds']:.1f} s; "
        f"{r['predicted']:,} predicted, {r['bad']:,} reported bad"
    )
    ok = run.peak_rss_mb <= GOAL_MB and r["predicted"] + r["bad"] == len(paths)
    print(f"  goal: peak <= {GOAL_MB:.0f} MB, every file predicted or reported: {verdict(ok)}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--huge", type=int, default=8, help="huge strips (RGB PNG, JPEG, RGBA PNG, 16-bit PNG)"
    )
    p.add_argument("--megapixels", type=int, default=80, help="size of each strip")
    p.add_argument("--quick", action="store_true", help="2 strips")
    p.add_argument("--corpus", type=Path, help="instead: every file under this folder")
    p.add_argument("--workers", type=int, default=4, help="decoding threads (--corpus)")
    args = p.parse_args(argv)
    if args.corpus is not None:
        return run_corpus(args.corpus, args.workers)
    huge = 2 if args.quick else args.huge
    print(f"== predict default over odd files + {huge} strips of {args.megapixels} Mpx ==")
    print(f"  {hardware_line()}")
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_set(Path(tmp), huge, args.megapixels)
        runs = {}
        for name, bounded in (("baseline", False), ("bounded", True)):
            runs[name] = run_isolated(predict, paths=paths, bounded=bounded)
    base, new = runs["baseline"], runs["bounded"]
    for name, run in runs.items():
        r = run.result
        rate = len(paths) / r["seconds"]
        print(
            f"  {name:9s} peak {fmt_mb(run.peak_rss_mb):>10s}  {rate:6.1f} files/s  "
            f"({len(r['images'])} predicted, {len(r['failures'])} bad, {r['seconds']:.1f} s)"
        )
    same_files = base.result["images"] == new.result["images"]
    same_bad = base.result["failures"] == new.result["failures"]
    cosines = np.sum(base.result["embeddings"] * new.result["embeddings"], axis=1)
    small = [i for i, p in enumerate(new.result["images"]) if "strip" not in Path(p).name]
    exact_small = bool(np.allclose(cosines[small], 1.0, atol=1e-5))
    print(f"  peak memory: {new.peak_rss_mb / base.peak_rss_mb:.2f}x the baseline's")
    print(f"  speed: {base.result['seconds'] / new.result['seconds']:.2f}x the baseline's")
    print(f"  same files predicted and reported bad: {same_files and same_bad}")
    print(f"  small files' embeddings equal: {exact_small}; lowest cosine {cosines.min():.4f}")
    ok = new.peak_rss_mb <= GOAL_MB and same_files and same_bad and exact_small
    ok = ok and float(cosines.min()) > 0.98
    print(f"  goal: peak <= {GOAL_MB:.0f} MB with the same answers: {verdict(ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
