"""Bank inputs -> `BankEntry` rows (text, category, frequency, source, maybe a vector).

Reads TXT (one phrase a line), CSV/TSV/JSONL/Parquet with a prompt column, JSON lists, JSON
phrase trees with counts (`ddb_phrases_tree.json`) and prepared `prompts.parquet` tables (whose
`target` vectors are kept); also makes the entries a bank adds on its own: the single words of
its entries, the phrases of a template folder, the encoder's whole-word vocabulary.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from img2prompt.data.clean import clean_prompt
from img2prompt.data.sources import PROMPT_COLUMNS, read_records
from img2prompt.errors import ErrorLog, InputError
from img2prompt.io import vectors_from_column
from img2prompt.targets.encoder import TargetEncoder
from img2prompt.text.templates import expand_templates

WORD_CATEGORY = "word"
VOCABULARY_CATEGORY = "vocabulary"
TEXT_COLUMNS = (*PROMPT_COLUMNS, "phrase")
FREQUENCY_COLUMNS = ("frequency", "count")
# Words that carry no content on their own; as bank entries they would only pad prompts.
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "in",
        "on",
        "at",
        "by",
        "for",
        "to",
        "from",
        "with",
        "and",
        "or",
        "but",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "his",
        "her",
        "their",
        "our",
        "your",
        "my",
        "into",
        "onto",
        "over",
        "under",
        "near",
        "very",
        "so",
        "than",
        "then",
    ]
)
_VOCABULARY_WORD = re.compile(r"[a-z]{3,}")
_WORD = re.compile(r"[a-z][a-z'-]*[a-z]|[a-z]")
_CONTENT_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")


ENTRY_RULES = 3
"""Version of `phrase_text`'s rules: the default bank is rebuilt when they change."""

# Phrase lists mined from prompts come tokenized ("award - winning", "8 k", "f / 1. 4") and with
# Stable Diffusion's emphasis syntax ("( ( dither ) )", "lighting : : 0. 8"): written that way in
# a prompt they read as noise. The bank embeds its own texts, so tidying them costs nothing in
# accuracy; for punctuation MiniLM's tokens are even the same ("award-winning").
_TIDY_RULES = (
    (re.compile(r"[()\[\]{}]"), " "),  # emphasis brackets
    (re.compile(r"(?<=\b\d) (?=\d\b)"), ""),  # digits one by one: "2 0 0 1"
    (re.compile(r"(\d) x (\d)"), r"\1x\2"),  # sizes: "3840 x 2160"
    (re.compile(r"(\d) ([kpsd])\b"), r"\1\2"),  # units: "8 k", "1080 p", "3 d"
    (re.compile(r"(\d)\. (\d)"), r"\1.\2"),  # "1. 4"
    (re.compile(r"(\d) : (\d)"), r"\1:\2"),  # ratios: "16 : 9"
    # A trailing weight ("teapot : 1", "octane render : : 3", "blur : - 2"); not a ratio's "16:9".
    (re.compile(r"(?<=[^\d\s])\s*(?::\s*)+-?\s*\d+(?:\.\d+)?\s*$"), ""),
    (re.compile(r":(?:\s*:)+"), ", "),  # "::" separates the parts of a weighted prompt
    (re.compile(r"(?<=\w) ([-/]) (?=\w)"), r"\1"),  # "award - winning", "f / 2.8"
    (re.compile(r"(?<=\w) : (?=\w)"), ": "),  # "2001 : a space odyssey"
    (re.compile(r"\s+"), " "),
    (re.compile(r" ,"), ","),
    (re.compile(r",(?:\s*,)+"), ","),
)


TIDY_MAX_CHARS = 300
"""Longer texts are whole prompts, not mined phrases: kept as cleaned (and the rules, some of
which backtrack, never see a long hostile line)."""


def phrase_text(raw: str) -> str:
    """A bank phrase as a person writes it: `clean_prompt`, then the tokenization and emphasis
    syntax of mined phrase lists undone ("( ( 8 k ) )" -> "8k"); '' when nothing is left."""
    text = clean_prompt(raw)
    if len(text) > TIDY_MAX_CHARS:
        return text
    for pattern, replacement in _TIDY_RULES:
        text = pattern.sub(replacement, text)
    return text.strip(" ,:;-")


@dataclass(slots=True)
class BankEntry:
    """One phrase or prompt read from an input, before it is embedded."""

    text: str
    category: str
    frequency: int | None
    source: str
    vector: np.ndarray | None = None  # given by a prepared table's `target` column
    vector_encoder: str | None = None
    """Fingerprint of the encoder that made `vector`, where its table's manifest says."""


