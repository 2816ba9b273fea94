"""Every option of every command, defined once: typed dataclasses whose field docstrings are the
`--help` text and whose `__post_init__` rejects bad values early with a `ConfigError` naming the
option a user typed.

`img2prompt.options` turns these classes into the command line (flat `--min-words`, dotted
`--model.head` for nested fields) and reads `--config FILE.yaml` recipes; nothing else restates a
choice, a default or a help text. Choices are `Literal` types defined here, once.

Kept free of heavy imports: `img2prompt --help` reads this module.
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field, fields
from pathlib import Path
from typing import ClassVar, Literal, get_args

from img2prompt.data.embed import DEFAULT_BATCH_SIZE, DEFAULT_ENCODER
from img2prompt.data.images import MAX_PIXELS
from img2prompt.errors import ConfigError, warn_renamed
from img2prompt.generate.presets import PresetName, SchedulerName

# --- vocabularies --------------------------------------------------------------------------------

Precision = Literal["auto", "fp32", "bf16", "fp16"]
"""The one precision vocabulary. `auto` is each command's own safe choice (generate: fp16 on CUDA,
fp32 on CPU; predict and decoding: bf16 where the hardware computes it natively and it holds
accuracy). Prediction and decoding search refuse `fp16` (bf16 keeps float32's range; fp16 is
only offered where diffusers is used to it, in `generate`)."""

LightningPrecision = Literal["32-true", "bf16-mixed", "16-mixed", "bf16-true"]
"""Lightning's own names, also accepted by `train` (mixed vs true is a training distinction)."""

LIGHTNING_PRECISION: dict[str, str] = {"fp32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed"}
"""How `train --precision` words map to Lightning: mixed precision (float32 master weights), the
standard for fine-tuning. `auto` is bf16-mixed on a CUDA GPU that has bf16, else 32-true."""

TrainPrecision = Literal[Precision, LightningPrecision]
Device = str  # auto, cpu, cuda, cuda:1 ... (free text: any torch device)
PoolType = str  # a registered pooling (`models/pooling.py`), checked against the registry
BackboneWeights = Literal["saved", "pretrained"]
TTAName = Literal["none", "hflip", "zoom", "hflip+zoom"]
DecodeMode = Literal["fast", "best", "max"]
DedupMode = Literal["exact", "approx"]
OnError = Literal["fail", "skip"]
IndexSearch = Literal["exact", "ivf", "hnsw"]
MetadataUse = Literal["auto", "ignore", "only"]
SidecarKind = Literal["none", "txt", "caption"]
Strategy = Literal["auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true"]
"""Lightning strategies the loop supports. Not FSDP/DeepSpeed: the frozen-feature cache, the EMA
copy (`AveragedModel`) and the LLRD parameter groups all assume whole, unsharded parameters."""

NOT_TRAINABLE_HEADS = ("class-mixture",)  # the packaged default model's zero-shot head

POSITIONAL = {"positional": True}
"""Field metadata: the option is a positional argument (`predict MODEL IMAGES...`)."""


def _unit_interval(name: str, value: float) -> None:
    if not 0.0 < value <= 1.0:
        raise ConfigError(f"--{name} must be a cosine in (0, 1], got {value}")


def _at_least(minimum: int, **values: int | None) -> None:
    for name, value in values.items():
        if value is not None and value < minimum:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= {minimum}, got {value}")


def _no_fp16(option: str, value: str) -> None:
    if value == "fp16":
        raise ConfigError(f"{option} fp16 is not offered here: use bf16 (float32's range) or fp32")


# --- data ----------------------------------------------------------------------------------------


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
    batch_size: int = DEFAULT_BATCH_SIZE
    """Texts per encoder batch (the default suits a CPU; raise it on a GPU)."""
    device: Device = "auto"
    """`auto` (CUDA when present), `cpu`, `cuda`, `cuda:1`..."""
    cache_dir: Path | None = None
    """Embedding cache (default: $IMG2PROMPT_CACHE/embeddings or ~/.cache/img2prompt/embeddings)."""
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
        _unit_interval("dedup-threshold", self.dedup_threshold)
        _unit_interval("group-threshold", self.group_threshold)
        _check_choice("dedup-mode", self.dedup_mode, DedupMode)
        _check_choice("on-error", self.on_error, OnError)
        _at_least(1, folds=self.folds, batch_size=self.batch_size, nprobe=self.nprobe)


# --- generation ----------------------------------------------------------------------------------


