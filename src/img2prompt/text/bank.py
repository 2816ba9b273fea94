"""Prompt banks: phrases and prompts with their target-space vectors, searchable with FAISS.

A bank is a folder:

- `entries.parquet`: `text`, `category` (from the file name or a `category` column), `frequency`
  (how often the phrase was seen, null when unknown), `tokens` (encoder word pieces, the weight of
  the phrase when embeddings are added up) and `source` (the input file);
- `embeddings.npy`: float16 (N, dim) unit rows in entry order. Half precision halves a 225k bank
  (170 MiB instead of 345 MiB); it moves a cosine by ~1e-3 at most, and decoding scores its final
  prompt with the encoder itself, so no printed figure depends on it;
- `manifest.json`: format version, the encoder (spec, fingerprint, dim), counts per category, the
  inputs it was built from.

The FAISS index (inner product over unit rows = cosine) is built when the bank is loaded; for a few
hundred thousand rows that takes well under a second, less than reading a saved index would.
A bank is written into a fresh folder that then replaces the old one, so an interrupted build or
`add` leaves the previous bank whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from img2prompt.data.clean import clean_prompt
from img2prompt.data.embed import TargetEncoder, default_cache_dir, embed_texts, native_bf16
from img2prompt.data.sources import PROMPT_COLUMNS, read_records
from img2prompt.errors import ConfigError, ErrorLog, InputError
from img2prompt.io import atomic_dir, recover_dir, vectors_from_column, write_json, write_parquet
from img2prompt.text.templates import TEMPLATES_FORMAT, expand_templates

BANK_FORMAT = 1
ENTRIES_FILE = "entries.parquet"
EMBEDDINGS_FILE = "embeddings.npy"
MANIFEST_FILE = "manifest.json"
DEFAULT_BANK = "default"
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


# --- reading inputs ---------------------------------------------------------------------------


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
    text = clean_prompt(text)
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
        text = clean_prompt(node["n"])
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
    vocab = encoder.model.tokenizer.get_vocab()
    words = sorted(w for w in vocab if _VOCABULARY_WORD.fullmatch(w) and w not in _STOPWORDS)
    return [BankEntry(word, VOCABULARY_CATEGORY, None, "encoder vocabulary") for word in words]


# --- the bank itself ----------------------------------------------------------------------------


@dataclass
class PromptBank:
    """Entries and their unit vectors, with a FAISS inner-product index over them."""

    path: Path | None
    texts: list[str]
    categories: list[str]
    frequencies: np.ndarray  # int64, -1 where unknown
    tokens: np.ndarray  # int32 word pieces per entry (no special tokens)
    embeddings: np.ndarray  # float16 (N, dim), what is stored
    manifest: dict[str, Any]
    _index: Any = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def index(self):
        """faiss.IndexFlatIP over the entries, built on first use."""
        if self._index is None:
            import faiss

            # FAISS multiplies with BLAS only from 128000 queries on by default; its own kernels
            # are ~4x slower than BLAS here from a few dozen queries on (decoding batches them).
            faiss.cvar.distance_compute_blas_threshold = 20
            index = faiss.IndexFlatIP(self.dim)
            for start in range(0, len(self), 65536):  # float32 copies a chunk at a time
                index.add(np.ascontiguousarray(self.embeddings[start : start + 65536], np.float32))
            self._index = index
        return self._index

    @property
    def vectors(self) -> np.ndarray:
        """The index's own float32 rows (a view, no copy)."""
        import faiss

        index = self.index
        return faiss.rev_swig_ptr(index.get_xb(), index.ntotal * self.dim).reshape(-1, self.dim)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Cosines and entry ids of the `k` nearest entries to each (unit) query row."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        return self.index.search(queries, min(k, len(self)))


def load_bank(path: str | Path, encoder: TargetEncoder | None = None) -> PromptBank:
    """Read a bank folder; with `encoder`, refuse a bank built with another one."""
    path = Path(path)
    manifest = read_manifest(path)
    if encoder is not None:
        check_encoder(path, manifest, encoder)
    # `source` (one string per entry) is only needed by `bank add`, which reads it itself.
    table = pq.read_table(path / ENTRIES_FILE, columns=["text", "category", "frequency", "tokens"])
    embeddings = np.load(path / EMBEDDINGS_FILE)
    if len(table) != len(embeddings) or len(table) != manifest.get("entries"):
        raise InputError(
            path,
            f"bank is inconsistent: {len(table)} entries, {len(embeddings)} vectors, manifest "
            f"says {manifest.get('entries')}; rebuild it",
        )
    return _bank_from_table(path, table, embeddings, manifest)


