"""Target-embedding throughput (prompts/s) of `TargetEncoder` against naive baselines.

    python benchmarks/bench_embed.py [--n-prompts 2000] [--naive-n 200] [--batch-size 32]

Prompts are built from ../shared/data/prompt_banks (subjects + mediums + flavors, sometimes an
artist), 5-40 words each like real Stable Diffusion prompts. Measured in the same process:

  - `TargetEncoder.encode(texts, batch_size)`: one call; sentence-transformers sorts by length
    inside it, so batches hold texts of similar length;
  - baseline 1, the naive loop: one `model.encode([text], batch_size=1)` call per prompt;
  - baseline 2, unsorted batches: one `model.encode(chunk)` call per chunk of `batch_size`
    prompts in shuffled order, so each batch is padded to its longest prompt;
  - `embed_texts` with an empty cache, then again with the cache filled.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SHARED_DIR, Timer, peak_rss_mb

BANKS = SHARED_DIR / "data" / "prompt_banks"


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def build_prompts(n: int, seed: int = 0, min_words: int = 5, max_words: int = 40) -> list[str]:
    """`n` distinct prompts like "a watercolor painting of <subject>, by <artist>, <flavor>, ..."
    with a word count drawn uniformly from [min_words, max_words]."""
    rng = np.random.default_rng(seed)
    subjects = json.loads((BANKS / "magicprompt_subjects.json").read_text(encoding="utf-8"))
    flavors = _lines(BANKS / "flavors.txt")[:20_000]  # the common end of the list
    mediums = _lines(BANKS / "mediums.txt")
    artists_path = BANKS / "artists.txt"
    artists = _lines(artists_path) if artists_path.exists() else []
    prompts: list[str] = []
    seen: set[str] = set()
    while len(prompts) < n:
        target = int(rng.integers(min_words, max_words + 1))
        subject = subjects[int(rng.integers(len(subjects)))]
        parts = [subject]
        if rng.random() < 0.6:
            parts = [f"{mediums[int(rng.integers(len(mediums)))]} of {subject}"]
        if artists and rng.random() < 0.5:
            parts.append(f"by {artists[int(rng.integers(len(artists)))]}")
        words = sum(len(p.split()) for p in parts)
        while words < target:
            flavor = flavors[int(rng.integers(len(flavors)))]
            parts.append(flavor)
            words += len(flavor.split())
        text = " ".join(", ".join(parts).split()[:target])
        if text not in seen:
            seen.add(text)
            prompts.append(text)
    return prompts


def _report(label: str, n: int, seconds: float) -> None:
    print(f"  {label:<50} {n / seconds:>10,.1f} prompts/s  ({n:,} in {seconds:.3f} s)", flush=True)


def best_of(repeats: int, fn: Callable[[], object]) -> tuple[float, object]:
    """Shortest wall time of `repeats` calls (other work on the machine only ever adds time),
    and the result of the last call."""
    best, result = math.inf, None
    for _ in range(max(1, repeats)):
        with Timer() as timer:
            result = fn()
        best = min(best, timer.seconds)
    return best, result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n-prompts", type=int, default=2000)
    p.add_argument("--naive-n", type=int, default=200, help="prompts for the one-at-a-time loop")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--repeats", type=int, default=2, help="timings are the best of this many")
    p.add_argument(
        "--sweep",
        type=int,
        nargs="*",
        default=[],
        metavar="BATCH",
        help="also time TargetEncoder.encode at these batch sizes (e.g. --sweep 8 32 128 512)",
    )
    args = p.parse_args(argv)

    print("== bench_embed: target embeddings (MiniLM) ==", flush=True)
    if not BANKS.is_dir():
        print(f"  SKIPPED: prompt banks not found at {BANKS} (../shared beside the repo root)")
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import torch
    from transformers.utils import logging as hf_logging

    from img2prompt.metrics import cosines
    from img2prompt.targets.encoder import TargetEncoder, embed_texts

    hf_logging.disable_progress_bar()

    texts = build_prompts(args.n_prompts)
    words = np.array([len(t.split()) for t in texts])
    with Timer() as load:
        encoder = TargetEncoder(device=args.device)
    tokens = np.array([len(ids) for ids in encoder.tokenizer(texts)["input_ids"]])
    print(
        f"  {len(texts):,} prompts from {BANKS}: words min/median/max"
        f" {words.min()}/{int(np.median(words))}/{words.max()};"
        f" tokens min/median/max {tokens.min()}/{int(np.median(tokens))}/{tokens.max()}"
        f" (max_seq_length {encoder.max_seq_length})",
        flush=True,
    )
    print(
        f"  device {encoder.device}, torch {torch.__version__} ({torch.get_num_threads()} threads),"
        f" {os.cpu_count()} CPUs; encoder loaded in {load.seconds:.2f} s;"
        f" batch size {args.batch_size}; timings are the best of {args.repeats} runs",
        flush=True,
    )
    # The baselines call sentence-transformers itself, as a user without this package would.
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(encoder.location, device=encoder.device)
    options = {"convert_to_numpy": True, "normalize_embeddings": True, "show_progress_bar": False}
    encoder.encode(texts[:64], batch_size=args.batch_size)  # warm-up

    repeats = args.repeats
    fast, vectors = best_of(repeats, lambda: encoder.encode(texts, batch_size=args.batch_size))
    _report("TargetEncoder.encode (one call, sorted by length)", len(texts), fast)

    naive_texts = texts[: args.naive_n]
    naive, naive_vectors = best_of(
        repeats,
        lambda: np.stack([model.encode([t], batch_size=1, **options)[0] for t in naive_texts]),
    )
    _report("baseline 1: one prompt per call (batch_size=1)", len(naive_texts), naive)

    shuffled = list(texts)
    np.random.default_rng(1).shuffle(shuffled)
    chunks = [shuffled[i : i + args.batch_size] for i in range(0, len(shuffled), args.batch_size)]
    unsorted, _ = best_of(
        repeats, lambda: [model.encode(c, batch_size=args.batch_size, **options) for c in chunks]
    )
    _report(f"baseline 2: unsorted batches of {args.batch_size}", len(shuffled), unsorted)

    fast_rate = len(texts) / fast
    cos = cosines(vectors[: len(naive_texts)], naive_vectors)
    print(
        f"  RATIO encode / one-per-call: {fast_rate / (len(naive_texts) / naive):.2f}x;"
        f" encode / unsorted batches: {fast_rate / (len(shuffled) / unsorted):.2f}x"
        f" (same vectors: min cosine {cos.min():.6f}, max |diff|"
        f" {np.abs(vectors[: len(naive_texts)] - naive_vectors).max():.2e})",
        flush=True,
    )

    def cold_run() -> np.ndarray:
        with tempfile.TemporaryDirectory(prefix="bench-embed-cache-") as empty:
            return embed_texts(
                texts, encoder, cache_dir=empty, batch_size=args.batch_size, progress=False
            )

    with tempfile.TemporaryDirectory(prefix="bench-embed-cache-") as cache_dir:
        cold, first = best_of(repeats, cold_run)
        embed_texts(texts, encoder, cache_dir=cache_dir, batch_size=args.batch_size, progress=False)
        files = sorted(p.name for p in Path(cache_dir).rglob("*.npz"))
        warm, second = best_of(
            repeats,
            lambda: embed_texts(
                texts, encoder, cache_dir=cache_dir, batch_size=args.batch_size, progress=False
            ),
        )
    _report("embed_texts, empty cache", len(texts), cold)
    _report(f"embed_texts, cache full ({len(files)} chunk files)", len(texts), warm)
    print(
        f"  RATIO embed_texts cached / uncached: {cold / warm:,.0f}x faster;"
        f" cached result identical: {bool(np.array_equal(first, second))};"
        f" equal to encode(): max |diff| {np.abs(first - vectors).max():.2e}",
        flush=True,
    )
    for size in args.sweep:
        seconds, _ = best_of(repeats, lambda size=size: encoder.encode(texts, batch_size=size))
        _report(f"sweep: TargetEncoder.encode, batch_size={size}", len(texts), seconds)
    print(f"  peak RSS of this process: {peak_rss_mb():,.0f} MiB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