@dataclass
class GenerateConfig:
    prompts: Path
    """Prompts table: `data prepare`'s prompts.parquet (or any Parquet table with a `prompt`
    column, and `id`)."""
    out: Path
    """Output folder: shards/NNNNN/*.png, images.parquet, generate.json."""
    preset: PresetName = "competition"
    """Defaults for model, steps, guidance, size, save size and scheduler. `competition`: the
    competition's data (SD 2.0 768-v, 768 px, 50 DDIM steps, guidance 7, saved at 512 px);
    `fast`: DPM-Solver++ at 20 steps (a draft in far less time)."""
    model: str | None = None
    """Diffusers SD 1.x/2.x pipeline: hub id or local folder (default: the preset's,
    stabilityai/stable-diffusion-2)."""
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
    scheduler: SchedulerName | None = None
    """Sampler (default: the preset's); `default` keeps the checkpoint's own."""
    negative_prompt: str = ""
    """Negative prompt for every image (empty: none)."""
    batch_size: int = 4
    """Images per pipeline call. Part of a run's identity: on CPU and GPU a batch's pixels differ
    from single images' in the last float bits, so resuming with another size is refused."""
    precision: Precision = "auto"
    """`auto` (fp16 on CUDA, fp32 on CPU), `fp32`, `bf16`, `fp16`."""
    shard_size: int = 1000
    """Images per shard folder; a shard is the unit of resuming and of splitting across ranks."""
    limit: int | None = None
    """Use only the first N prompts."""
    device: Device = "auto"
    """`auto` (cuda:LOCAL_RANK when CUDA is present, else CPU), `cpu`, `cuda`, `cuda:1`..."""
    safety_checker: bool = False
    """Run the checkpoint's safety checker (it blacks out flagged images; off by default)."""

    def __post_init__(self) -> None:
        from img2prompt.generate.presets import PRESETS

        _check_choice("preset", self.preset, PresetName)
        preset = PRESETS[self.preset]
        for name in ("model", "steps", "guidance", "size", "save_size", "scheduler"):
            if getattr(self, name) is None:
                setattr(self, name, getattr(preset, name))
        self.prompts, self.out = Path(self.prompts), Path(self.out)
        if not self.model:
            raise ConfigError("--model must name a hub id or a folder")
        _at_least(1, images_per_prompt=self.images_per_prompt, steps=self.steps)
        _at_least(1, batch_size=self.batch_size, shard_size=self.shard_size, limit=self.limit)
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"--seed must be in [0, 2**63), got {self.seed}")
        if self.guidance < 0:
            raise ConfigError(f"--guidance must be >= 0, got {self.guidance}")
        if self.size < 8 or self.size % 8:
            raise ConfigError(f"--size must be a positive multiple of 8, got {self.size}")
        _at_least(1, save_size=self.save_size)
        _check_choice("scheduler", self.scheduler, SchedulerName)
        _check_choice("precision", self.precision, Precision)


# --- models and training -------------------------------------------------------------------------


@dataclass
class ModelConfig:
    """The architecture; saved in model.json, so prediction rebuilds it with no training code."""

    backbone: str
    """hf-clip:openai/clip-vit-large-patch14 (or -336, or a folder), hf-convnext:ID_OR_DIR,
    efficientnet-lite0 (offline ImageNet), tiny-clip, tiny-convnext, timm:NAME,
    open-clip:ARCH/TAG."""
    head: str = "linear"
    """A registered head (`models/heads.py`): `linear` (Xavier init), `mlp` (Linear -> BatchNorm
    -> ReLU -> Linear) or `class-mixture` (zero-shot through a classifier; not trainable)."""
    head_options: str = ""
    """The head's own settings as `key=value,...`, so each head brings its options without a
    flag of its own: `hidden=4096` narrows `mlp` (default 16384). Every head's options and
    defaults are listed in docs/options.md."""
    pool: PoolType = "default"
    """A registered pooling (`models/pooling.py`): `default` (the backbone's own, CLS for CLIP)
    or `gem` (GeM over patch tokens)."""
    pool_options: str = ""
    """The pooling's own settings as `key=value,...`: `p=3` is GeM's exponent (default 2, as
    seed 000). Listed in docs/options.md."""
    style_backbone: str | None = None
    """A frozen backbone whose pooled features are concatenated (the ConvNeXt style extractor,
    e.g. hf-convnext:ID)."""
    out_dim: int = field(default=384, metadata={"cli": False})
    """Size of the target embedding (all-MiniLM-L6-v2: 384)."""
    target_encoder: str = field(default=DEFAULT_ENCODER, metadata={"flat": "encoder"})
    """The sentence encoder whose space the model predicts (MixGen embeds joined prompts with
    it)."""
    backbone_weights: BackboneWeights = field(default="saved", metadata={"cli": False})
    """`saved`: model.safetensors holds every weight. `pretrained`: the backbone keeps its
    factory's pretrained weights (installed by a package, e.g. efficientnet-lite0) and the file
    holds only the rest, so the folder stays small; fine-tuning such a backbone needs `saved`."""
    # Deprecated aliases, one release: folded into the options at construction, then back at
    # their defaults (= "not given"). Those defaults must stay the `mlp` head's and GeM's, as
    # model.json files from before the options hold them and rebuild the same network.
    head_hidden: int = field(default=16 * 1024, metadata={"deprecated": "--head-options hidden=N"})
    """Deprecated alias of `--head-options hidden=N` (the `mlp` head's width)."""
    gem_p: float = field(default=2.0, metadata={"deprecated": "--pool-options p=P"})
    """Deprecated alias of `--pool-options p=P` (GeM's exponent)."""

    def __post_init__(self) -> None:
        # The registries are the source of the names and of each entry's options.
        from img2prompt.models.heads import HEADS
        from img2prompt.models.pooling import POOLS
        from img2prompt.models.registry import fold_deprecated, format_options

        for flag, name, registry in (("head", self.head, HEADS), ("pool", self.pool, POOLS)):
            if name not in registry:
                known = ", ".join(registry.names())
                raise ConfigError(f"--{flag} must be one of {known}, got {name!r}")
        fold_deprecated(self, "head_hidden", "head_options", "hidden",
                        applies="hidden" in HEADS.options(self.head))  # fmt: skip
        fold_deprecated(self, "gem_p", "pool_options", "p", applies="p" in POOLS.options(self.pool))
        # Bad options fail here, before any work. They are kept as resolved (`p=3` -> `p=3.0`),
        # so equal settings compare equal (a resumed run) and model.json says what was built.
        head_options = HEADS.resolve(self.head, self.head_options, "--head-options")
        pool_options = POOLS.resolve(self.pool, self.pool_options, "--pool-options")
        self.head_options, self.pool_options = map(format_options, (head_options, pool_options))
        if self.backbone_weights not in get_args(BackboneWeights):  # not a command-line option
            raise ConfigError(
                f"backbone_weights must be one of {', '.join(get_args(BackboneWeights))}, "
                f"got {self.backbone_weights!r}"
            )
        if self.out_dim < 1:
            raise ConfigError(f"the output size must be >= 1, got {self.out_dim}")

    def to_dict(self) -> dict[str, object]:
        """The settings as model.json keeps them (the deprecated aliases left out)."""
        return _current_fields(self)


