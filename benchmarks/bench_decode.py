"""Readable prompts: round-trip quality and speed of `decode --mode fast|best`.

    python benchmarks/bench_decode.py --real-pairs --half held-out --no-big-bank   # the figure
    python benchmarks/bench_decode.py [--big-bank /tmp/img2prompt-bank225k] [--repeats 2]

Each prompt is embedded with MiniLM, decoded back into a prompt, and scored by the cosine between
the decoded prompt's own MiniLM vector and the original's. Without `--real-pairs` the prompts are
Kaggle's 7 sample prompts and 30 written for this benchmark: the default bank was written with
them in view, so that run is a training score. Two banks:

  - the packaged default bank (its phrase lists, template phrases and English dictionary);
  - a bank of every list in ../shared/data/prompt_banks (~225k entries and their single words),
    built once into --big-bank (minutes on a CPU; embeddings are cached) and reused.

Baseline, measured in the same run: the nearest bank entry alone (what a nearest-neighbor lookup
would print). Times are per prompt, decoding all prompts in one call; the median of --repeats runs.

`--real-pairs` decodes instead the distinct prompts of ../shared/data/real_pairs (real SD prompts:
styled ones and DrawBench captions), cleaned as `data prepare` cleans them. They are the
development set: `--half dev` (about half, by a hash of the prompt) is where decoding was tuned,
`--half held-out` the other half, never used for choices. Readability, printed beside every
cosine: `real words` is the share of output words found in an English word list
(pyspellchecker's, a dev dependency) or in the bank's own written phrase lists (names and terms
such as "artstation", "rutkowski"); the words found in neither are listed (fragments would show
there); `repeats` is the share of prompts that say a content word twice, `in another form` the
share that say one twice in two forms ("lights, lighting", "a cow, cowed"; by the suffix rule of
`_word_root` here, written apart from the library's own).
Start-up: loading the encoder and the (already embedded) default bank, and the first decode.

Each mode's line names the search precision that ran (`--search-precision`, default auto: bf16
where native, else int8 where it passes its check). `--int8-vs-fp32` also decodes with the
search at fp32 and at int8 in the same process and prints their time ratio, round-trip
difference and the worst cosine between int8 and fp32 encodes of the bank's check texts: run it
under the emulation docs/readable-prompts.md names to see a CPU without native bf16.
"""

from __future__ import annotations

import argparse
import collections
import csv
import gzip
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SHARED_DIR, cpu_seconds, hardware_line, load_average, verdict

BANKS = SHARED_DIR / "data" / "prompt_banks"
KAGGLE_PROMPTS = SHARED_DIR / "data" / "kaggle_sample" / "prompts.csv"
GOALS = {"best": (0.91, 0.5), "fast": (0.85, 0.020), "max": (0.92, 0.5)}
"""Per mode: mean round-trip cosine at least, seconds a prompt at most (the seconds on a CPU with
native bfloat16)."""
UNSEEN_GOAL = 1.25
"""Readable modes: share of words never seen in real prompts at most this times the truth's."""
STARTUP_GOAL = 5.0  # seconds: encoder and cached default bank loaded, first prompt decoded

# Real-looking Stable Diffusion prompts written for this benchmark (not in any bank).
OWN_PROMPTS = [
    "a cozy reading nook by a rainy window, warm lamp light, watercolor illustration",
    "portrait of an elderly fisherman with a weathered face, dramatic side lighting, 85mm photo",
    "a red fox sleeping in a snowy pine forest at dawn, soft pastel colors",
    "cyberpunk street market at night, neon signs reflected in puddles, cinematic, highly detailed",
    "an astronaut riding a horse on the surface of mars, digital art, trending on artstation",
    "a bowl of steaming ramen on a wooden table, food photography, shallow depth of field",
    "ancient stone temple overgrown with vines in a misty jungle, matte painting",
    "a tiny robot watering a potted plant on a windowsill, pixar style 3d render",
    "medieval knight in shining armor before a huge dragon, oil painting by frank frazetta",
    "a lighthouse on a rocky cliff during a violent storm, crashing waves, dark moody sky",
    "a cute corgi wearing sunglasses on a beach, summer vibes, photo",
    "a floating island with waterfalls and castles in the clouds, fantasy concept art",
    "minimalist poster of a mountain range at sunset, flat vector illustration, orange and purple",
    "a steampunk airship flying over a victorian city, intricate brass details, sepia tones",
    "close-up of a dew covered spider web at sunrise, macro photography",
    "a witch brewing a glowing potion in a dark cottage, candlelight, storybook illustration",
    "an abandoned amusement park overgrown with weeds, eerie atmosphere, film photograph",
    "a giant sea turtle swimming through a coral reef, sunbeams underwater, national geographic",
    "a samurai standing in a field of red spider lilies, ukiyo-e woodblock print",
    "an old library with endless bookshelves and spiral staircases, warm golden light",
    "a futuristic sports car parked in a glass garage, studio lighting, octane render",
    "a child flying a kite on a windy hill, impressionist painting, vibrant colors",
    "a snowy cabin in the mountains at night under the northern lights",
    "a portrait of a cat dressed as a renaissance nobleman, oil on canvas",
    "a bustling tokyo street in the rain, people with umbrellas, blade runner style",
    "an owl perched on a branch under a full moon, detailed pencil drawing",
    "a chef plating a gourmet dessert in a busy restaurant kitchen, candid photo",
    "a desert caravan of camels crossing golden dunes at sunset, wide angle",
    "a mermaid sitting on a rock by the sea, art nouveau style by alphonse mucha",
    "an isometric cutaway of a cozy coffee shop, low poly, soft colors",
]