def entry_key(text: str) -> str:
    """Entries are unique by this key: case-folded, single-spaced."""
    return " ".join(text.casefold().split())


def content_stems(text: str) -> frozenset[str]:
    """The content words of `text` with the forms they may come from (`_forms`): two phrases
    whose sets meet say a word twice ("a dog, dogs", "sneeze, sneezes", "a cow, cowed",
    "lights, lighting"). A hyphenated word also gives its parts: "highly detailed" and
    "hyper-detailed" say "detailed" twice."""
    forms: set[str] = set()
    for word in _CONTENT_WORD.findall(text.casefold()):
        for part in {word, *word.split("-")}:
            if part and part not in _STOPWORDS:
                forms.update(_forms(part))
    return frozenset(forms)


def says_a_word_twice(text: str) -> bool:
    """Whether `text` itself repeats a content word ("glasses glasses", "dragon in dragon lair",
    "h 8 0 0"; mined phrase lists have such entries)."""
    words = [w for w in _CONTENT_WORD.findall(text.casefold()) if w not in _STOPWORDS]
    return len(words) != len(set(words))


def _forms(word: str) -> set[str]:
    """`word`, its possible singulars ("puppies" -> puppy; "sneezes" -> sneeze, sneez) and the
    possible stems of those as -ing or -ed forms ("lighting" -> light, lighte; "cowed" -> cow;
    "running" -> run). Rules, not a stemmer: they err on the side of caution ("news" meets
    "new", "lunging" meets "lung"), which only ever drops a candidate phrase. Without them a
    prompt says a word twice in another form ("a cow, cowed", "eggs ... egging"). Not -er: it
    joins more unrelated words than forms ("flowers, flowing", "tower, towing")."""
    forms = {word}
    for singular in _singulars(word):
        forms.add(singular)
        for suffix in ("ing", "ed"):
            base = singular[: -len(suffix)]
            if singular.endswith(suffix) and len(base) >= 3:
                forms.update((base, base + "e"))
                if len(base) >= 4 and base[-1] == base[-2]:
                    forms.add(base[:-1])  # running, stopped
                if suffix == "ed" and base.endswith("i"):
                    forms.add(base[:-1] + "y")  # carried
    return forms


def _singulars(word: str) -> tuple[str, ...]:
    if len(word) < 4 or not word.endswith("s") or word.endswith(("ss", "us", "is")):
        return (word,)
    if word.endswith("ies"):
        return word, word[:-1], word[:-3] + "y"
    if word.endswith("es"):
        return word, word[:-1], word[:-2]
    return word, word[:-1]


def read_entries(path: str | Path, errors: ErrorLog) -> list[BankEntry]:
    """Entries of one input file: TXT (one phrase a line), CSV/TSV/JSONL/Parquet with a prompt
    column, a JSON list, a JSON phrase tree (`{"n": phrase, "v": count, "c": [children]}`, as in
    `ddb_phrases_tree.json`), or a prepared `prompts.parquet` whose `target` vectors are kept."""
    path = Path(path)
    if path.suffix.lower() == ".json" and path.is_file():
        tree = _json_tree(path)
        if tree is not None:
            return list(_tree_entries(path, tree))
    if path.suffix.lower() == ".parquet" and path.is_file() and _has_column(path, "target"):
        return _prepared_entries(path)
    entries = []
    extra = ("category", *FREQUENCY_COLUMNS)
    for line, record in read_records(path, errors, extra_columns=extra):
        try:
            entry = _entry_from_record(path, line, record)
        except InputError as error:
            errors.report(error)
            continue
        if entry is not None:
            entries.append(entry)
    if not entries and errors.policy == "fail":
        raise InputError(path, "no phrases found")
    return entries


def _entry_from_record(path: Path, line: int, record: dict[str, Any]) -> BankEntry | None:
    column = next((name for name in TEXT_COLUMNS if name in record), None)
    if column is None:
        raise InputError(
            path, f"no phrase column: expected one of {TEXT_COLUMNS}, got {sorted(record)}", line
        )
    text = record[column]
    if text is None:
        return None
    if not isinstance(text, str):
        raise InputError(path, f"phrase is not text (got {type(text).__name__})", line)
    text = phrase_text(text)
    if not text:
        return None
    category = str(record.get("category") or path.stem)
    frequency = None
    for name in FREQUENCY_COLUMNS:
        if record.get(name) not in (None, ""):
            frequency = _as_count(path, line, record[name])
            break
    return BankEntry(text, category, frequency, str(path))


