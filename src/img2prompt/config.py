"""Typed run configurations. Each field says what it does; `__post_init__` rejects bad values early,
with the option name a user typed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from img2prompt.data.embed import DEFAULT_BATCH_SIZE, DEFAULT_ENCODER


def _unit_interval(name: str, value: float) -> None:
    if not 0.0 < value <= 1.0:
        raise ValueError(f"--{name} must be a cosine in (0, 1], got {value}")


@dataclass
class PrepareConfig:
    inputs: list[Path]
    """Prompt corpora: CSV/TSV, Parquet (DiffusionDB metadata too), JSONL, JSON, TXT."""
    out: Path
    """Output folder for prompts.parquet and manifest.json."""
    images: Path | None = None
    """Folder of images named by row id (Kaggle: `{imgId}.png`; DiffusionDB: `image_name`)."""
    min_words: int = 3
    """Drop prompts with fewer words than this after cleaning."""
    max_words: int = 77
    """Drop prompts with more words than this after cleaning."""
    min_latin: float = 0.5
    """Drop prompts whose letters are less than this share Latin-script."""
    dedup_threshold: float = 0.9
    """Drop a prompt with cosine >= this to an already kept prompt (1.0: exact copies only)."""
    dedup_mode: str = "exact"
    """`exact` (equals brute force) or `approx` (IVF, for millions; prints measured recall)."""
    nprobe: int = 16
    """IVF lists searched per query in approx mode: higher is slower and more complete."""
    folds: int = 5
    """Number of group K-folds (1: everything in fold 0)."""
    group_threshold: float = 0.8
    """Prompts joined by a chain of cosines >= this share a group, and so a fold."""
    encoder: str = DEFAULT_ENCODER
    """Target encoder: a sentence-transformers name or path; the default is the offline scorer."""
    batch_size: int = DEFAULT_BATCH_SIZE
    """Texts per encoder batch (the default suits a CPU; raise it on a GPU)."""
    device: str = "auto"
    """`auto` (CUDA when present), `cpu`, `cuda`, `cuda:1`..."""
    cache_dir: Path | None = None
    """Embedding cache (default: $IMG2PROMPT_CACHE/embeddings or ~/.cache/img2prompt/embeddings)."""
    on_error: str = "fail"
    """`fail` at the first bad row, or `skip` it and count it in the summary and manifest."""

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ValueError("give at least one input file")
        if self.min_words < 0 or self.max_words < max(self.min_words, 1):
            raise ValueError(
                f"need 0 <= --min-words <= --max-words, got {self.min_words} and {self.max_words}"
            )
        if not 0.0 <= self.min_latin <= 1.0:
            raise ValueError(f"--min-latin must be in [0, 1], got {self.min_latin}")
        _unit_interval("dedup-threshold", self.dedup_threshold)
        _unit_interval("group-threshold", self.group_threshold)
        if self.dedup_mode not in ("exact", "approx"):
            raise ValueError(f"--dedup-mode must be exact or approx, got {self.dedup_mode!r}")
        if self.folds < 1:
            raise ValueError(f"--folds must be >= 1, got {self.folds}")
        if self.batch_size < 1 or self.nprobe < 1:
            raise ValueError("--batch-size and --nprobe must be >= 1")
        if self.on_error not in ("fail", "skip"):
            raise ValueError(f"--on-error must be fail or skip, got {self.on_error!r}")


@dataclass
class BankBuildConfig:
    inputs: list[Path]
    """Phrase or prompt files: TXT (one a line), CSV/TSV/JSONL/Parquet, JSON lists or phrase trees,
    prepared prompts.parquet (its `target` vectors are reused)."""
    out: Path
    """Bank folder to write (a bank already there is replaced)."""
    words: bool = True
    """Also add the single words of the entries (category `word`), so that decoding can name
    things no whole phrase says."""
    min_word_count: int = 2
    """A word becomes an entry when at least this many entries use it."""
    vocabulary: bool = False
    """Also add the encoder's own whole words (WordPiece tokens of 3+ letters; ~21k for MiniLM),
    category `vocabulary`: any word it knows can then appear in a prompt."""
    encoder: str = DEFAULT_ENCODER
    """Target encoder: a sentence-transformers name or path; the default is the offline scorer."""
    batch_size: int = 64
    """Texts per encoder batch (64 suits short phrases on a CPU)."""
    device: str = "auto"
    """`auto` (CUDA when present), `cpu`, `cuda`, `cuda:1`..."""
    cache_dir: Path | None = None
    """Embedding cache (default: $IMG2PROMPT_CACHE/embeddings or ~/.cache/img2prompt/embeddings)."""

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ValueError("give at least one input file")
        if self.min_word_count < 1 or self.batch_size < 1:
            raise ValueError("--min-word-count and --batch-size must be >= 1")


DECODE_OUTPUTS = (".txt", ".parquet")


@dataclass
class DecodeConfig:
    bank: str
    """`default` (the bank shipped with the package) or a bank folder."""
    text: list[str] | None = None
    """Texts to embed and decode back (a round trip: how decoding quality is measured)."""
    texts: Path | None = None
    """A file of texts to round-trip: TXT (one a line), CSV/TSV/JSONL/Parquet/JSON."""
    embeddings: Path | None = None
    """An (N, dim) .npy of target vectors, one prompt per row."""
    out: Path | None = None
    """`.txt`: the prompts, one a line in input order; `.parquet`: with scores and neighbours."""
    mode: str = "best"
    """`fast` (nearest entries, greedy assembly) or `best` (beam search scored by the encoder)."""
    max_words: int = 60
    """Longest prompt in words."""
    beam_width: int = 3
    """`best`: prompts kept after each step."""
    encodes_per_step: int = 24
    """`best`: extensions per prompt and step scored by the encoder."""
    encoder: str = DEFAULT_ENCODER
    """Target encoder; must be the one the bank was built with."""
    device: str = "auto"
    """`auto` (CUDA when present), `cpu`, `cuda`, `cuda:1`..."""

    def __post_init__(self) -> None:
        given = [name for name in ("text", "texts", "embeddings") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError("give exactly one of --text, --texts, --embeddings")
        if self.out is not None and self.out.suffix.lower() not in DECODE_OUTPUTS:
            raise ValueError(f"--out must end in one of {DECODE_OUTPUTS}, got {self.out.name!r}")
        if self.max_words < 1 or self.beam_width < 1 or self.encodes_per_step < 1:
            raise ValueError("--max-words, --beam-width and --encodes-per-step must be >= 1")