REAL_PAIRS = SHARED_DIR / "data" / "real_pairs" / "pairs.csv"
WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# Words whose repetition is grammar, not redundancy.
FUNCTION_WORDS = frozenset(
    {"a", "an", "the", "of", "in", "on", "at", "by", "with", "and", "or", "to", "for", "from"}
)


def real_pair_prompts(half: str) -> list[str]:
    from img2prompt.data.clean import clean_prompt

    with open(REAL_PAIRS, newline="", encoding="utf-8") as f:
        prompts = sorted({clean_prompt(row["prompt"]) for row in csv.DictReader(f)} - {""})
    if half == "all":
        return prompts
    return [p for p in prompts if (_hash_half(p) == 0) == (half == "dev")]


def _hash_half(prompt: str) -> int:
    return hashlib.blake2b(prompt.encode("utf-8"), digest_size=4).digest()[0] % 2


def english_words() -> set[str]:
    """pyspellchecker's English list (~160k words), or nothing where it is not installed."""
    try:
        source = resources.files("spellchecker") / "resources" / "en.json.gz"
        return set(json.loads(gzip.decompress(source.read_bytes())))
    except (ImportError, FileNotFoundError):
        return set()


def written_words(bank) -> set[str]:
    """Words of the bank's written phrase lists (not its dictionary or encoder vocabulary)."""
    generated = {"dictionary", "vocabulary", "flavors"}  # flavors: mined, not written
    words: set[str] = set()
    for text, category in zip(bank.texts, bank.categories, strict=True):
        if category not in generated:
            words.update(WORD.findall(text.lower()))
    return words


def _word_root(word: str) -> str:
    """A crude root: one of a few suffixes and a final "e" taken off ("lighting", "lights" ->
    "light"; "cowed" -> "cow"; "curving", "curved" -> "curv")."""
    for suffix in ("ings", "ing", "ers", "er", "ed", "es", "s", "d"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)].rstrip("e")
    return word.rstrip("e") if len(word) > 3 else word


LOWER_WORD = re.compile(r"[a-z]+")


def prompt_corpora(held_out: set[str]) -> dict[str, set[str]]:
    """Words of real prompts, to tell prompt vocabulary from filler, `held_out` prompts left out:
    `independent` (DiffusionDB's phrase tree, MagicPrompt's subjects, the other real_pairs
    prompts: nothing the packaged bank is built from, but only ~5k words, so everyday words go
    unseen too) and `+ public lists` (adds CLIP Interrogator's lists, mined from real prompts;
    the packaged bank draws on them, so a phrase from its flavors is never unseen there: what
    that corpus catches is dictionary filler)."""
    words: set[str] = set()

    def walk(node: dict) -> None:
        words.update(LOWER_WORD.findall(node.get("n", "")))
        for child in node.get("c", []):
            walk(child)

    walk(json.loads((BANKS / "ddb_phrases_tree.json").read_text(encoding="utf-8")))
    for subject in json.loads((BANKS / "magicprompt_subjects.json").read_text(encoding="utf-8")):
        words.update(LOWER_WORD.findall(subject.lower()))
    if REAL_PAIRS.is_file():
        for prompt in set(real_pair_prompts("all")) - held_out:
            words.update(LOWER_WORD.findall(prompt))
    public = set(words)
    for name in ("flavors.txt", "artists.txt", "mediums.txt", "movements.txt"):
        public.update(LOWER_WORD.findall((BANKS / name).read_text(encoding="utf-8").lower()))
    return {"independent": words, "+ public lists": public}


