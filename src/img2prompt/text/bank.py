"""Prompt banks: phrases and prompts with their target-space vectors, searchable with FAISS.

A bank is a folder:

- `entries.parquet`: `text`, `category` (from the file name or a `category` column), `frequency`
  (how often the phrase was seen, null when unknown), `tokens` (encoder word pieces, the weight of
  the phrase when embeddings are added up), `norm` (the length of its mean token vector before
  normalisation, null where the vector came with the entry: with `tokens`, how strongly the phrase
  pulls a prompt's vector) and `source` (the input file);
- `embeddings.npy`: float16 (N, dim) unit rows in entry order. Half precision halves the file and
  barely moves a cosine (docs/readable-prompts.md), and decoding scores its final prompt with the
  encoder itself, so no printed figure depends on it;
- `manifest.json`: format version, the encoder (spec, fingerprint, dim), counts per category, the
  inputs it was built from.

Searches are exhaustive (inner product over unit rows = cosine: `PromptBank.search`), straight
over the rows: no index is built or saved.
A bank is written into a fresh folder that then replaces the old one, so an interrupted build or
`add` leaves the previous bank whole.

This module is the face of the bank code and holds the bank that ships with the package; the
rest lives by concern: `bank_sources.py` reads inputs into entries, `bank_index.py` is the folder
format and the loaded, searchable `PromptBank`, `bank_build.py` builds and extends banks. Import
from here: `from img2prompt.text.bank import build_bank, load_bank, open_bank, ...`.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

from img2prompt.device import native_bf16
from img2prompt.io import cache_folder
from img2prompt.targets.encoder import TargetEncoder
from img2prompt.text.bank_build import add_to_bank, build_bank
from img2prompt.text.bank_index import (
    BANK_FORMAT,
    MANIFEST_FILE,
    PromptBank,
    load_bank,
    read_bank_manifest,
)
from img2prompt.text.bank_sources import (
    ENTRY_RULES,
    VOCABULARY_CATEGORY,
    derive_words,
    entry_key,
    read_entries,
    vocabulary_entries,
)
from img2prompt.text.templates import TEMPLATES_FORMAT

# What callers import from here (the rest lives in bank_sources / bank_index / bank_build).
__all__ = [
    "BANK_FORMAT",
    "DEFAULT_BANK",
    "MANIFEST_FILE",
    "VOCABULARY_CATEGORY",
    "PromptBank",
    "add_to_bank",
    "build_bank",
    "default_bank",
    "default_bank_files",
    "default_template_folder",
    "derive_words",
    "entry_key",
    "load_bank",
    "open_bank",
    "read_bank_manifest",
    "read_entries",
    "vocabulary_entries",
]

DEFAULT_BANK = "default"


# --- the bank that ships with the package -------------------------------------------------------


def _packaged_lists(*folder: str) -> list[Path]:
    root = resources.files("img2prompt").joinpath("assets", "bank", *folder)
    return sorted(Path(str(item)) for item in root.iterdir() if item.name.endswith(".txt"))


def default_bank_files() -> list[Path]:
    """The phrase lists in `img2prompt/assets/bank/`, one category per file."""
    return _packaged_lists()


def default_public_files() -> list[Path]:
    """`img2prompt/assets/bank/public/`: CLIP Interrogator's artists, movements and 79k of its
    "flavors" (MIT; scripts/make_phrase_lists.py writes them from its wheel)."""
    return _packaged_lists("public")


def default_template_folder() -> Path:
    """`img2prompt/assets/bank/templates/`: rules and word lists that make phrases by combining
    (`img2prompt.text.templates`)."""
    return Path(str(resources.files("img2prompt") / "assets" / "bank" / "templates"))


def default_bank(
    encoder: TargetEncoder,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    vocabulary: bool = False,
    templates: bool = True,
) -> PromptBank:
    """The packaged bank: its phrase lists, (with `templates`) the ~30k phrases its templates make,
    the single words of both, `dictionary.txt`'s ~46k real English words
    (scripts/make_dictionary.py says where they come from) and the phrases of `public/` (CLIP
    Interrogator's artists, movements and flavors, without their single words): ~154k entries.
    `vocabulary` adds the encoder's WordPiece words, which the dictionary replaced: they include
    name pieces such as "devi" and "vol". Embedded on first use (in bfloat16 where the hardware
    has it; minutes on a CPU, docs/readable-prompts.md) and kept under the cache folder, so no
    binary file is shipped that could drift from the text or from the encoder in use."""
    files = default_bank_files()
    public = default_public_files()
    template_folder = default_template_folder() if templates else None
    precision = "bf16" if native_bf16(encoder.device) else "fp32"
    digest = hashlib.blake2b(digest_size=8)
    digest.update(f"{BANK_FORMAT}|{encoder.fingerprint}|vocabulary={vocabulary}".encode())
    digest.update(f"|{precision}|entries={ENTRY_RULES}".encode())
    for path in files + public:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    if template_folder is not None:
        digest.update(f"|templates={TEMPLATES_FORMAT}".encode())
        for path in sorted(template_folder.glob("*.txt")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    root = Path(cache_dir) if cache_dir else cache_folder("banks")
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
            phrases_only=public,
        )
    return load_bank(path, encoder)


def open_bank(spec: str | Path, encoder: TargetEncoder, progress: bool = True) -> PromptBank:
    """`default` (the packaged bank) or a bank folder."""
    if str(spec) == DEFAULT_BANK:
        return default_bank(encoder, progress=progress)
    return load_bank(spec, encoder)
