"""Building and extending banks: read the inputs, drop entries the bank already has
(case-insensitively), embed only what has no vector yet, and write the folder in one swap
(`io.atomic_dir`), so an interrupted build or `add` leaves the previous bank whole."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from img2prompt.device import native_bf16
from img2prompt.errors import ConfigError, ErrorLog, InputError
from img2prompt.io import atomic_dir, write_json, write_parquet
from img2prompt.targets.encoder import TargetEncoder, embed_texts_with_norms
from img2prompt.text.bank_index import (
    BANK_FORMAT,
    EMBEDDINGS_FILE,
    ENTRIES_FILE,
    MANIFEST_FILE,
    PromptBank,
    load_bank,
)
from img2prompt.text.bank_sources import (
    BankEntry,
    derive_words,
    entry_key,
    read_entries,
    template_entries,
    vocabulary_entries,
)


@dataclass
class BankReport:
    """What a build or add did."""

    path: Path
    entries: int  # in the bank now
    added: int  # new this run
    embedded: int  # new entries whose vectors the encoder computed (the rest came with them)
    duplicates: int  # input entries already present (or repeated in the inputs)
    categories: dict[str, int]  # entries per category in the bank


def build_bank(
    inputs: Sequence[str | Path],
    out: str | Path,
    encoder: TargetEncoder,
    *,
    words: bool = True,
    min_word_count: int = 2,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    vocabulary: bool = False,
    templates: str | Path | None = None,
    precision: str = "fp32",
    phrases_only: Sequence[str | Path] = (),
) -> BankReport:
    """Read, de-duplicate and embed `inputs` into a new bank at `out` (replacing a bank there);
    `vocabulary` also adds the encoder's own whole words (see `vocabulary_entries`), `templates`
    the phrases a template folder makes (see `img2prompt.text.templates`). `precision` of the
    entries' vectors: `fp32`, `bf16` (faster where the hardware has it, cosines nearly equal)
    or `auto` (bf16 where native). `phrases_only`: more input files whose entries are added but
    give no single words (lists whose words include name pieces and misspellings)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST_FILE).is_file():
        raise InputError(out, "folder exists and is not a prompt bank; choose another --out")
    empty = PromptBank(
        path=None,
        texts=[],
        categories=[],
        frequencies=np.zeros(0, np.int64),
        tokens=np.zeros(0, np.int32),
        norms=np.zeros(0, np.float32),
        embeddings=np.zeros((0, encoder.dim), np.float16),
        manifest={},
    )
    settings = _Settings(
        words=words,
        min_word_count=min_word_count,
        batch_size=batch_size,
        cache_dir=cache_dir,
        progress=progress,
        vocabulary=vocabulary,
        templates=templates,
        precision=precision,
    )
    return _extend(empty, inputs, out, encoder, settings, phrases_only)