def loss_weights(text: str) -> dict[str, float]:
    """`cosine`, `mnrl` or `cosine=1,mnrl=0.5` -> {name: weight}: the syntax and the weights
    (numbers, >= 0, one positive); whether each name is a registered loss is
    `train.losses.parse_loss_weights`'s to say."""
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        name = name.strip()
        try:
            weights[name] = float(weight) if weight else 1.0
        except ValueError:
            raise ConfigError(f"--loss: weight of {name} is not a number: {weight!r}") from None
        if weights[name] < 0:
            raise ConfigError(f"--loss: weight of {name} must be >= 0")
    if not weights or not any(weights.values()):
        raise ConfigError(f"--loss: give at least one loss with a positive weight, got {text!r}")
    return weights


@dataclass
class TrainConfig:
    data: Path
    """Prepared folder whose prompts.parquet has an `image` column (`data prepare --images`)."""
    out: Path
    """Run folder: model/, config.yaml, metrics.csv, curves.png, oof.parquet, checkpoints/."""
    model: ModelConfig
    """The architecture (its options are spelled flat: `--backbone`, `--head`, `--pool`...)."""
    loss: str = "cosine"
    """`cosine`, `mnrl`, or weighted: `cosine=1,mnrl=0.2`."""
    loss_options: str = ""
    """The losses' own settings as `LOSS.OPTION=VALUE,...`: `mnrl.scale=20,mnrl.symmetric=true`
    (MNRL's logit scale, default sqrt(384) as seed 000, and both directions). Every loss's
    options are listed in docs/options.md."""
    mnrl_scale: float = field(
        default=384**0.5, metadata={"deprecated": "--loss-options mnrl.scale=S"}
    )
    """Deprecated alias of `--loss-options mnrl.scale=S`."""
    epochs: int = 5
    """Epochs with the backbone trainable (after the LP epochs)."""
    lp_epochs: int = 0
    """LP-FT: epochs training the head alone on a frozen backbone (cached features) first."""
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
    """Clip the gradient norm to this (0: off)."""
    ema: float | None = None
    """EMA decay of the weights (e.g. 0.999); validation and the saved model use the average."""
    mixgen: float = 0.0
    """MixGen: share of each batch replaced by mixed images with joined prompts (e.g. 0.25)."""
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
    strategy: Strategy = "auto"
    """Lightning strategy: auto (one device), ddp (several devices or nodes)."""
    precision: TrainPrecision = "auto"
    """auto (bf16-mixed on a CUDA GPU that has it, else 32-true), fp32, bf16, fp16 (mixed), or
    Lightning's own names."""
    workers: int = 2
    """Image-decoding worker processes per device."""
    resume: bool = False
    """Continue the run in `out` from its last checkpoint."""
    stop_after_epochs: int | None = None
    """Stop (resumably) after this many epochs in this invocation; for time-boxed jobs."""

    def __post_init__(self) -> None:
        self.data, self.out = Path(self.data), Path(self.out)
        if isinstance(self.model, dict):
            self.model = ModelConfig(**self.model)
        if self.model.head in NOT_TRAINABLE_HEADS:
            raise ConfigError(f"--head {self.model.head} is not trainable")
        from img2prompt.models.losses import LOSSES

        for name in loss_weights(self.loss):  # registered names only, before any work
            LOSSES.get(name, " in --loss")
        from img2prompt.models.losses import loss_options_text
        from img2prompt.models.registry import fold_deprecated

        fold_deprecated(self, "mnrl_scale", "loss_options", "mnrl.scale")
        self.loss_options = loss_options_text(self.loss_options)  # checked here, and resolved
        if self.clip_grad == 0:
            self.clip_grad = None
        if self.epochs < 0 or self.lp_epochs < 0 or self.epochs + self.lp_epochs == 0:
            raise ConfigError("need --epochs >= 0, --lp-epochs >= 0 and at least one epoch")
        if self.batch_size < 1 or self.accumulate < 1 or self.devices < 1 or self.num_nodes < 1:
            raise ConfigError("--batch-size, --accumulate, --devices and --num-nodes must be >= 1")
        if self.lr <= 0 or (self.backbone_lr is not None and self.backbone_lr <= 0):
            raise ConfigError("learning rates must be > 0")
        if not 0 < self.layer_decay <= 1:
            raise ConfigError(f"--layer-decay must be in (0, 1], got {self.layer_decay}")
        if not 0 <= self.warmup < 1:
            raise ConfigError(f"--warmup is a share of steps in [0, 1), got {self.warmup}")
        if self.ema is not None and not 0 < self.ema < 1:
            raise ConfigError(f"--ema is a decay in (0, 1), e.g. 0.999; got {self.ema}")
        if not 0 <= self.mixgen <= 1:
            raise ConfigError(f"--mixgen is a share of the batch in [0, 1], got {self.mixgen}")
        self.fold = str(self.fold)
        if self.fold not in ("all", "none") and not self.fold.isdigit():
            raise ConfigError(f"--fold must be a fold number, all or none; got {self.fold!r}")
        _check_choice("precision", self.precision, TrainPrecision)
        if self.strategy not in get_args(Strategy):
            raise ConfigError(
                f"--strategy {self.strategy!r} is not supported: use one of "
                f"{', '.join(get_args(Strategy))} (FSDP/DeepSpeed would shard the parameters "
                "that the feature cache, the EMA copy and the LLRD groups need whole)"
            )
        if self.freeze_layers < 0 or self.reinit_layers < 0 or self.workers < 0:
            raise ConfigError("--freeze-layers, --reinit-layers and --workers must be >= 0")

    @classmethod
    def of(cls, **values) -> TrainConfig:
        """Built from flat, dotted or nested values: `TrainConfig.of(data=..., out=...,
        backbone="tiny-clip", head="mlp")` (the spellings of the command line and recipes)."""
        from img2prompt.options import build_config

        return build_config(cls, values)

    def to_dict(self) -> dict[str, object]:
        """The settings as RUN/config.yaml keeps them (the deprecated aliases left out)."""
        return _current_fields(self) | {"model": self.model.to_dict()}


