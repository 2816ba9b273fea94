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


TRAIN_PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true")


@dataclass
class TrainConfig:
    data: Path
    """Prepared folder whose prompts.parquet has an `image` column (`data prepare --images`)."""
    backbone: str
    """Backbone spec: hf-clip:ID_OR_DIR, hf-convnext:ID_OR_DIR, efficientnet-lite0, tiny-clip..."""
    out: Path
    """Run folder: model/, config.yaml, metrics.csv, curves.png, oof.parquet, checkpoints/."""
    head: str = "linear"
    """`linear` (Xavier init) or `mlp` (Linear -> BatchNorm -> ReLU -> Linear)."""
    head_hidden: int = 16 * 1024
    """Hidden width of the mlp head (the first-place text: 16 x 1024)."""
    pool: str = "default"
    """`default` (backbone's pooling: CLS for CLIP) or `gem` over patch tokens."""
    gem_p: float = 2.0
    """GeM exponent."""
    style_backbone: str | None = None
    """Frozen style extractor concatenated to the backbone's features (hf-convnext:...)."""
    loss: str = "cosine"
    """`cosine`, `mnrl`, or weighted: `cosine=1,mnrl=0.2`."""
    mnrl_scale: float = 384**0.5
    """MNRL logit scale (seed 000: sqrt(384))."""
    epochs: int = 5
    """Epochs with the backbone trainable (after the LP epochs)."""
    lp_epochs: int = 0
    """LP-FT: epochs training the head alone on a frozen backbone first."""
    freeze_backbone: bool = False
    """Train only the head for all epochs (features computed once and cached)."""
    cache_features: bool = True
    """Compute frozen features once (LP phase, style extractor) instead of every epoch."""
    freeze_layers: int = 0
    """Freeze the backbone's first N layer groups (embeddings count as one) during fine-tuning."""
    reinit_layers: int = 0
    """Re-initialise the backbone's top N blocks before training (seed 000's freeze & re-init)."""
    batch_size: int = 32
    """Images per step per device."""
    accumulate: int = 1
    """Gradient accumulation steps (effective batch = batch_size x accumulate x devices)."""
    lr: float = 1e-3
    """Peak learning rate of the head (and of the backbone unless --backbone-lr)."""
    backbone_lr: float | None = None
    """Peak learning rate of the backbone's top layer group (default: --lr)."""
    layer_decay: float = 1.0
    """Layer-wise LR decay: each group below the top gets this factor once more (1: off)."""
    weight_decay: float = 0.05
    """AdamW weight decay (not applied to biases and norms)."""
    warmup: float = 0.05
    """Share of each phase's steps spent warming the LR up linearly, then cosine to zero."""
    clip_grad: float | None = 1.0
    """Clip the gradient norm to this (None: off)."""
    ema: float | None = None
    """EMA decay of the weights (e.g. 0.999); validation and the saved model use the average."""
    mixgen: float = 0.0
    """MixGen: share of each batch replaced by mixed images with concatenated prompts."""
    hflip: bool = False
    """Random horizontal flips."""
    fold: str = "0"
    """Validation fold: a number, `all` (K-fold with out-of-fold predictions) or `none`."""
    seed: int = 0
    """Seed for initialisation, shuffling and augmentation."""
    devices: int = 1
    """Devices (GPUs, or CPU processes) per node."""
    num_nodes: int = 1
    """Machines, for multi-node DDP."""
    accelerator: str = "auto"
    """auto, cpu, cuda, mps."""
    strategy: str = "auto"
    """Lightning strategy: auto, ddp, fsdp ..."""
    precision: str = "auto"
    """auto (bf16-mixed on a CUDA GPU that has it, else 32-true), 32-true, bf16-mixed, 16-mixed."""
    workers: int = 2
    """Image-decoding worker processes per device."""
    encoder: str = DEFAULT_ENCODER
    """Target encoder (MixGen embeds the concatenated prompts with it)."""
    resume: bool = False
    """Continue the run in `out` from its last checkpoint."""
    stop_after_epochs: int | None = None
    """Stop (resumably) after this many epochs in this invocation; for time-boxed jobs."""

    def __post_init__(self) -> None:
        from img2prompt.train.losses import parse_loss_weights

        self.data, self.out = Path(self.data), Path(self.out)
        self.model_config()  # checks head, pool and sizes
        parse_loss_weights(self.loss)
        if self.epochs < 0 or self.lp_epochs < 0 or self.epochs + self.lp_epochs == 0:
            raise ValueError("need --epochs >= 0, --lp-epochs >= 0 and at least one epoch")
        if self.batch_size < 1 or self.accumulate < 1 or self.devices < 1 or self.num_nodes < 1:
            raise ValueError("--batch-size, --accumulate, --devices and --num-nodes must be >= 1")
        if self.lr <= 0 or (self.backbone_lr is not None and self.backbone_lr <= 0):
            raise ValueError("learning rates must be > 0")
        if not 0 < self.layer_decay <= 1:
            raise ValueError(f"--layer-decay must be in (0, 1], got {self.layer_decay}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"--warmup is a share of steps in [0, 1), got {self.warmup}")
        if self.ema is not None and not 0 < self.ema < 1:
            raise ValueError(f"--ema is a decay in (0, 1), e.g. 0.999; got {self.ema}")
        if not 0 <= self.mixgen <= 1:
            raise ValueError(f"--mixgen is a share of the batch in [0, 1], got {self.mixgen}")
        if self.fold not in ("all", "none") and not str(self.fold).isdigit():
            raise ValueError(f"--fold must be a fold number, all or none; got {self.fold!r}")
        self.fold = str(self.fold)
        if self.precision not in TRAIN_PRECISIONS:
            raise ValueError(f"--precision must be one of {', '.join(TRAIN_PRECISIONS)}")
        if self.freeze_layers < 0 or self.reinit_layers < 0 or self.workers < 0:
            raise ValueError("--freeze-layers, --reinit-layers and --workers must be >= 0")

    def model_config(self):
        from img2prompt.models.model import ModelConfig

        return ModelConfig(
            backbone=self.backbone,
            head=self.head,
            head_hidden=self.head_hidden,
            pool=self.pool,
            gem_p=self.gem_p,
            style_backbone=self.style_backbone,
            target_encoder=self.encoder,
        )


def load_recipe(path: Path) -> dict:
    """A YAML recipe as TrainConfig values; unknown keys are an error naming the file."""
    import dataclasses

    import yaml

    from img2prompt.errors import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such recipe file")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        raise InputError(path, f"not valid YAML: {e}", None if line is None else line + 1) from None
    if not isinstance(values, dict):
        raise InputError(path, "a recipe is a mapping of option: value")
    values = {str(k).replace("-", "_"): v for k, v in values.items()}
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(path, f"unknown keys {unknown}; known: {sorted(known)}")
    return values


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
    templates: Path | None = None
    """Also add the phrases a template folder makes: `rules.txt` (`category: a {adj} {noun}`)
    and its word lists (`adj.txt`, `noun.txt`), every combination (`img2prompt.text.templates`)."""
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
