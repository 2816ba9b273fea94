"""Reading embedded metadata from hostile files costs about as much as from plain ones.

    python benchmarks/bench_metadata.py [--repeats 5]

Each hostile file (an XMP packet that repeats an opening tag 40,000 times; a ComfyUI graph whose
node links to itself 40 times, and one of 1,500 chained nodes) is read beside a plain file of the
same size, and the ratio of their read times is printed: a reader that backtracks or walks a
graph's paths one by one shows ratios of hundreds. The tests check what is read; the time is
measured here, where a shared machine's noise cancels in the ratio.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from PIL import Image, PngImagePlugin

from common import REPO_ROOT  # noqa: F401  (puts scripts/ on the path, as every benchmark does)

MAX_RATIO = 20.0
"""A hostile file may take this many times a plain one's read time (it is ~1-3x)."""


def _png(text_chunks: dict[str, str], itxt: dict[str, str] | None = None) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in text_chunks.items():
        info.add_text(key, value)
    for key, value in (itxt or {}).items():
        info.add_itxt(key, value)
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "PNG", pnginfo=info)
    return out.getvalue()


def _xmp_pair(tag: str) -> tuple[bytes, bytes]:
    hostile = "<x:xmpmeta>Draw Things" + tag * 40_000 + "</x:xmpmeta>"
    plain = "<x:xmpmeta>Draw Things" + "x" * len(tag) * 40_000 + "</x:xmpmeta>"
    key = "XML:com.adobe.xmp"
    return _png({}, {key: hostile}), _png({}, {key: plain})


def _graph(text_input: object, extra: dict) -> dict:
    return {
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "positive": ["6", 0],
                "negative": ["7", 0],
                "model": ["4", 0],
                "latent_image": ["5", 0],
                "seed": 1,
                "steps": 20,
            },
        },
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": text_input, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        **extra,
    }


def _comfy_pairs() -> list[tuple[str, bytes, bytes]]:
    """Each hostile graph beside a plain one with as many nodes, none of them in a cycle or a
    chain, so the ratio is what the shape costs, not the size."""
    knot = {"10": {"class_type": "Knot", "inputs": {f"in{i}": ["10", 0] for i in range(40)}}}
    loose_knot = {"10": {"class_type": "Knot", "inputs": {f"in{i}": ["6", 0] for i in range(40)}}}
    chain = {
        f"c{i}": {
            "class_type": "FluxGuidance",
            "inputs": {"conditioning": [f"c{i - 1}", 0] if i else ["6", 0]},
        }
        for i in range(1500)
    }
    loose = {
        f"c{i}": {"class_type": "FluxGuidance", "inputs": {"conditioning": ["6", 0]}}
        for i in range(1500)
    }
    long_graph = _graph("a long chain", chain)
    long_graph["3"]["inputs"]["positive"] = ["c1499", 0]
    wide_graph = _graph("a wide graph", loose)
    wide_graph["3"]["inputs"]["positive"] = ["c1499", 0]

    def png(graph: dict) -> bytes:
        return _png({"prompt": json.dumps(graph)})

    return [
        (
            "ComfyUI node linked to itself x40",
            png(_graph(["10", 0], knot)),
            png(_graph(["10", 0], loose_knot)),
        ),
        ("ComfyUI chain of 1,500 nodes", png(long_graph), png(wide_graph)),
    ]


def _best_time(read: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        read()
        times.append(time.perf_counter() - started)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    from img2prompt.metadata import read_metadata

    print(
        "== bench_metadata: hostile files vs plain ones (read_metadata, best of "
        f"{args.repeats}) ==",
        flush=True,
    )
    cases = [
        (f"XMP {tag} x40,000", *_xmp_pair(tag))
        for tag in ("<exif:UserComment>", "<rdf:li>", "<dc:description>")
    ]
    status = 0
    for name, hostile, plain in [*cases, *_comfy_pairs()]:
        slow = _best_time(lambda data=hostile: read_metadata(data), args.repeats)
        fast = _best_time(lambda data=plain: read_metadata(data), args.repeats)
        ratio = slow / max(fast, 1e-6)
        verdict = "ok" if ratio <= MAX_RATIO else f"SLOW (> {MAX_RATIO:.0f}x)"
        print(
            f"{name:40s} {slow * 1e3:8.1f} ms vs plain {fast * 1e3:7.1f} ms: "
            f"{ratio:5.1f}x  {verdict}",
            flush=True,
        )
        status |= ratio > MAX_RATIO
    return status


if __name__ == "__main__":
    sys.exit(main())