# --- prediction, decoding, describing, serving ---------------------------------------------------


@dataclass
class PredictOptions:
    batch_size: int = 0
    """Images per forward pass (each TTA view adds one row per image). 0: chosen for the model (on
    CPU ~4k tokens per pass for a ViT: 16 images for ViT-L/14, 64 for ViT-B/32; 32 for conv
    nets; 64 rows on a GPU)."""
    precision: Precision = "auto"
    """auto: bf16 where the device computes it natively and it keeps cosine >= 0.9995 to fp32
    on the job's first images, else fp32. fp16 is refused here (bf16 keeps fp32's range)."""
    tta: TTAName = "none"
    """Test-time views, averaged after normalising each: mirror, 15% zoom."""
    workers: int = -1
    """Threads decoding images while the model runs; -1: one per CPU core, at most 4; 0: none."""
    device: Device = "auto"
    """`auto` (CUDA when present), `cpu`, `cuda`, `cuda:1`..."""
    max_pixels: int = MAX_PIXELS
    """Image files with more pixels are refused as decompression bombs (uploads to `serve` have
    their own, lower limit: --max-megapixels)."""
    compile: bool | None = None
    """torch.compile the model (inductor, weights frozen): faster after a one-off compile.
    Default (auto): compile a transformer when the first batch shows the job has 10+ minutes of
    model work left (a failed auto compile falls back to eager)."""
    k: int = 0
    """Retrieval index models only: prompts blended per image (0: the index's own)."""
    temperature: float = 0.0
    """Retrieval index models only: softmax temperature (0: the index's own)."""

    def __post_init__(self) -> None:
        if self.k < 0 or self.temperature < 0:
            raise ConfigError("--k and --temperature must be > 0 (or 0: the index's own)")
        _check_choice("precision", self.precision, Precision)
        _no_fp16("--precision", self.precision)
        if self.batch_size < 0:
            raise ConfigError("--batch-size must be >= 1 (or 0: chosen for the model)")
        _check_choice("tta", self.tta, TTAName)
        self.compile = {"auto": None, "on": True, "off": False}.get(self.compile, self.compile)  # type: ignore[call-overload]
        if self.compile not in (None, True, False):
            raise ConfigError(f"compile must be on, off or auto, got {self.compile!r}")


