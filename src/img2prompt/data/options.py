"""The options of `data prepare` (what `data.prepare.prepare` reads)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from img2prompt.errors import ConfigError
from img2prompt.fields import POSITIONAL, at_least, check_choices, unit_interval
from img2prompt.targets.encoder import DEFAULT_ENCODER
from img2prompt.targets.options import EmbedOptions

DedupMode = Literal["exact", "approx"]
OnError = Literal["fail", "skip"]


@dataclass
class PrepareConfig:
    inputs: list[Path] = field(metadata=POSITIONAL)
    """Prompt corpora: .csv .tsv .parquet (DiffusionDB metadata too) .jsonl .json .txt (one prompt
    per line). Kaggle's prompts.csv works as it is. A folder of your own SD images: each image's
    embedded prompt (A1111, ComfyUI, InvokeAI, NovelAI, Fooocus, SwarmUI, Draw Things...) and
    path."""
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
    dedup_mode: DedupMode = "exact"
    """`exact` (equals brute force) or `approx` (IVF, for millions; prints measured recall)."""
    nprobe: int = 16
    """IVF lists searched per query in approx mode: higher is slower and more complete."""
    folds: int = 5
    """Number of group K-folds (1: everything in fold 0)."""
    group_threshold: float = 0.8
    """Prompts joined by a chain of cosines >= this share a group, and so a fold."""
    encoder: str = DEFAULT_ENCODER
    """Target encoder: a sentence-transformers name or path; the default is the offline scorer."""
    embed: EmbedOptions = field(default_factory=EmbedOptions)
    """How the targets are computed (spelled flat: `--batch-size`, `--device`, `--cache-dir`)."""
    on_error: OnError = "fail"
    """`fail` at the first bad row, or `skip` it and count it in the summary and manifest."""

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ConfigError("give at least one input file")
        self.inputs, self.out = [Path(p) for p in self.inputs], Path(self.out)
        if self.min_words < 0 or self.max_words < max(self.min_words, 1):
            raise ConfigError(
                f"need 0 <= --min-words <= --max-words, got {self.min_words} and {self.max_words}"
            )
        if not 0.0 <= self.min_latin <= 1.0:
            raise ConfigError(f"--min-latin must be in [0, 1], got {self.min_latin}")
        check_choices(self)
        unit_interval(dedup_threshold=self.dedup_threshold, group_threshold=self.group_threshold)
        at_least(1, folds=self.folds, nprobe=self.nprobe)