def _as_count(path: Path, line: int, value: Any) -> int:
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise InputError(path, f"frequency {value!r} is not a whole number", line) from None
    if count < 0:
        raise InputError(path, f"frequency {count} is negative", line)
    return count


def _json_tree(path: Path) -> dict | None:
    """The parsed file when it is a phrase tree (a JSON object), else None (left to the reader
    of JSON lists, which reports bad JSON with its line)."""
    with open(path, "rb") as f:
        if f.read(64).lstrip().startswith(b"["):
            return None
    try:
        value = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _tree_entries(path: Path, tree: dict) -> Iterator[BankEntry]:
    if "c" not in tree and "n" not in tree:
        raise InputError(path, 'expected a phrase tree: objects with "n" (phrase) and "c" (list)')
    stack = list(reversed(tree.get("c") or []))  # depth first, in file order
    while stack:
        node = stack.pop()
        if not isinstance(node, dict) or not isinstance(node.get("n"), str):
            raise InputError(path, f'tree node without a phrase "n": {str(node)[:80]}')
        text = phrase_text(node["n"])
        if text:
            count = node.get("v")
            frequency = count if isinstance(count, int) and count >= 0 else None
            yield BankEntry(text, path.stem, frequency, str(path))
        stack.extend(reversed(node.get("c") or []))


def _has_column(path: Path, name: str) -> bool:
    try:
        return name in pq.ParquetFile(path).schema_arrow.names
    except Exception:  # not Parquet: read_records reports it with the file name
        return False


def _prepared_entries(path: Path) -> list[BankEntry]:
    """A `data prepare` table: its prompts with their targets (used when the encoder matches)."""
    names = pq.ParquetFile(path).schema_arrow.names
    column = next((name for name in TEXT_COLUMNS if name in names), None)
    if column is None:
        raise InputError(path, f"no prompt column: expected one of {TEXT_COLUMNS}, got {names}")
    wanted = [column, "target"] + (["category"] if "category" in names else [])
    table = pq.read_table(path, columns=wanted)
    manifest = path.parent / "manifest.json"  # written by `data prepare` beside its table
    fingerprint = None
    if manifest.is_file():
        with contextlib.suppress(ValueError, OSError):  # unreadable: trust the dimension alone
            fingerprint = json.loads(manifest.read_text(encoding="utf-8"))["encoder"]["fingerprint"]
    targets = vectors_from_column(table.column("target"), path)
    texts = table.column(column).to_pylist()
    categories = table.column("category").to_pylist() if "category" in names else None
    entries = []
    for row, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            continue
        category = categories[row] if categories and categories[row] else path.stem
        entries.append(
            BankEntry(text.strip(), str(category), None, str(path), targets[row], fingerprint)
        )
    return entries


def derive_words(entries: Iterable[BankEntry], min_count: int) -> list[BankEntry]:
    """Single words found in the entries, with the number of entries that use them, as entries of
    category `word`: decoding can then name things that no whole phrase in the bank says."""
    counts: dict[str, int] = {}
    for entry in entries:
        for word in set(_WORD.findall(entry.text.casefold())):
            if word not in _STOPWORDS:
                counts[word] = counts.get(word, 0) + 1
    return [
        BankEntry(word, WORD_CATEGORY, count, "derived")
        for word, count in sorted(counts.items())
        if count >= min_count
    ]


def template_entries(folder: str | Path) -> list[BankEntry]:
    """The phrases a template folder makes (`img2prompt.text.templates`), one entry each."""
    return [
        BankEntry(phrase.text, phrase.category, None, phrase.source)
        for phrase in expand_templates(folder)
    ]


def vocabulary_entries(encoder: TargetEncoder) -> list[BankEntry]:
    """The encoder's own whole words: WordPiece tokens of 3+ letters that are not stop words
    (~21k for MiniLM), category `vocabulary`. Any word the encoder knows can then appear in a
    prompt; on bench_decode they lift the packaged bank's round trip from 0.883 to 0.910."""
    vocab = encoder.tokenizer.get_vocab()
    words = sorted(w for w in vocab if _VOCABULARY_WORD.fullmatch(w) and w not in _STOPWORDS)
    return [BankEntry(word, VOCABULARY_CATEGORY, None, "encoder vocabulary") for word in words]