@dataclass
class DecodeOptions:
    """How hard the decoder searches (times and round trips: docs/readable-prompts.md)."""

    mode: DecodeMode = "best"
    """`fast` (nearest entries, greedy assembly; milliseconds) or `best` (beam search scored by
    the encoder; under a second): both build prompts from words that prompts use. `max`: `best`
    with any bank entry, dictionary filler included: the highest round trip, for the competition
    and embedding inversion; its output is not meant to be read."""
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
    patience: int = 1
    """Steps the beam search goes on without improving its best prompt (`best`): one more
    phrase can lower the match and the next raise it again."""
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
    neighbors: int = field(default=5, metadata={"aliases": ("neighbours",)})
    """Nearest bank entries reported beside each prompt."""
    batch_size: int = 64
    """Texts per encoder batch (64 suits a CPU)."""
    search_precision: Precision = "auto"
    """Precision of the encodes that rank candidates: `bf16` (within ~1e-4 of float32, much
    faster where the CPU has native bfloat16), `fp32`, or `auto` (bf16 where the hardware has
    it); fp16 is refused. Printed matches are always float32."""
    neighbours: InitVar[int | None] = None  # deprecated spelling of `neighbors`, one release

    def __post_init__(self, neighbours: int | None) -> None:
        if neighbours is not None:
            warn_renamed("DecodeOptions(neighbours=...)", "neighbors", stacklevel=4)
            self.neighbors = neighbours
        _check_choice("mode", self.mode, DecodeMode)
        if self.max_words < 1 or self.max_phrases < 1:
            raise ConfigError("--max-words and --max-phrases must be >= 1")
        _at_least(1, shortlist=self.shortlist, beam_width=self.beam_width,
                  encodes_per_step=self.encodes_per_step, fast_shortlist=self.fast_shortlist,
                  fast_max_phrases=self.fast_max_phrases, batch_size=self.batch_size)  # fmt: skip
        _check_choice("search-precision", self.search_precision, Precision)
        _no_fp16("--search-precision", self.search_precision)
        if min(self.residual_shortlist, self.neighbors, self.patience, self.swap_rounds) < 0:
            raise ConfigError("residual_shortlist, neighbors, patience, swap_rounds must be >= 0")
        if not self.min_gain >= 0:  # also refuses NaN
            raise ConfigError(f"--min-gain must be >= 0, got {self.min_gain}")


RESULT_SUFFIXES = (".txt", ".json", ".parquet")
"""What decode's and describe's `--out` may end in (`results.write_results`)."""


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
class PredictConfig:
    model: str = field(metadata=POSITIONAL)
    """A model folder (`RUN/model`, an index folder, `hf:owner/name`) or `default`."""
    images: list[Path] = field(metadata=POSITIONAL)
    """Image files or folders (searched recursively)."""
    out: Path | None = None
    """Parquet of `image` (as given) and `embedding` (384 floats, unit). With neither --out nor
    --submission: predictions.parquet."""
    submission: Path | None = None
    """Kaggle CSV `imgId_eId,val`; imgId is the file name without suffix."""
    options: PredictOptions = field(default_factory=PredictOptions)
    """How to predict (spelled flat: `--batch-size`, `--precision`, `--tta`...)."""
    skip_bad: bool = False
    """Exit 0 even when some images could not be read (they are listed)."""
    restart: bool = False
    """Discard the rows an interrupted run of this job saved (OUT.partial)."""

    def __post_init__(self) -> None:
        if not self.images:
            raise ConfigError("give at least one image file or folder")
        if self.out is None and self.submission is None:
            self.out = Path("predictions.parquet")


@dataclass
class MetadataConfig:
    files: list[Path] = field(metadata=POSITIONAL)
    """Image files or folders (searched recursively)."""
    json: bool = False
    """One JSON object a line, in input order: image, prompt (null when the file has none),
    negative_prompt, generator, settings, error."""