def unseen_share(prompts: list[str], corpus: set[str]) -> float:
    """Share of the words written in lower case (two letters or more) that `corpus` lacks."""
    words = [w for p in prompts for w in LOWER_WORD.findall(p) if len(w) > 1]
    return sum(w not in corpus for w in words) / max(len(words), 1)


def unsafe_words(outputs: list[str], truths: list[str]) -> int:
    """Safety-list words (better-profanity's list) an output says that its true prompt does not."""
    from img2prompt.text.compose import safety_words

    listed = safety_words()
    return sum(
        len((set(LOWER_WORD.findall(o.lower())) & listed) - set(LOWER_WORD.findall(t.lower())))
        for o, t in zip(outputs, truths, strict=True)
    )


def readability(prompts: list[str], known: set[str]) -> dict:
    """Share of real words (numbers such as "4k", "1960s" count as real); prompts with
    repeats, and with a word said twice in two forms."""
    words = [w for p in prompts for w in WORD.findall(p.lower())]
    unknown = collections.Counter(w for w in words if w not in known and not w[0].isdigit())
    repeats = inflected = 0
    for prompt in prompts:
        content = [w for w in WORD.findall(prompt.lower()) if w not in FUNCTION_WORDS]
        repeats += len(content) != len(set(content))
        forms: dict[str, set[str]] = collections.defaultdict(set)
        for word in content:
            forms[_word_root(word)].add(word)
        inflected += any(len(f) > 1 for f in forms.values())
    n = max(len(words), 1)
    return {
        "real": 1 - unknown.total() / n,
        "repeats": repeats / max(len(prompts), 1),
        "inflected": inflected / max(len(prompts), 1),
        "top_unknown": unknown.most_common(12),
    }


STARTUP_SCRIPT = """
import numpy as np
from img2prompt.targets.encoder import load_encoder
from img2prompt.text.bank import default_bank
from img2prompt.text.decode import DecodeOptions, Decoder
encoder = load_encoder(device="cpu")
target = encoder.encode(["a red fox in the snow, watercolor"])
Decoder(default_bank(encoder), encoder, DecodeOptions(mode="fast")).decode(target)
"""


def measure_startup() -> float:
    """Seconds a fresh interpreter takes to decode its first prompt (bank already embedded)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", STARTUP_SCRIPT], check=True)
    return time.perf_counter() - start


def benchmark_prompts() -> list[str]:
    with open(KAGGLE_PROMPTS, newline="", encoding="utf-8") as f:
        kaggle = [row["prompt"] for row in csv.DictReader(f)]
    return kaggle + OWN_PROMPTS


def ensure_big_bank(path: Path, encoder) -> Path:
    from img2prompt.text.bank import MANIFEST_FILE, build_bank

    if not (path / MANIFEST_FILE).is_file():
        print(f"  building the shared-data bank into {path} (once; minutes on a CPU)", flush=True)
        files = sorted(p for p in BANKS.iterdir() if p.suffix in (".txt", ".json"))
        build_bank(files, path, encoder, progress=True)
    return path


def measure(
    bank,
    encoder,
    targets,
    prompts,
    mode: str,
    repeats: int,
    known: set[str],
    corpora: dict,
    *,
    precision: str = "auto",
) -> dict:
    from img2prompt.text.bank import entry_key
    from img2prompt.text.decode import DecodeOptions, Decoder

    seconds, cpu, decoded, encodes = [], [], None, 0
    for _ in range(max(1, repeats)):
        decoder = Decoder(bank, encoder, DecodeOptions(mode=mode, search_precision=precision))
        start, start_cpu = time.perf_counter(), cpu_seconds()
        decoded = decoder.decode(targets)
        seconds.append((time.perf_counter() - start) / len(targets))
        cpu.append((cpu_seconds() - start_cpu) / len(targets))
        encodes = decoder.encodes / len(targets)
    assert decoded is not None
    scores = np.array([d.match for d in decoded])
    words = [len(d.prompt.split()) for d in decoded]
    repeats_ok = all(len({entry_key(p) for p in d.phrases}) == len(d.phrases) for d in decoded)
    outputs = [d.prompt for d in decoded]
    return {
        "readability": readability(outputs, known),
        "unseen": {name: unseen_share(outputs, words) for name, words in corpora.items()},
        "unsafe": unsafe_words(outputs, prompts),
        "mode": mode,
        "precision": decoder.scorer.search_precision,
        "note": decoder.scorer.search_note,
        "mean": float(scores.mean()),
        "min": float(scores.min()),
        "seconds": statistics.median(seconds),
        "all_seconds": seconds,
        "cpu": statistics.median(cpu),
        "encodes": encodes,
        "max_words": max(words),
        "no_repeats": repeats_ok,
        "examples": [
            (prompts[i], decoded[i].prompt, decoded[i].match) for i in range(len(prompts))
        ],
    }


def int8_against_fp32(bank, encoder, targets, prompts, repeats: int) -> None:
    """fast and best with the search at fp32 and at int8, in this process: time ratio, round
    trip, and the worst cosine of int8 to fp32 encodes of the bank's check texts."""
    from img2prompt.metrics import cosines
    from img2prompt.text.scorer import check_texts

    texts = check_texts(bank.texts)
    exact = encoder.encode(texts)
    worst = float(cosines(exact, encoder.encode_with_norms(texts, int8=True)[0]).min())
    for mode in ("fast", "best"):
        r = {
            p: measure(bank, encoder, targets, prompts, mode, repeats, set(), {}, precision=p)
            for p in ("fp32", "int8")
        }
        fp32, int8 = r["fp32"], r["int8"]
        print(
            f"  RATIO {mode} int8 / fp32 search: {int8['seconds'] / fp32['seconds']:.2f}x time"
            f" ({int8['seconds']:.3f} vs {fp32['seconds']:.3f} s/prompt); round trip"
            f" {int8['mean']:.4f} vs {fp32['mean']:.4f} ({int8['mean'] - fp32['mean']:+.4f});"
            f" worst int8 cosine to fp32 on {len(texts)} check texts {worst:.5f}",
            flush=True,
        )


