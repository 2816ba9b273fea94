"""Prompt cleaning and text filters.

`clean_prompt` is idempotent (`clean(clean(x)) == clean(x)`) and leaves an ordinary prompt as it is:
case, punctuation, quotes and single parentheses are kept. What it removes is markup that Stable
Diffusion front-ends read as instructions rather than words: attention weights `(word:1.3)`,
emphasis `((word))`, de-emphasis `[word]`, `{word}`, escapes `\\(` and extra-network tags
`<lora:name:0.8>`.
"""

from __future__ import annotations

import unicodedata

import regex

_WHITESPACE = regex.compile(r"\s+")
# Escaped brackets (`\(`) mean literal brackets to the web UIs; drop the backslash first so the
# bracket rules below see the same text on every pass (this is what keeps cleaning idempotent).
_ESCAPED_BRACKET = regex.compile(r"\\+([()\[\]{}])")
_NETWORK_TAG = regex.compile(r"<(?:lora|lyco|hypernet|embedding):[^<>]*>", regex.IGNORECASE)
# `(text:1.3)` / `(text: -0.5)`: an attention weight. The text has a letter and no brackets, so a
# time or ratio such as `(3:00)` or `(16:9)` is left alone.
_WEIGHTED = regex.compile(r"\(((?=[^()]*?\p{L})[^()]*?):\s*[-+]?\d*\.?\d+\s*\)")
# Two or more parentheses around text: `((text))`, `(((text)))`.
_MULTI_PAREN = regex.compile(r"\({2,}([^()]*)\){2,}")
_SQUARE_OR_CURLY = regex.compile(r"[\[\]{}]")
_SPACE_BEFORE_COMMA = regex.compile(r"\s+,")
_REPEATED_COMMAS = regex.compile(r",(?:\s*,)+")
_LETTER = regex.compile(r"\p{L}")
_LATIN_LETTER = regex.compile(r"\p{Latin}")
_KEY_TOKEN = regex.compile(r"[\p{L}\p{N}]+")


# Terminal escape sequences (cursor moves, colours: `ESC[A`, `ESC[1;32m`), found in prompts copied
# from generator logs; removing only the ESC would leave "[A" glued to the next word.
_TERMINAL_ESCAPE = regex.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])")

# Joiners shape emoji sequences and some scripts; they are text, not formatting noise.
_KEEP_FORMAT = {"\u200c", "\u200d"}


def _strip_controls(text: str) -> str:
    """Format characters (zero-width space, BOM, bidi marks) go; control characters: spaces."""
    out = []
    for ch in text:
        category = unicodedata.category(ch)
        if category == "Cf" and ch not in _KEEP_FORMAT:
            continue
        out.append(" " if category == "Cc" else ch)
    return "".join(out)


def clean_prompt(text: str) -> str:
    """Return the words of a prompt without front-end markup, in NFKC with single spaces."""
    # Controls go before NFKC, so characters they separated are composed on the first pass.
    if not text.isprintable():
        text = _strip_controls(_TERMINAL_ESCAPE.sub(" ", text))
    text = unicodedata.normalize("NFKC", text)
    text = _ESCAPED_BRACKET.sub(r"\1", text)
    text = _NETWORK_TAG.sub(" ", text)
    text = _SQUARE_OR_CURLY.sub(" ", text)
    # Weights and emphasis nest (`((a:1.2), b)`), so apply until nothing changes.
    while True:
        reduced = _MULTI_PAREN.sub(r"\1", _WEIGHTED.sub(r"\1", text))
        if reduced == text:
            break
        text = reduced
    text = _WHITESPACE.sub(" ", text).strip()
    text = _REPEATED_COMMAS.sub(",", _SPACE_BEFORE_COMMA.sub(",", text))
    return text.strip(" ,")


def word_count(text: str) -> int:
    return len(text.split())


def latin_fraction(text: str) -> float:
    """Share of letters that are Latin-script; 0.0 when there are no letters at all."""
    letters = len(_LETTER.findall(text))
    if letters == 0:
        return 0.0
    return len(_LATIN_LETTER.findall(text)) / letters


def dedup_key(text: str) -> str:
    """Key for exact duplicates: case-folded letters and digits, so 'A cat.' == 'a  cat'."""
    return " ".join(_KEY_TOKEN.findall(text.casefold()))