@dataclass
class DescribeConfig:
    images: list[Path] = field(metadata=POSITIONAL)
    """Image files or folders (searched recursively)."""
    metadata: MetadataUse = "auto"
    """`auto`: a file that carries its prompt (A1111, ComfyUI, InvokeAI, NovelAI, Fooocus,
    SwarmUI, Draw Things metadata) is answered with it, the model's guess beside it; `ignore`:
    pixels only; `only`: embedded prompts only, the model is not loaded."""
    sidecar: SidecarKind = "none"
    """Write each image's prompt beside it as a caption for LoRA training: `txt` (IMAGE.txt,
    kohya-ss) or `caption` (IMAGE.caption). Images that already have one are skipped, so an
    interrupted run goes on where it stopped."""
    overwrite: bool = False
    """Replace existing caption files (--sidecar) instead of keeping them."""
    prefix: str = ""
    """Put before every caption written by --sidecar (a trigger phrase: `--prefix "sks, "`)."""
    keep_markup: bool = False
    """Captions from embedded prompts keep AUTOMATIC1111's markup as written (`(word:1.2)`,
    `<lora:name:0.8>`, BREAK); by default it is taken out, as trainers read words literally."""
    model: str = "default"
    """A model folder (`RUN/model`, an index folder, `hf:owner/name`) or `default`."""
    bank: str = "default"
    """Prompt bank: `default` (shipped with the package) or a folder."""
    out: Path | None = None
    """`.json` or `.parquet` (prompt, source, settings, match, embedding, neighbors...), or
    `.txt` (one line per described image, in input order; unreadable images are left out and
    listed on stderr)."""
    json: bool = False
    """Print JSON on stdout instead of the table."""
    skip_bad: bool = False
    """Exit 0 when some images could not be read but the others were."""
    predict: PredictOptions = field(default_factory=PredictOptions)
    """Prediction (spelled flat: `--batch-size`, `--tta`, `--device`...)."""
    decode: DecodeOptions = field(default_factory=lambda: DecodeOptions(neighbors=3))
    """Decoding (spelled flat: `--mode`, `--neighbors`...; `--decode.batch-size`)."""

    def __post_init__(self) -> None:
        if not self.images:
            raise ConfigError("give at least one image file or folder")
        if self.sidecar == "none" and (self.overwrite or self.prefix or self.keep_markup):
            raise ConfigError(
                "--overwrite, --prefix and --keep-markup apply to captions: add --sidecar txt"
            )
        check_result_output(self.out)


@dataclass
class ServeLimits:
    """What one server accepts: the only definition of these limits (the app and the upload
    decoder read them from here)."""

    max_upload_mb: float = 20.0
    """Larger uploads are refused with 413."""
    max_megapixels: float = 64.0
    """Images announcing more pixels are refused unread (400): the decompression-bomb guard."""
    max_batch: int = 8
    """Waiting uploads described together in one model call."""
    max_pending: int = 64
    """Uploads allowed to wait; more are answered 503."""

    def __post_init__(self) -> None:
        if self.max_upload_mb <= 0 or self.max_megapixels <= 0:
            raise ConfigError("--max-upload-mb and --max-megapixels must be > 0")
        _at_least(1, max_batch=self.max_batch, max_pending=self.max_pending)

    @property
    def max_pixels(self) -> int:
        return int(self.max_megapixels * 1_000_000)


@dataclass
class ServeConfig:
    CLI_HIDDEN: ClassVar = ("predict.max_pixels",)  # uploads have --max-megapixels

    host: str = "127.0.0.1"
    """Address to listen on; 0.0.0.0 exposes it (no authentication)."""
    port: int = 8000
    """TCP port."""
    model: str = "default"
    """A model folder (`RUN/model`, an index folder, `hf:owner/name`) or `default`."""
    bank: str = "default"
    """Prompt bank: `default` (shipped with the package) or a folder."""
    log_level: str = "info"
    """uvicorn log level."""
    limits: ServeLimits = field(default_factory=ServeLimits)
    """Upload limits (spelled flat: `--max-upload-mb`, `--max-megapixels`...)."""
    predict: PredictOptions = field(default_factory=PredictOptions)
    """Prediction (spelled flat: `--device`, `--tta`...)."""
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    """Decoding (spelled flat: `--mode`...)."""
    metadata: MetadataUse = "auto"
    """The default for uploads (a request may say `?metadata=ignore`): `auto` answers a file
    that carries its prompt with it, `ignore` reads pixels only."""

    def __post_init__(self) -> None:
        if self.metadata == "only":
            raise ConfigError("serve --metadata takes auto or ignore (the page always has a model)")
        if not 0 < self.port < 65536:
            raise ConfigError("--port must be in 1..65535")


# --- banks, evaluation, submissions, ensembles, demo ---------------------------------------------


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
    batch_size: int = 64
    """Texts per encoder batch (64 suits short phrases on a CPU)."""
    device: Device = "auto"
    """`auto` (CUDA when present), `cpu`, `cuda`, `cuda:1`..."""
    cache_dir: Path | None = None
    """Embedding cache (default: $IMG2PROMPT_CACHE/embeddings or ~/.cache/img2prompt/embeddings)."""

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ConfigError("give at least one input file")
        if self.min_word_count < 1 or self.batch_size < 1:
            raise ConfigError("--min-word-count and --batch-size must be >= 1")