def read_manifest(path: Path) -> dict:
    """A bank folder's manifest alone (cheap: no entries or vectors are read)."""
    recover_dir(path)  # a write cut off between its two renames left the old bank aside
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        what = "no such folder" if not path.exists() else f"not a prompt bank (no {MANIFEST_FILE})"
        raise InputError(path, what + "; build one with `img2prompt bank build`")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(manifest_path, f"unreadable manifest: {e}") from None
    if manifest.get("format") != BANK_FORMAT:
        raise InputError(
            manifest_path, f"bank format {manifest.get('format')!r}, expected {BANK_FORMAT}"
        )
    return manifest


def check_encoder(path: Path, manifest: dict[str, Any], encoder: TargetEncoder) -> None:
    built = manifest.get("encoder", {})
    if built.get("fingerprint") != encoder.fingerprint:
        raise InputError(
            path,
            f"bank was built with encoder {built.get('spec')!r} (fingerprint "
            f"{built.get('fingerprint')}), but this run uses {encoder.spec!r} (fingerprint "
            f"{encoder.fingerprint}); its vectors would not match. Rebuild the bank with "
            f"--encoder {encoder.spec}, or decode with --encoder {built.get('spec')}",
        )


def _bank_from_table(
    path: Path | None, table: pa.Table, embeddings: np.ndarray, manifest: dict[str, Any]
) -> PromptBank:
    frequencies = table.column("frequency").fill_null(-1).to_numpy().astype(np.int64)
    return PromptBank(
        path=path,
        texts=table.column("text").to_pylist(),
        categories=table.column("category").to_pylist(),
        frequencies=frequencies,
        tokens=table.column("tokens").to_numpy().astype(np.int32),
        embeddings=embeddings,
        manifest=manifest,
    )