def run_bank(
    name: str, bank, encoder, prompts: list[str], repeats: int, show: int, precision: str = "auto"
) -> int:
    from img2prompt.text.bank import entry_key

    keys = {entry_key(t) for t in bank.texts}
    known = english_words() | written_words(bank)
    inside = sum(entry_key(p) in keys for p in prompts)
    targets = encoder.encode(prompts)
    nearest, _ = bank.search(targets, 1)
    baseline = float(nearest[:, 0].mean())
    print(
        f"  [{name}] {len(bank):,} entries; {len(prompts)} prompts, {inside} of them in the bank;"
        f" baseline (nearest entry alone): mean cosine {baseline:.4f}",
        flush=True,
    )
    corpora = prompt_corpora(set(prompts))
    truth_unseen = {name: unseen_share(prompts, words) for name, words in corpora.items()}
    print(
        f"  [{name}] the true prompts' own unseen-word shares: "
        + ", ".join(f"{c} corpus {s:.3f}" for c, s in truth_unseen.items()),
        flush=True,
    )
    status = 0
    for mode in ("fast", "best", "max"):
        r = measure(
            bank, encoder, targets, prompts, mode, repeats, known, corpora, precision=precision
        )
        goal_cos, goal_s = GOALS[mode]
        ok = r["mean"] >= goal_cos and r["seconds"] <= goal_s
        readable_ok = True
        if mode != "max":  # max is not meant to be read
            readable_ok = (
                r["unseen"]["+ public lists"] <= UNSEEN_GOAL * truth_unseen["+ public lists"]
                and r["unsafe"] == 0
            )
        status |= not (ok and readable_ok)
        times = ", ".join(f"{s:.3f}" for s in r["all_seconds"])
        print(
            f"  [{name}] {mode:<4} search precision {r['precision']}"
            + (f" ({r['note']})" if r["note"] else ""),
            flush=True,
        )
        print(
            f"  [{name}] {mode:<4}: mean cosine {r['mean']:.4f} (min {r['min']:.4f}),"
            f" {r['seconds']:.3f} s/prompt (runs: {times}; CPU {r['cpu']:.3f} s/prompt),"
            f" {r['encodes']:.0f} texts encoded per prompt; longest prompt {r['max_words']} words;"
            f" no phrase repeated: {r['no_repeats']}; load average {load_average()}",
            flush=True,
        )
        shares = ", ".join(
            f"{c} {s:.3f} ({s / max(truth_unseen[c], 1e-9):.2f}x the truth's)"
            for c, s in r["unseen"].items()
        )
        print(
            f"  [{name}] {mode:<4} unseen words: {shares}; safety-list words not in the true"
            f" prompt: {r['unsafe']}"
            + (
                ""
                if mode == "max"
                else f"; goal <= {UNSEEN_GOAL}x (+ public lists) and no"
                f" safety-list word: {verdict(readable_ok)}"
            ),
            flush=True,
        )
        read = r["readability"]
        print(
            f"  [{name}] {mode:<4} readability: {read['real']:.1%} real words (English word list"
            f" or the bank's written lists), {read['repeats']:.1%} of prompts repeat a word,"
            f" {read['inflected']:.1%} in another form;"
            " other words: " + ", ".join(f"{w} {c}" for w, c in read["top_unknown"]),
            flush=True,
        )
        print(
            f"  [{name}] RATIO {mode} / nearest entry: {r['mean'] / baseline:.2f}x mean cosine;"
            f" goal >= {goal_cos} at <= {goal_s} s/prompt: {verdict(ok)}",
            flush=True,
        )
        for original, prompt, score in r["examples"][:show]:
            print(f"      {score:.3f}  {prompt}\n             ← {original}", flush=True)
    return status


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--big-bank", type=Path, default=Path("/tmp/img2prompt-bank225k"))
    p.add_argument("--no-big-bank", action="store_true", help="only the packaged default bank")
    p.add_argument("--repeats", type=int, default=2, help="timings are the median of this many")
    p.add_argument("--limit", type=int, default=0, help="use only the first N prompts")
    p.add_argument("--show", type=int, default=3, help="example prompts printed per mode")
    p.add_argument(
        "--real-pairs", action="store_true", help="decode real_pairs' 408 prompts (a dev set)"
    )
    p.add_argument(
        "--half",
        choices=("dev", "held-out", "all"),
        default="all",
        help="with --real-pairs: the half tuned on, the half held out, or both",
    )
    p.add_argument("--search-precision", default="auto", choices=("auto", "fp32", "bf16", "int8"))
    p.add_argument(
        "--int8-vs-fp32", action="store_true", help="also time int8 against fp32 search encodes"
    )
    args = p.parse_args(argv)

    print("== bench_decode: readable prompts (round trip through MiniLM) ==", flush=True)
    print(f"  {hardware_line()}", flush=True)
    if not BANKS.is_dir() or not KAGGLE_PROMPTS.is_file():
        print(f"  SKIPPED: shared data not found under {SHARED_DIR / 'data'}")
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from img2prompt.targets.encoder import load_encoder
    from img2prompt.text.bank import default_bank, load_bank

    prompts = real_pair_prompts(args.half) if args.real_pairs else benchmark_prompts()
    prompts = prompts[: args.limit or None]
    print(
        f"  torch {torch.__version__} ({torch.get_num_threads()} threads), {os.cpu_count()} CPUs;"
        f" {len(prompts)} prompts" + (f" (real_pairs, {args.half})" if args.real_pairs else ""),
        flush=True,
    )
    from img2prompt.device import native_bf16

    # The search's precision decides its speed more than anything else here: each mode's line
    # names the one that ran (auto: bf16 where native, else int8 where it passes its check).
    print(
        f"  --search-precision {args.search_precision}; native bfloat16 here:"
        f" {'yes' if native_bf16('cpu') else 'no'}",
        flush=True,
    )
    encoder = load_encoder(device="cpu")
    bank = default_bank(encoder)  # embedded once (first use), outside the start-up timing
    startup = measure_startup()
    print(
        f"  start-up in a fresh process (import, encoder, cached default bank, first prompt):"
        f" {startup:.2f} s; goal <= {STARTUP_GOAL} s: {verdict(startup <= STARTUP_GOAL)}",
        flush=True,
    )
    status = int(startup > STARTUP_GOAL)
    status |= run_bank(
        "default", bank, encoder, prompts, args.repeats, args.show, args.search_precision
    )
    if args.int8_vs_fp32:
        int8_against_fp32(bank, encoder, encoder.encode(prompts), prompts, args.repeats)
    if not args.no_big_bank:
        big = load_bank(ensure_big_bank(args.big_bank, encoder), encoder)
        status |= run_bank(
            "shared 225k", big, encoder, prompts, args.repeats, args.show, args.search_precision
        )
    return status


if __name__ == "__main__":
    sys.exit(main())
