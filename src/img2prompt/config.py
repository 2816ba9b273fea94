"""Typed run configurations. Each field says what it does; `__post_init__` rejects bad values early,
with the option name a user typed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from img2prompt.data.embed import DEFAULT_BATCH_SIZE, DEFAULT_ENCODER
from img2prompt.generate.presets import PRECISIONS, PRESETS, SCHEDULERS


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
class GenerateConfig:
    prompts: Path
    """Prompts table (Parquet with `prompt` and `id`; `data prepare`'s prompts.parquet)."""
    out: Path
    """Output folder: shards/NNNNN/*.png, images.parquet, generate.json."""
    preset: str = "competition"
    """Defaults for model, steps, guidance, size, save size and scheduler (see presets.py)."""
    model: str | None = None
    """Diffusers Stable Diffusion pipeline: hub id or local folder (default: the preset's)."""
    images_per_prompt: int = 1
    """Images per prompt, each with its own seed."""
    seed: int = 0
    """Base seed; image k of prompt p gets a seed hashed from (seed, prompt id, k)."""
    steps: int | None = None
    """Denoising steps (default: the preset's)."""
    guidance: float | None = None
    """Classifier-free guidance scale (default: the preset's)."""
    size: int | None = None
    """Generation size in pixels, a multiple of 8 (default: the preset's)."""
    save_size: int | None = None
    """Stored size in pixels: images are resized (Lanczos) before saving (default: the preset's)."""
    scheduler: str | None = None
    """Sampler (default: the preset's); `default` keeps the checkpoint's own."""
    negative_prompt: str = ""
    """Negative prompt for every image (empty: none)."""
    batch_size: int = 4
    """Images per pipeline call. Part of a run's identity: on CPU and GPU a batch's pixels differ
    from single images' in the last float bits, so resuming with another size is refused."""
    precision: str = "auto"
    """`auto` (fp16 on CUDA, fp32 on CPU), `fp32`, `fp16`, `bf16`."""
    shard_size: int = 1000
    """Images per shard folder; a shard is the unit of resuming and of splitting across ranks."""
    limit: int | None = None
    """Use only the first N prompts."""
    device: str = "auto"
    """`auto` (cuda:LOCAL_RANK when CUDA is present, else CPU), `cpu`, `cuda`, `cuda:1`..."""
    safety_checker: bool = False
    """Run the checkpoint's safety checker (it blacks out flagged images; off by default)."""

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"--preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        preset = PRESETS[self.preset]
        for name in ("model", "steps", "guidance", "size", "save_size", "scheduler"):
            if getattr(self, name) is None:
                setattr(self, name, getattr(preset, name))
        if not self.model:
            raise ValueError("--model must name a hub id or a folder")
        for name in ("images_per_prompt", "steps", "batch_size", "shard_size"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}"
                )
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {self.limit}")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"--seed must be in [0, 2**63), got {self.seed}")
        if self.guidance < 0:
            raise ValueError(f"--guidance must be >= 0, got {self.guidance}")
        if self.size < 8 or self.size % 8:
            raise ValueError(f"--size must be a positive multiple of 8, got {self.size}")
        if self.save_size < 1:
            raise ValueError(f"--save-size must be >= 1, got {self.save_size}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"--scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {PRECISIONS}, got {self.precision!r}")
