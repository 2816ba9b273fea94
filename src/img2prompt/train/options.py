"""The options of `train` (what `train.loop.train` reads), with its precision and strategy
vocabularies."""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from img2prompt.device import Precision, refuse_precision
from img2prompt.errors import ConfigError
from img2prompt.fields import check_choices
from img2prompt.models.options import ModelConfig

if TYPE_CHECKING:
    from img2prompt.train.losses import LossSpec

LightningPrecision = Literal["32-true", "bf16-mixed", "16-mixed", "bf16-true"]
"""Lightning's own names, also accepted by `train` (mixed vs true is a training distinction)."""

LIGHTNING_PRECISION: dict[str, str] = {"fp32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed"}
"""How `train --precision` words map to Lightning: mixed precision (float32 master weights), the
standard for fine-tuning. `auto` is bf16-mixed on a CUDA GPU that has bf16, else 32-true."""

TrainPrecision = Literal[Precision, LightningPrecision]
Strategy = Literal["auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true"]
"""Lightning strategies the loop supports. Not FSDP/DeepSpeed: the frozen-feature cache, the EMA
copy (`AveragedModel`) and the LLRD parameter groups all assume whole, unsharded parameters."""


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
    (MNRL's logit scale, default sqrt(384), and both directions). Every loss's
    options are listed in docs/options.md."""
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
    """Re-initialise the backbone's top N blocks before training (fresh top layers adapt faster
    to a new task, as in the Secu-Layer solution)."""
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
        from img2prompt.models.heads import NOT_TRAINABLE

        self.data, self.out = Path(self.data), Path(self.out)
        refuse_precision("int8", precision=self.precision)
        if isinstance(self.model, dict):
            self.model = ModelConfig(**self.model)
        if self.model.head in NOT_TRAINABLE:
            raise ConfigError(f"--head {self.model.head} is not trainable")
        self.loss_options = self.loss_spec.options_text  # as resolved: `scale=20` -> `scale=20.0`
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
        if self.strategy not in get_args(Strategy):
            raise ConfigError(
                f"--strategy {self.strategy!r} is not supported: use one of "
                f"{', '.join(get_args(Strategy))} (FSDP/DeepSpeed would shard the parameters "
                "that the feature cache, the EMA copy and the LLRD groups need whole)"
            )
        if self.freeze_layers < 0 or self.reinit_layers < 0 or self.workers < 0:
            raise ConfigError("--freeze-layers, --reinit-layers and --workers must be >= 0")
        check_choices(self)

    @functools.cached_property
    def loss_spec(self) -> LossSpec:
        """`loss` and `loss_options` parsed, once per config (when it is made, so a bad loss fails
        before any work): what training builds its loss from."""
        from img2prompt.train.losses import LossSpec

        return LossSpec.parse(self.loss, self.loss_options)

    @classmethod
    def of(cls, **values) -> TrainConfig:
        """Built from flat, dotted or nested values: `TrainConfig.of(data=..., out=...,
        backbone="tiny-clip", head="mlp")` (the spellings of the command line and recipes)."""
        from img2prompt.fields import build_options

        return build_options(cls, values)

    def to_dict(self) -> dict[str, object]:
        """The settings as RUN/config.yaml keeps them."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return values | {"model": self.model.to_dict()}