def add_to_bank(
    bank_path: str | Path,
    inputs: Sequence[str | Path],
    encoder: TargetEncoder,
    *,
    words: bool | None = None,
    min_word_count: int | None = None,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> BankReport:
    """Add the entries of `inputs` that the bank lacks; existing vectors are kept as they are.

    `words`/`min_word_count` default to what the bank was built with."""
    bank = load_bank(bank_path, encoder)
    built = bank.manifest.get("words", {})
    settings = _Settings(
        words=built.get("enabled", False) if words is None else words,
        min_word_count=built.get("min_count", 2) if min_word_count is None else min_word_count,
        batch_size=batch_size,
        cache_dir=cache_dir,
        progress=progress,
        vocabulary=False,
        templates=None,
        precision=bank.manifest.get("embeddings_precision", "fp32"),  # keep the bank uniform
    )
    return _extend(bank, inputs, Path(bank_path), encoder, settings)


@dataclass(kw_only=True)
class _Settings:
    words: bool
    min_word_count: int
    batch_size: int
    cache_dir: str | Path | None
    progress: bool
    vocabulary: bool
    templates: str | Path | None
    precision: str  # fp32, bf16 or auto

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16", "auto"):
            raise ConfigError(f"precision must be fp32, bf16 or auto, got {self.precision!r}")


def _extend(
    bank: PromptBank,
    inputs: Sequence[str | Path],
    out: Path,
    encoder: TargetEncoder,
    settings: _Settings,
    phrases_only: Sequence[str | Path] = (),
) -> BankReport:
    """Add what `inputs` has that `bank` lacks and write the result to `out`."""
    if not inputs:
        raise ConfigError("give at least one input file")
    read = _read_inputs(inputs, encoder, settings, phrases_only)
    new, duplicates = _new_entries(bank, read)
    bf16 = settings.precision == "bf16" or (
        settings.precision == "auto" and native_bf16(encoder.device)
    )
    vectors, norms, embedded = _new_vectors(
        new, encoder, settings.batch_size, settings.cache_dir, settings.progress, bf16
    )
    table = _entries_table(bank, new, _token_counts(encoder, [e.text for e in new]), norms)
    embeddings = np.concatenate([bank.embeddings, vectors.astype(np.float16)])
    categories = dict(Counter(bank.categories + [e.category for e in new]))  # first-seen order
    manifest = {
        "format": BANK_FORMAT,
        "entries": len(table),
        "encoder": {"spec": encoder.spec, "fingerprint": encoder.fingerprint, "dim": encoder.dim},
        "categories": categories,
        **_provenance(bank, inputs, settings),
        "embeddings_dtype": "float16",
        "embeddings_precision": "bf16" if bf16 else "fp32",  # what computed them
    }
    _write_bank(out, table, embeddings, manifest)
    return BankReport(
        path=out,
        entries=len(table),
        added=len(new),
        embedded=embedded,
        duplicates=duplicates,
        categories=categories,
    )


def _read_inputs(
    inputs: Sequence[str | Path],
    encoder: TargetEncoder,
    settings: _Settings,
    phrases_only: Sequence[str | Path],
) -> list[BankEntry]:
    """Every entry the run offers, in bank order: files, template phrases, words derived from
    those (not from `phrases_only`), then the encoder's vocabulary."""
    errors = ErrorLog("fail")
    read: list[BankEntry] = []
    for path in inputs:
        read.extend(read_entries(path, errors))
    if settings.templates is not None:
        read.extend(template_entries(settings.templates))
    if settings.words:
        read.extend(derive_words(read, settings.min_word_count))
    for path in phrases_only:
        read.extend(read_entries(path, errors))
    if settings.vocabulary:
        read.extend(vocabulary_entries(encoder))
    return read


def _new_entries(bank: PromptBank, read: list[BankEntry]) -> tuple[list[BankEntry], int]:
    """The entries `bank` lacks (case-insensitively, first one wins) and how many were
    duplicates; a repeated new entry's frequencies add up."""
    seen = {entry_key(text): row for row, text in enumerate(bank.texts)}
    new: list[BankEntry] = []
    duplicates = 0
    for entry in read:
        key = entry_key(entry.text)
        row = seen.get(key)
        if row is None:
            seen[key] = len(bank) + len(new)
            new.append(entry)
            continue
        duplicates += 1
        if row >= len(bank) and entry.frequency is not None:  # repeated within this run's inputs
            known = new[row - len(bank)].frequency
            new[row - len(bank)].frequency = entry.frequency + (known or 0)
    return new, duplicates


def _entries_table(
    bank: PromptBank, new: list[BankEntry], tokens: np.ndarray, norms: np.ndarray
) -> pa.Table:
    """entries.parquet: the bank's rows, then the new ones."""
    return pa.table(
        {
            "text": pa.array(bank.texts + [e.text for e in new], pa.string()),
            "category": pa.array(bank.categories + [e.category for e in new], pa.string()),
            "frequency": pa.array(
                [None if f < 0 else int(f) for f in bank.frequencies] + [e.frequency for e in new],
                pa.int64(),
            ),
            "tokens": pa.array(np.concatenate([bank.tokens, tokens]), pa.int32()),
            "norm": pa.array(np.concatenate([bank.norms, norms]), pa.float32(), from_pandas=True),
            "source": pa.array(_sources(bank) + [e.source for e in new], pa.string()),
        }
    )


def _provenance(
    bank: PromptBank, inputs: Sequence[str | Path], settings: _Settings
) -> dict[str, Any]:
    """The manifest's record of what went in: inputs and templates of every run so far."""
    templates = [str(Path(settings.templates).resolve())] if settings.templates is not None else []
    return {
        "inputs": [*bank.manifest.get("inputs", []), *(str(Path(p).resolve()) for p in inputs)],
        "words": {"enabled": settings.words, "min_count": settings.min_word_count},
        "vocabulary": settings.vocabulary or bool(bank.manifest.get("vocabulary", False)),
        "templates": [*bank.manifest.get("templates", []), *templates],
    }


def _sources(bank: PromptBank) -> list[str]:
    if bank.path is None:
        return []
    return pq.read_table(bank.path / ENTRIES_FILE, columns=["source"]).column("source").to_pylist()


def _new_vectors(
    entries: list[BankEntry],
    encoder: TargetEncoder,
    batch_size: int,
    cache_dir: str | Path | None,
    progress: bool,
    bf16: bool = False,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Vectors and norms for new entries, and how many were embedded here: the vectors they came
    with where the encoder agrees (their norms unknown: NaN), else embedded (through the
    resumable on-disk cache, so an interrupted build loses little)."""
    vectors = np.zeros((len(entries), encoder.dim), dtype=np.float32)
    norms = np.full(len(entries), np.nan, dtype=np.float32)
    todo = []
    for row, entry in enumerate(entries):
        same_encoder = entry.vector_encoder in (None, encoder.fingerprint)
        if entry.vector is not None and len(entry.vector) == encoder.dim and same_encoder:
            vectors[row] = entry.vector
        else:
            todo.append(row)
    if todo:
        texts = [entries[row].text for row in todo]
        vectors[todo], norms[todo] = embed_texts_with_norms(
            texts, encoder, cache_dir, batch_size=batch_size, progress=progress, bf16=bf16
        )
    return vectors, norms, len(todo)


def _token_counts(encoder: TargetEncoder, texts: Sequence[str]) -> np.ndarray:
    if not texts:
        return np.zeros(0, dtype=np.int32)
    ids = encoder.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return np.fromiter((len(x) for x in ids), dtype=np.int32, count=len(texts))


def _write_bank(
    out: Path, table: pa.Table, embeddings: np.ndarray, manifest: dict[str, Any]
) -> None:
    """Write the three files into a fresh sibling folder that then replaces `out`."""
    with atomic_dir(out) as fresh:
        write_parquet(table, fresh / ENTRIES_FILE)
        with open(fresh / EMBEDDINGS_FILE, "wb") as f:
            np.save(f, embeddings)
        write_json(manifest, fresh / MANIFEST_FILE)