@dataclass
class BankAddConfig:
    bank: Path = field(metadata=POSITIONAL)
    """Bank folder to extend (its own encoder embeds the new entries)."""
    inputs: list[Path] = field(metadata=POSITIONAL)
    """More phrase or prompt files (as for `bank build`)."""
    batch_size: int = 64
    """Texts per encoder batch."""
    device: Device = "auto"
    """`auto` (CUDA when present), `cpu`, `cuda`, `cuda:1`..."""
    cache_dir: Path | None = None
    """Embedding cache (default: $IMG2PROMPT_CACHE/embeddings or ~/.cache/img2prompt/embeddings)."""

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ConfigError("give at least one input file")
        _at_least(1, batch_size=self.batch_size)


@dataclass
class EvaluateConfig:
    predictions: Path = field(metadata=POSITIONAL)
    """predict/ensemble Parquet, training oof.parquet or a CSV."""
    truth: Path
    """Prepared data folder (prompts.parquet) or a Kaggle sample_submission."""
    report: Path | None = None
    """Folder for report.json and cosine_histogram.png (default: beside the predictions)."""
    strict: bool = False
    """Fail when a prediction has no truth (by default such rows are named and left out, e.g.
    images whose prompt data prepare dropped as a near duplicate)."""


@dataclass
class SubmissionCheckConfig:
    file: Path = field(metadata=POSITIONAL)
    """The submission CSV to check."""
    sample: Path | None = None
    """sample_submission.csv: the ids and order Kaggle expects."""
    truth: Path | None = None
    """True vectors in submission format: prints the score."""
    dim: int = 384
    """Values per image."""


@dataclass
class EnsembleFitConfig:
    oof: list[Path] = field(metadata=POSITIONAL)
    """Out-of-fold prediction files, one per member model."""
    truth: Path
    """Prepared data folder or truth file."""
    out: Path = Path("ensemble.json")
    """Where to write the weights (JSON)."""

    def __post_init__(self) -> None:
        if not self.oof:
            raise ConfigError("give the out-of-fold files")


@dataclass
class EnsembleApplyConfig:
    weights: Path = field(metadata=POSITIONAL)
    """Weights from `ensemble fit`."""
    predictions: list[Path] = field(metadata=POSITIONAL)
    """Prediction files, in the members' order."""
    out: Path | None = None
    """Parquet of the blended embeddings."""
    submission: Path | None = None
    """Kaggle CSV of the blend."""

    def __post_init__(self) -> None:
        if not self.predictions:
            raise ConfigError("give the prediction files")
        if self.out is None and self.submission is None:
            raise ConfigError("give --out and/or --submission")


# --- the training-free CLIP index ---------------------------------------------------------------

DEFAULT_K_GRID = (1, 2, 4, 8, 16, 32, 64, 128)
DEFAULT_TEMPERATURE_GRID = (0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.2)


def check_k_temperature(k: int, temperature: float) -> None:
    if k < 1:
        raise ConfigError(f"--k must be >= 1, got {k}")
    if not temperature > 0:
        raise ConfigError(f"--temperature must be > 0, got {temperature}")


@dataclass
class IndexBuildConfig:
    prompts: Path = field(metadata=POSITIONAL)
    """A prepared folder (`data prepare` output) or its prompts.parquet: `prompt` and `target`
    are reused; a prompt met on several rows (several images per prompt) is indexed once."""
    clip: str
    """CLIP dual encoder: a hub id (openai/clip-vit-large-patch14) or a local CLIPModel folder with
    its tokenizer and image processor. It is copied into INDEX/clip, so the index moves as one."""
    out: Path
    """The index folder to write; it is a model folder every command takes (predict, describe,
    serve, load_model)."""
    k: int = 32
    """Prompts each prediction blends (the k most CLIP-similar to the image)."""
    temperature: float = 0.05
    """Softmax temperature over the k cosines: lower trusts the best match more."""
    search: IndexSearch = field(default="exact", metadata={"aliases": ("approx",)})
    """`exact` (IndexFlatIP, equals brute force), or for tens of millions `ivf` (IVF-Flat) or
    `hnsw`; their recall against exact search is measured on a sample and printed."""
    nprobe: int = 32
    """ivf: lists searched per query (stored in model.json; more is slower and more complete)."""
    ef_search: int = 128
    """hnsw: candidate list size per query (stored in model.json)."""
    batch_size: int = 256
    """Prompts per text-encoder batch (256 suits a GPU; a CPU is as fast with 64)."""
    chunk_size: int = 8192
    """Prompts per saved chunk: the unit of resuming an interrupted build."""
    device: Device = "auto"
    """`auto` (CUDA when present), `cpu`, `cuda`, `cuda:1`..."""
    precision: Precision = "auto"
    """Text tower precision: auto (fp16 on CUDA, fp32 on CPU), fp32, fp16, bf16. Features are
    normalised and stored in float32 whatever it is."""
    approx: InitVar[str | None] = None  # deprecated spelling of `search`, one release

    def __post_init__(self, approx: str | None) -> None:
        if approx is not None:
            warn_renamed("IndexBuildConfig(approx=...)", "search", stacklevel=4)
            self.search = approx
        self.prompts, self.out = Path(self.prompts), Path(self.out)
        check_k_temperature(self.k, self.temperature)
        _check_choice("search", self.search, IndexSearch)
        _check_choice("precision", self.precision, Precision)
        if min(self.batch_size, self.chunk_size, self.nprobe, self.ef_search) < 1:
            raise ConfigError("--batch-size, --chunk-size, --nprobe and --ef-search must be >= 1")
        if not self.clip:
            raise ConfigError("--clip needs a hub id or a CLIPModel folder")


