"""Readable prompts for real predictions, not round trips: the default model predicts the
embedding of one image per real_pairs prompt, `best` decodes it, and the decoded prompt is
scored against the TRUE prompt (MiniLM cosine), beside its length.

A weak model's prediction is vague (a blend of many subjects); a round trip measures how well the
decoder spells a sharp target, this measures whether spelling out a vague one in more phrases
says more about the image. The prompts are halved by the hash bench_decode uses: `--half dev` is
where choices are made, `--half held-out` is only measured.

    python benchmarks/bench_vague_predictions.py --half held-out --min-gain 0,0.005
"""

from __future__ import annotations

import argparse
import csv
import time

import numpy as np

import img2prompt
from bench_decode import REAL_PAIRS, _hash_half
from img2prompt.data.clean import clean_prompt
from img2prompt.targets.encoder import load_encoder
from img2prompt.text.bank import open_bank
from img2prompt.text.decode import DecodeOptions, Decoder


def image_per_prompt(half: str, limit: int) -> tuple[list[str], list[str]]:
    """(prompts, the first image of each), `half` of real_pairs' distinct prompts."""
    first: dict[str, str] = {}
    with open(REAL_PAIRS, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            prompt = clean_prompt(row["prompt"])
            if prompt and prompt not in first:
                first[prompt] = str(REAL_PAIRS.parent / row["image"])
    prompts = sorted(p for p in first if (_hash_half(p) == 0) == (half == "dev"))[:limit]
    return prompts, [first[p] for p in prompts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--half", choices=("dev", "held-out"), default="dev")
    parser.add_argument("--min-gain", default="0,0.005", help="comma-separated values")
    parser.add_argument("--limit", type=int, default=80, help="prompts (one image each)")
    parser.add_argument("--show", type=int, default=6, help="prompts printed per setting")
    args = parser.parse_args()

    prompts, images = image_per_prompt(args.half, args.limit)
    predictions = img2prompt.load_model("default").predict(images)
    encoder = load_encoder(device="cpu")
    truth = encoder.encode(prompts)
    bank = open_bank("default", encoder, progress=False)
    print(
        f"{len(prompts)} {args.half} prompts; prediction~truth cosine "
        f"{np.mean(np.sum(predictions * truth, axis=1)):.4f}"
    )
    for gain in (float(g) for g in args.min_gain.split(",")):
        decoder = Decoder(bank, encoder, DecodeOptions(mode="best", min_gain=gain))
        started = time.perf_counter()
        decoded = decoder.decode(predictions)
        seconds = (time.perf_counter() - started) / len(decoded)
        texts = [d.prompt for d in decoded]
        to_truth = np.sum(encoder.encode(texts) * truth, axis=1)
        print(
            f"--min-gain {gain}: match {np.mean([d.match for d in decoded]):.4f}, "
            f"cosine to the true prompt {to_truth.mean():.4f}, "
            f"phrases {np.mean([len(d.phrases) for d in decoded]):.2f}, "
            f"words {np.mean([len(t.split()) for t in texts]):.1f}, {seconds:.2f} s/prompt"
        )
        for prompt, text in list(zip(prompts, texts, strict=True))[: args.show]:
            print(f"    {text}    <- {prompt[:70]}")


if __name__ == "__main__":
    main()
