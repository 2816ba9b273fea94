"""Write `src/img2prompt/assets/bank/dictionary.txt`: the real English words the packaged bank
offers one by one (category `dictionary`).

    pip install pyspellchecker==0.9.1 && python scripts/make_dictionary.py

Why a written list: decoding picks single words where no phrase says what a prompt needs. Taking
them from the encoder's WordPiece vocabulary gave fragments ("devi", "vol", "syd" from names the
tokenizer splits) and missed every word it splits ("beakers", "cybernetic", "motherboard").
The words come from pyspellchecker's English frequency list (MIT; counted on OpenSubtitles and
cleaned by its author): words of 3+ letters seen at least MIN_COUNT times, plus the encoder's
whole-word tokens the list also knows at any count (rarer ones such as
"canberra", "yucatan"). Stop words are left out: on their own they only pad a prompt.
"""

from __future__ import annotations

import gzip
import json
import re
from importlib import resources
from pathlib import Path

MIN_COUNT = 100
OUT = Path(__file__).resolve().parents[1] / "src/img2prompt/assets/bank/dictionary.txt"
WORD = re.compile(r"[a-z]{3,}")


def main() -> None:
    from img2prompt.targets.encoder import load_encoder
    from img2prompt.text.bank_sources import _STOPWORDS

    source = resources.files("spellchecker") / "resources" / "en.json.gz"
    counts: dict[str, int] = json.loads(gzip.decompress(source.read_bytes()))
    tokenizer = load_encoder(device="cpu").tokenizer
    encoder_words = {w for w in tokenizer.get_vocab() if WORD.fullmatch(w)}
    words = sorted(
        w
        for w, n in counts.items()
        if WORD.fullmatch(w) and w not in _STOPWORDS and (n >= MIN_COUNT or w in encoder_words)
    )
    OUT.write_text("".join(f"{w}\n" for w in words), encoding="utf-8")
    print(f"{len(words):,} words -> {OUT}")


if __name__ == "__main__":
    main()