@dataclass
class IndexTuneConfig:
    index: Path = field(metadata=POSITIONAL)
    """The index folder (`index build`); its model.json receives the chosen k and temperature."""
    data: Path
    """A prepared folder whose prompts.parquet has images (`image`), targets and groups."""
    k_grid: list[int] = field(default_factory=lambda: list(DEFAULT_K_GRID))
    """Values of k tried (comma-separated)."""
    temperature_grid: list[float] = field(default_factory=lambda: list(DEFAULT_TEMPERATURE_GRID))
    """Softmax temperatures tried (comma-separated)."""
    oof: Path | None = None
    """Where the out-of-fold predictions at the chosen (k, T) go (id, image, fold, embedding,
    cosine, as `train --fold all` writes them); default INDEX/oof.parquet."""
    exclude_own_group: bool = True
    """Leave out each image's own prompt group (and its exact prompt) from its neighbors, as a
    test image's prompt is absent from the index; off measures a leaked, optimistic score."""
    exclude_similar: float = 0.8
    """With `exclude_own_group`: also leave out index prompts whose MiniLM target has at least
    this cosine to the image's own (near-duplicates, whatever table the index came from;
    `data prepare`'s default group threshold). 1.0: only groups and equal prompts."""
    write: bool = True
    """Write the chosen k and temperature into INDEX/model.json."""
    batch_size: int = 0
    """Images per CLIP forward pass (0: chosen for the model)."""
    precision: Precision = "auto"
    """CLIP image tower: auto (bf16 where native and checked against fp32), fp32 or bf16."""
    workers: int = -1
    """Threads decoding images beside the model; -1: one per core (at most 4)."""
    device: Device = "auto"
    """`auto` (CUDA when present), `cpu`, `cuda`, ..."""

    def __post_init__(self) -> None:
        self.index, self.data = Path(self.index), Path(self.data)
        if self.oof is not None:
            self.oof = Path(self.oof)
            if self.oof.suffix.lower() != ".parquet":
                raise ConfigError(f"--oof must end in .parquet, got {self.oof.name!r}")
        if not self.k_grid or not self.temperature_grid:
            raise ConfigError("--k-grid and --temperature-grid need at least one value each")
        for k in self.k_grid:
            for temperature in self.temperature_grid:
                check_k_temperature(k, temperature)
        if self.batch_size < 0:
            raise ConfigError("--batch-size must be >= 1 (or 0: chosen for the model)")
        _check_choice("precision", self.precision, Precision)
        _no_fp16("--precision", self.precision)
        if not 0.0 < self.exclude_similar <= 1.0:
            raise ConfigError(f"--exclude-similar must be in (0, 1], got {self.exclude_similar}")


# --- sharing models, the demo --------------------------------------------------------------------


@dataclass
class PushConfig:
    model: Path = field(metadata=POSITIONAL)
    """A model folder (e.g. RUN/model)."""
    repo: str = field(metadata=POSITIONAL)
    """Hugging Face Hub repository: owner/name."""
    private: bool = False
    """Create the repository as private."""
    revision: str | None = None
    """Branch to push to (created if missing)."""


@dataclass
class DemoConfig:
    out: Path = Path("demo-out")
    """Output folder."""
    mode: DecodeMode = "best"
    """Decoding: fast, best (beam search), or max (highest round trip, not meant to be read)."""

    def __post_init__(self) -> None:
        _check_choice("mode", self.mode, DecodeMode)


def _current_fields(cfg) -> dict[str, object]:
    """A config's fields less its deprecated aliases (`metadata={"deprecated": ...}`)."""
    return {f.name: getattr(cfg, f.name) for f in fields(cfg) if "deprecated" not in f.metadata}


def check_result_output(out: Path | None) -> None:
    """Refuse a decode/describe `--out` that `results.write_results` cannot write."""
    if out is not None and Path(out).suffix.lower() not in RESULT_SUFFIXES:
        raise ConfigError(f"--out must end in {', '.join(RESULT_SUFFIXES)}, got {Path(out).name!r}")


def _check_choice(option: str, value, choices) -> None:
    allowed = get_args(choices)
    if value not in allowed:
        choices = ", ".join(map(str, allowed))
        raise ConfigError(f"--{option} must be one of {choices}, got {value!r}")