# --- building -----------------------------------------------------------------------------------


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
    words: bool = True,
    min_word_count: int = 2,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    vocabulary: bool = False,
    templates: str | Path | None = None,
    precision: str = "fp32",
) -> BankReport:
    """Read, de-duplicate and embed `inputs` into a new bank at `out` (replacing a bank there);
    `vocabulary` also adds the encoder's own whole words (see `vocabulary_entries`), `templates`
    the phrases a template folder makes (see `img2prompt.text.templates`). `precision` of the
    entries' vectors: `fp32`, `bf16` (~2.4x faster where the hardware has it, cosines within
    ~1e-4) or `auto` (bf16 where native)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST_FILE).is_file():
        raise InputError(out, "folder exists and is not a prompt bank; choose another --out")
    empty = PromptBank(
        path=None,
        texts=[],
        categories=[],
        frequencies=np.zeros(0, np.int64),
        tokens=np.zeros(0, np.int32),
        embeddings=np.zeros((0, encoder.dim), np.float16),
        manifest={},
    )
    settings = _Settings(
        words, min_word_count, batch_size, cache_dir, progress, vocabulary, templates, precision
    )
    return _extend(empty, inputs, out, encoder, settings)


def add_to_bank(
    bank_path: str | Path,
    inputs: Sequence[str | Path],
    encoder: TargetEncoder,
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
    words = built.get("enabled", False) if words is None else words
    min_word_count = built.get("min_count", 2) if min_word_count is None else min_word_count
    precision = bank.manifest.get("embeddings_precision", "fp32")  # keep the bank uniform
    settings = _Settings(
        words, min_word_count, batch_size, cache_dir, progress, False, None, precision
    )
    return _extend(bank, inputs, Path(bank_path), encoder, settings)


@dataclass
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
) -> BankReport:
    if not inputs:
        raise ConfigError("give at least one input file")
    errors = ErrorLog("fail")
    read: list[BankEntry] = []
    for path in inputs:
        read.extend(read_entries(path, errors))
    if settings.templates is not None:
        read.extend(template_entries(settings.templates))
    if settings.words:
        read.extend(derive_words(read, settings.min_word_count))
    if settings.vocabulary:
        read.extend(vocabulary_entries(encoder))

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

    bf16 = settings.precision == "bf16" or (
        settings.precision == "auto" and native_bf16(encoder.device)
    )
    vectors, embedded = _new_vectors(
        new, encoder, settings.batch_size, settings.cache_dir, settings.progress, bf16
    )
    texts = [entry.text for entry in new]
    tokens = _token_counts(encoder, texts)
    table = pa.table(
        {
            "text": pa.array(bank.texts + texts, pa.string()),
            "category": pa.array(bank.categories + [e.category for e in new], pa.string()),
            "frequency": pa.array(
                [None if f < 0 else int(f) for f in bank.frequencies] + [e.frequency for e in new],
                pa.int64(),
            ),
            "tokens": pa.array(np.concatenate([bank.tokens, tokens]), pa.int32()),
            "source": pa.array(_sources(bank) + [e.source for e in new], pa.string()),
        }
    )
    embeddings = np.concatenate([bank.embeddings, vectors.astype(np.float16)])
    categories = dict(Counter(bank.categories + [e.category for e in new]))  # first-seen order
    manifest = {
        "format": BANK_FORMAT,
        "entries": len(table),
        "encoder": {"spec": encoder.spec, "fingerprint": encoder.fingerprint, "dim": encoder.dim},
        "categories": categories,
        "inputs": [*bank.manifest.get("inputs", []), *(str(Path(p).resolve()) for p in inputs)],
        "words": {"enabled": settings.words, "min_count": settings.min_word_count},
        "vocabulary": settings.vocabulary or bool(bank.manifest.get("vocabulary", False)),
        "templates": [
            *bank.manifest.get("templates", []),
            *([str(Path(settings.templates).resolve())] if settings.templates is not None else []),
        ],
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
) -> tuple[np.ndarray, int]:
    """Vectors for new entries, and how many were embedded here: the ones they came with where
    the encoder agrees, else embedded (through the resumable on-disk cache, so an interrupted
    build loses little)."""
    vectors = np.zeros((len(entries), encoder.dim), dtype=np.float32)
    todo = []
    for row, entry in enumerate(entries):
        same_encoder = entry.vector_encoder in (None, encoder.fingerprint)
        if entry.vector is not None and len(entry.vector) == encoder.dim and same_encoder:
            vectors[row] = entry.vector
        else:
            todo.append(row)
    if todo:
        texts = [entries[row].text for row in todo]
        vectors[todo] = embed_texts(
            texts, encoder, cache_dir, batch_size, progress=progress, bf16=bf16
        )
    return vectors, len(todo)


def _token_counts(encoder: TargetEncoder, texts: Sequence[str]) -> np.ndarray:
    if not texts:
        return np.zeros(0, dtype=np.int32)
    ids = encoder.model.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
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


# --- the bank that ships with the package -------------------------------------------------------


def default_bank_files() -> list[Path]:
    """The phrase lists in `img2prompt/assets/bank/`, one category per file."""
    folder = resources.files("img2prompt") / "assets" / "bank"
    return sorted(Path(str(item)) for item in folder.iterdir() if item.name.endswith(".txt"))


def default_template_folder() -> Path:
    """`img2prompt/assets/bank/templates/`: rules and word lists that make phrases by combining
    (`img2prompt.text.templates`)."""
    return Path(str(resources.files("img2prompt") / "assets" / "bank" / "templates"))


def default_bank(
    encoder: TargetEncoder,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    vocabulary: bool = True,
    templates: bool = True,
) -> PromptBank:
    """The packaged bank: its phrase lists, (with `templates`) the ~30k phrases its templates
    make, their single words and (with `vocabulary`) the encoder's whole-word vocabulary: ~55k
    entries. Embedded on first use (in bfloat16 where the hardware has it: ~40 s on a quiet
    2-core CPU with AVX512-BF16) and kept under the cache folder, so no binary file is shipped
    that could drift from the text or from the encoder in use."""
    files = default_bank_files()
    template_folder = default_template_folder() if templates else None
    precision = "bf16" if native_bf16(encoder.device) else "fp32"
    digest = hashlib.blake2b(digest_size=8)
    digest.update(f"{BANK_FORMAT}|{encoder.fingerprint}|vocabulary={vocabulary}".encode())
    digest.update(f"|{precision}".encode())
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    if template_folder is not None:
        digest.update(f"|templates={TEMPLATES_FORMAT}".encode())
        for path in sorted(template_folder.glob("*.txt")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    root = Path(cache_dir) if cache_dir else default_cache_dir().parent / "banks"
    path = root / f"default-{digest.hexdigest()}"
    if not (path / MANIFEST_FILE).is_file():
        build_bank(
            files,
            path,
            encoder,
            min_word_count=1,
            progress=progress,
            vocabulary=vocabulary,
            templates=template_folder,
            precision=precision,
        )
    return load_bank(path, encoder)


def open_bank(spec: str | Path, encoder: TargetEncoder, progress: bool = True) -> PromptBank:
    """`default` (the packaged bank) or a bank folder."""
    if str(spec) == DEFAULT_BANK:
        return default_bank(encoder, progress=progress)
    return load_bank(spec, encoder)
