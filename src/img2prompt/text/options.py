"""The options of decoding (`decode`, and the decoding inside `describe` and `serve`) and of
prompt banks (`bank build`, `bank add`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from img2prompt.device import Device, Precision, refuse_precision
from img2prompt.errors import ConfigError
from img2prompt.fields import POSITIONAL, at_least, check_choices
from img2prompt.results import check_result_output
from img2prompt.targets.encoder import DEFAULT_ENCODER
from img2prompt.targets.options import BANK_EMBED_BATCH, EmbedOptions


@dataclass
class DecodeOptions:
    """How hard the decoder searches (times and round trips: docs/readable-prompts.md)."""

    mode: str = "best"
    """A registered decode mode (`text/strategies.py`): `fast` (nearest entries, greedy
    assembly; milliseconds) or `best` (beam search scored by the encoder; under a second): both
    build prompts from words that prompts use. `max`: `best` with any bank entry, dictionary
    filler included: the highest round trip, for the competition and embedding inversion; its
    output is not meant to be read."""
    max_words: int = 60
    """Longest prompt in words (Stable Diffusion's CLIP reads 77 tokens; 60 words fit)."""
    max_phrases: int = 12
    """Most phrases in one prompt (more helps long prompts, at more time)."""
    shortlist: int = 256
    """Entries nearest to the target that every step may choose from."""
    residual_shortlist: int = 48
    """Entries nearest to each beam's residual added to the pool at each step (`best`)."""
    beam_width: int = 3
    """`best`: prompts kept after each step."""
    encodes_per_step: int = 20
    """`best`: extensions per prompt and step scored by the encoder (the search's cost)."""
    patience: int = 0
    """Steps the beam search goes on without improving its best prompt (`best`): one more
    phrase can lower the match and the next raise it again, but on the dev prompts going on
    one step gained 0.0006 of round trip for 19% more encoded tokens."""
    cleanup: bool = True
    """Drop phrases whose removal does not lower the match (`best`)."""
    min_gain: float = 0.0
    """`best`: clean-up also drops a phrase whose removal lowers the match by less than this,
    so a vague embedding is not spelled out as a list of faint subjects."""
    swap_rounds: int = 2
    """Rounds of trying to replace one phrase of the best prompt by another (`best`)."""
    fast_shortlist: int = 1024
    """Entries `fast` assembles from."""
    fast_max_phrases: int = 7
    """Most phrases `fast` assembles; the encoder then picks the best of the prefixes."""
    neighbors: int = 5
    """Nearest bank entries reported beside each prompt."""
    batch_size: int = 64
    """Texts per encoder batch (64 suits a CPU)."""
    search_precision: Precision = "auto"
    """Precision of the encodes that rank candidates: `bf16` (within ~1e-4 of float32, much
    faster where the CPU has native bfloat16), `int8` (int8 linear layers: the fast path of CPUs
    without it; MiniLM encoders on a CPU), `fp32`, or `auto` (bf16 where the hardware has it,
    else int8 where the bank's first texts keep cosine >= 0.999 to fp32, else fp32); fp16 is
    refused. Printed matches are always float32."""

    def __post_init__(self) -> None:
        # `mode` is checked against the registry when a Decoder is made: a mode registered by a
        # plugin is known there, and this stays free of the search's imports.
        check_choices(self)
        refuse_precision("fp16", search_precision=self.search_precision)
        if self.max_words < 1 or self.max_phrases < 1:
            raise ConfigError("--max-words and --max-phrases must be >= 1")
        at_least(1, shortlist=self.shortlist, beam_width=self.beam_width)
        at_least(1, encodes_per_step=self.encodes_per_step, fast_shortlist=self.fast_shortlist)
        at_least(1, fast_max_phrases=self.fast_max_phrases, batch_size=self.batch_size)
        if min(self.residual_shortlist, self.neighbors, self.patience, self.swap_rounds) < 0:
            raise ConfigError("residual_shortlist, neighbors, patience, swap_rounds must be >= 0")
        if not self.min_gain >= 0:  # also refuses NaN
            raise ConfigError(f"--min-gain must be >= 0, got {self.min_gain}")


@dataclass
class DecodeConfig:
    bank: str = "default"
    """`default` (the bank shipped with the package) or a bank folder."""
    text: list[str] | None = None
    """A text to embed and decode back (a round trip: how decoding quality is measured);
    repeatable."""
    texts: Path | None = None
    """A file of texts to round-trip: TXT (one a line), CSV/TSV/JSONL/Parquet/JSON."""
    embeddings: Path | None = None
    """An (N, 384) .npy of target vectors, one prompt per row."""
    out: Path | None = None
    """`.txt`: the prompts, one a line in input order (blank input lines are skipped);
    `.json` or `.parquet`: with each prompt's match, phrases and nearest bank entries."""
    encoder: str = DEFAULT_ENCODER
    """Target encoder; must be the one the bank was built with."""
    device: Device = "auto"
    """`auto` (CUDA when present), `cpu`, `cuda`, `cuda:1`..."""
    options: DecodeOptions = field(default_factory=DecodeOptions)
    """The search (spelled flat: `--mode`, `--max-words`, `--beam-width`...)."""

    def __post_init__(self) -> None:
        given = [name for name in ("text", "texts", "embeddings") if getattr(self, name)]
        if len(given) != 1:
            raise ConfigError("give exactly one of --text, --texts, --embeddings")
        check_result_output(self.out)


@dataclass
class BankBuildConfig:
    inputs: list[Path] = field(metadata=POSITIONAL)
    """Phrase or prompt files: TXT (one a line), CSV/TSV/JSONL/Parquet with a prompt column, JSON
    lists or phrase trees, prepared prompts.parquet (its `target` vectors are reused). The
    category is the file name or a `category` column; a `frequency`/`count` column (or a tree's
    counts) gives frequencies."""
    out: Path
    """Bank folder to write (a bank already there is replaced)."""
    words: bool = True
    """Also add the single words of the entries (category `word`), so that decoding can name
    things no whole phrase says."""
    min_word_count: int = 2
    """A word becomes an entry when at least this many entries use it."""
    vocabulary: bool = False
    """Also add the encoder's own whole words (WordPiece tokens of 3+ letters; ~21k for MiniLM)."""
    templates: Path | None = None
    """Also add the phrases a template folder makes: `rules.txt` (`category: a {adj} {noun}`)
    and its word lists, every combination (the packaged one:
    src/img2prompt/assets/bank/templates)."""
    encoder: str = DEFAULT_ENCODER
    """Target encoder: a sentence-transformers name or path; the default is the offline scorer."""
    embed: EmbedOptions = field(default_factory=lambda: EmbedOptions(BANK_EMBED_BATCH))
    """How entries are embedded (spelled flat: `--batch-size`, `--device`, `--cache-dir`)."""

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ConfigError("give at least one input file")
        at_least(1, min_word_count=self.min_word_count)


@dataclass
class BankAddConfig:
    bank: Path = field(metadata=POSITIONAL)
    """Bank folder to extend (its own encoder embeds the new entries)."""
    inputs: list[Path] = field(metadata=POSITIONAL)
    """More phrase or prompt files (as for `bank build`)."""
    embed: EmbedOptions = field(default_factory=lambda: EmbedOptions(BANK_EMBED_BATCH))
    """How entries are embedded (spelled flat: `--batch-size`, `--device`, `--cache-dir`)."""

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ConfigError("give at least one input file")
