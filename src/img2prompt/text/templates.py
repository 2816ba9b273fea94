"""Phrases made from templates: a rule `subjects: a {adj_creature} {animal}` over two word lists
gives "a cute fox", "an old owl", ... one phrase per combination.

A template folder holds `rules.txt` and word lists (`animal.txt`: one item a line). Each rule is
`category: template`; `{name}` is a slot filled with every line of `name.txt`, several slots give
every combination (but none that says a word twice). `#` starts a comment. "a" and "an" are made
to agree with the word after them, so a rule writes "a" and the lists hold bare words. Words that
take no article (mass nouns, plurals: "ramen", "sunglasses") go in lists of their own, used by
rules without one.

Why: MiniLM reads words in context, so "a cute fox" has a vector of its own that "cute" and
"a fox" side by side only approximate. Combinations of short self-written lists give the packaged
bank ~30k such phrases while the repository keeps ~40 KB of words; they raise its round-trip
cosine (docs/readable-prompts.md).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from img2prompt.errors import InputError

RULES_FILE = "rules.txt"
TEMPLATES_FORMAT = 1  # how rules are read and filled; part of the default bank's cache key
_SLOT = re.compile(r"\{([^{}]*)\}")
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_ARTICLE = re.compile(r"(?<![\w'-])(a|an) (?=(\w+))")
# Words spelt with a vowel but said with a consonant (and the reverse).
_A_BEFORE = ("uni", "use", "usu", "uti", "eu", "one", "once", "ufo", "ukulele", "u-")
_AN_BEFORE = ("hour", "honest", "honor", "honour", "heir")


class TemplatePhrase(NamedTuple):
    text: str
    category: str
    source: str  # "rules.txt:LINE", the rule that made it


def article(word: str) -> str:
    """'a' or 'an' before `word` (by its spelling, with the common exceptions)."""
    word = word.casefold()
    if word.startswith(_A_BEFORE):
        return "a"
    if word.startswith(_AN_BEFORE):
        return "an"
    return "an" if word[:1] in ("a", "e", "i", "o", "u") else "a"


def fix_articles(text: str) -> str:
    """Make every standalone 'a'/'an' agree with the word after it."""
    return _ARTICLE.sub(lambda m: article(m.group(2)) + " ", text)


def read_list(path: Path) -> list[str]:
    """The items of a word list: its non-empty lines, without comments and surrounding space."""
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            items.append(" ".join(line.split()))
    return items


def _repeats_a_word(items: tuple[str, ...]) -> bool:
    words = [word for item in items for word in item.split()]
    return len(set(words)) < len(words)


def expand_templates(folder: str | Path) -> Iterator[TemplatePhrase]:
    """Every phrase the rules in `folder/rules.txt` make, rule by rule, in list order."""
    folder = Path(folder)
    rules = folder / RULES_FILE
    if not rules.is_file():
        raise InputError(folder, f"no {RULES_FILE}: not a template folder")
    lists: dict[str, list[str]] = {}
    for number, line in enumerate(rules.read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        category, sep, template = (part.strip() for part in line.partition(":"))
        if not sep or not _NAME.fullmatch(category) or not template:
            raise InputError(rules, f"expected 'category: template', got {line!r}", number)
        names = _SLOT.findall(template)
        for name in names:
            if name not in lists:
                path = folder / f"{name}.txt"
                if not _NAME.fullmatch(name) or name == Path(RULES_FILE).stem:
                    raise InputError(rules, f"bad slot {{{name}}}", number)
                if not path.is_file():
                    raise InputError(rules, f"slot {{{name}}}: no word list {path.name}", number)
                lists[name] = read_list(path)
        pieces = _SLOT.split(template)  # text, name, text, name, ..., text
        source = f"{rules}:{number}"
        for combination in itertools.product(*(lists[name] for name in names)):
            if len(combination) > 1 and _repeats_a_word(combination):
                continue  # "a futuristic futuristic city"
            filled = list(pieces)
            filled[1::2] = combination
            yield TemplatePhrase(fix_articles("".join(filled)), category, source)
