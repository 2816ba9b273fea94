"""`img2prompt train`: the training loop, on Lightning Fabric (CPU, one GPU, or DDP over many).

`train` walks the folds; `fit` trains one of them top to bottom: build the model -> LP phase
(head only, on cached features) -> FT phase (everything not frozen) -> keep the best epoch by
validation cosine -> out-of-fold predictions. Each epoch is `train_one_epoch` then `validate`;
`BatchSource` hides whether a phase trains on stored features or on pixels, and `FoldState` is
what the checkpoint holds. Every epoch ends with a checkpoint, and every random
choice is seeded by (seed, fold, phase, epoch), so a resumed run continues exactly where the
interrupted one stopped. The run folder's bookkeeping (config, state, metrics, OOF, the published
model) is in `run_folder.py`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from img2prompt.config import LIGHTNING_PRECISION, TrainConfig
from img2prompt.data.dataset import ImageDataset, flip_decision
from img2prompt.data.table import PreparedTable, read_prepared
from img2prompt.errors import ConfigError
from img2prompt.io import atomic_path
from img2prompt.metrics import mean_cosine
from img2prompt.models.model import ImageToPromptModel, save_model
from img2prompt.progress import print_epoch, progress_bar
from img2prompt.train import run_folder
from img2prompt.train.augment import mixgen
from img2prompt.train.features import FeatureStore
from img2prompt.train.losses import WeightedLoss, parse_loss_weights
from img2prompt.train.optim import (
    check_layer_options,
    freeze_bottom,
    param_groups,
    reinit_top,
    warmup_cosine,
)
from img2prompt.train.run_folder import FoldResult, MetricsLog, RunState, config_to_dict

__all__ = ["FoldResult", "FoldRun", "FoldState", "TrainReport", "fit", "train"]


@dataclass
class TrainReport:
    out: Path
    folds: list[FoldResult] = field(default_factory=list)
    oof_cosine: float | None = None
    stopped_early: bool = False
    seconds: float = 0.0
    is_global_zero: bool = True  # only rank 0 prints the summary


@dataclass
class EpochBudget:
    """`--stop-after-epochs`: the epochs this call may still train, across its folds."""

    left: int | None  # None: no limit

    def spent(self) -> bool:
        return self.left is not None and self.left <= 0

    def use_one(self) -> None:
        if self.left is not None:
            self.left -= 1


EpochLine = Callable[[str, int, int, float, "float | None", bool, float], None]
"""`on_epoch(label, epoch, epochs, train_loss, val_cosine, improved, images_per_s)`: how a
caller hears of each finished epoch (by default, with progress on, `progress.print_epoch`
prints it, beside the progress bars)."""


def train(
    cfg: TrainConfig, progress: bool = True, on_epoch: EpochLine | None = None
) -> TrainReport:
    """Train as `cfg` says; returns what was written where. Safe to call again with resume=True.
    With `progress`, each finished epoch is reported by `progress.print_epoch` unless `on_epoch`
    says otherwise."""
    if on_epoch is None and progress:
        on_epoch = print_epoch
    started = time.perf_counter()
    parse_loss_weights(cfg.loss)  # every loss named is registered, before any work
    fabric = _fabric(cfg)
    fabric.launch()
    run_folder.check_run_folder(cfg)
    fabric.barrier()  # every rank checks before rank 0 writes config.yaml
    table = read_prepared(cfg.data, need=("target", "fold", "image"))
    if fabric.is_global_zero:
        run_folder.write_config(cfg)
    fabric.barrier()

    folds = _folds_to_run(cfg.fold, table.folds)
    state = RunState(cfg.out)
    report = TrainReport(cfg.out, is_global_zero=fabric.is_global_zero)
    metrics = MetricsLog(cfg.out / "metrics.csv", fabric.is_global_zero)
    budget = EpochBudget(cfg.stop_after_epochs)
    store = FeatureStore(table.images, fabric.device, cfg.batch_size, cfg.workers,
                         progress and fabric.is_global_zero)  # fmt: skip
    oof_parts: list[Path] = []
    for fold in folds:
        key = "all" if fold is None else str(fold)
        fold_dir = cfg.out if len(folds) == 1 else cfg.out / f"fold-{fold}"
        result = state.result(key, fold)
        if result is None:
            main = fabric.is_global_zero  # only rank 0 shows progress and hears of epochs
            run = FoldRun(cfg, fabric, table, fold, fold_dir, metrics, budget, store,
                          progress and main, on_epoch if main else None)  # fmt: skip
            result = fit(run)
            if result is None:  # --stop-after-epochs reached
                report.stopped_early = True
                break
            if fabric.is_global_zero:
                state.finish(key, result)
        report.folds.append(result)
        if fold is not None and (fold_dir / "oof.parquet").exists():
            oof_parts.append(fold_dir / "oof.parquet")
    if fabric.is_global_zero and not report.stopped_early:
        report.oof_cosine = run_folder.write_oof(cfg.out, oof_parts, len(folds) > 1)
        run_folder.publish_best_model(cfg.out, report.folds)
        metrics.plot(cfg.out / "curves.png")
    fabric.barrier()
    report.seconds = time.perf_counter() - started
    return report


@dataclass
class FoldRun:
    """Everything one fold's training reads (and the logs it writes to)."""

    cfg: TrainConfig
    fabric: Any
    table: PreparedTable
    fold: int | None
    folder: Path
    metrics: MetricsLog
    budget: EpochBudget
    store: FeatureStore
    progress: bool = True
    on_epoch: EpochLine | None = None

    @property
    def label(self) -> str:
        return "" if self.fold is None else f"fold {self.fold} "

    @property
    def checkpoint(self) -> Path:
        return self.folder / "checkpoints" / "last.pt"


@dataclass
class FoldState:
    """Where a fold's training stands: the checkpoint holds it (with the model, the EMA copy,
    the optimizer and the schedule), so a resumed run continues from the same place."""

    phase: int = 0
    """Index into `phases(cfg)` of the phase to continue."""
    epoch: int = 0
    """Epochs of that phase already done."""
    best_cosine: float | None = None
    best_epoch: str | None = None
    oof: np.ndarray | None = None
    """Validation predictions of the best epoch."""
    optimizer: dict | None = None
    scheduler: dict | None = None

    @classmethod
    def load(cls, run: FoldRun, model, ema) -> FoldState:
        if not run.checkpoint.exists():
            return cls()
        modules = {"model": model} | ({"ema": ema} if ema is not None else {})
        saved = run.fabric.load(run.checkpoint, modules, weights_only=False)  # our own file
        return cls(saved["phase"], saved["epoch"], saved["best_cosine"], saved["best_epoch"],
                   saved["oof"], saved.get("optimizer"), saved.get("scheduler"))  # fmt: skip

    def save(self, run: FoldRun, model, ema, optimizer, scheduler) -> None:
        state = {"model": model, "optimizer": optimizer, "scheduler": scheduler.state_dict(),
                 "phase": self.phase, "epoch": self.epoch, "best_cosine": self.best_cosine,
                 "best_epoch": self.best_epoch, "oof": self.oof}  # fmt: skip
        if ema is not None:
            state["ema"] = ema
        _save_checkpoint(run.fabric, run.checkpoint, state)


@dataclass(frozen=True)
class Phase:
    name: str  # lp (linear probing: the head on a frozen backbone) or ft (fine-tuning)
    epochs: int
    frozen: bool


def phases(cfg: TrainConfig) -> list[Phase]:
    return [Phase("lp", cfg.lp_epochs, True), Phase("ft", cfg.epochs, cfg.freeze_backbone)]


def fit(run: FoldRun) -> FoldResult | None:
    """Train one fold (or everything, with fold=None) from its start or its last checkpoint:
    build the model, then each phase's epochs (train, validate, keep the best, checkpoint).
    Returns None when this call's epoch budget (--stop-after-epochs) runs out first."""
    cfg, fabric, table, fold = run.cfg, run.fabric, run.table, run.fold
    is_val = np.zeros(len(table), bool) if fold is None else table.folds == fold
    train_rows, val_rows = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    targets = torch.tensor(table.targets, device=fabric.device)  # a copy: Arrow's is read-only
    loss_fn = WeightedLoss(parse_loss_weights(cfg.loss), options=cfg.loss_options)

    torch.manual_seed(_seed(cfg.seed, fold, "init"))
    model = ImageToPromptModel(cfg.model, pretrained=True)
    check_layer_options(model, cfg.layer_decay, cfg.freeze_layers, cfg.reinit_layers)
    if cfg.reinit_layers:
        reinit_top(model, cfg.reinit_layers)
    model.to(fabric.device)
    ema = None
    if cfg.ema:
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
    state = FoldState.load(run, model, ema)

    for phase_index, phase in enumerate(phases(cfg)):
        start = state.epoch if phase_index == state.phase else 0
        if phase_index < state.phase or start >= phase.epochs:
            continue
        model.freeze_backbone(phase.frozen)
        if not phase.frozen:
            freeze_bottom(model, cfg.freeze_layers)
        source = BatchSource(run, model, train_rows, val_rows, phase)
        groups = param_groups(model, cfg.lr, cfg.backbone_lr, cfg.layer_decay, cfg.weight_decay)
        optimizer = torch.optim.AdamW(groups)
        steps_per_epoch = math.ceil(source.batches / cfg.accumulate)
        scheduler = warmup_cosine(optimizer, steps_per_epoch * phase.epochs, cfg.warmup)
        if start:
            optimizer.load_state_dict(state.optimizer)
            scheduler.load_state_dict(state.scheduler)
        model_f, optimizer_f = fabric.setup(model, optimizer)

        for epoch in range(start, phase.epochs):
            if run.budget.spent():
                return None
            clock = time.perf_counter()
            train_loss = train_one_epoch(run, source, model, model_f, optimizer_f, scheduler,
                                         ema, loss_fn, targets, phase, epoch)  # fmt: skip
            seconds = time.perf_counter() - clock
            # Validation (the EMA weights when there are any); the best epoch is kept.
            evaluated = ema.module if ema is not None else model
            cosine, predictions = validate(evaluated, run, targets, val_rows, source)
            improved = cosine is not None and (
                state.best_cosine is None or cosine > state.best_cosine
            )
            if improved or (cosine is None and epoch == phase.epochs - 1):
                state.best_cosine, state.best_epoch = cosine, f"{phase.name}-{epoch + 1}"
                if fabric.is_global_zero:
                    training = {
                        "fold": fold,
                        "best_epoch": state.best_epoch,
                        "val_cosine": state.best_cosine,
                        "config": config_to_dict(cfg),
                    }
                    save_model(evaluated, run.folder / "model", training)
                    state.oof = predictions if predictions is not None else state.oof
            speed = len(train_rows) / seconds if seconds else None
            run.metrics.add(fold=fold, phase=phase.name, epoch=epoch + 1, train_loss=train_loss,
                            val_cosine=cosine, lr=scheduler.get_last_lr()[0], seconds=seconds,
                            images_per_s=speed)  # fmt: skip
            if run.on_epoch is not None:
                run.on_epoch(f"{run.label}{phase.name}", epoch + 1, phase.epochs, train_loss,
                             cosine, improved, speed or 0.0)  # fmt: skip
            state.phase, state.epoch = phase_index, epoch + 1
            state.save(run, model, ema, optimizer, scheduler)
            run.budget.use_one()

    if fabric.is_global_zero and state.oof is not None and fold is not None:
        run_folder.write_fold_oof(run.folder / "oof.parquet", table, val_rows, fold, state.oof)
    fabric.barrier()
    return FoldResult(fold, state.best_cosine, state.best_epoch, run.folder / "model")


class BatchSource:
    """One phase's training batches and validation inputs, from cached features or pixels.

    Whatever is frozen before the head is computed once (for an image and its mirror) unless
    MixGen needs fresh pixels every step: the whole backbone in LP (`cached`: the head trains on
    stored features), the style extractor in FT (`style`: stored style features beside the
    pixels)."""

    def __init__(self, run: FoldRun, model, train_rows, val_rows, phase: Phase) -> None:
        cfg = run.cfg
        self.run, self.model, self.train_rows = run, model, train_rows
        cacheable = cfg.cache_features and cfg.mixgen == 0
        self.cached = cacheable and phase.frozen
        cache_style = cacheable and not self.cached and model.style is not None
        self.train_features = self.val_features = None
        if self.cached or cache_style:  # computed once per run (the store), sliced per fold
            model.eval()
            if self.cached:
                kind, extract = "features", model.features
                weights = [m for m in (model.backbone, model.pool, model.style) if m is not None]
            else:
                kind, extract, weights = "style", model.style_features, [model.style]
            every = run.store.features(kind, extract, weights, model.preprocess, cfg.hflip)
            self.train_features = every.subset(train_rows)
            if len(val_rows):  # --fold none validates on nothing
                self.val_features = every.subset(val_rows, flips=False)
        # A BatchNorm head cannot train on a batch of one.
        self.drop_last = cfg.model.head == "mlp" and len(train_rows) > cfg.batch_size
        per_rank = len(train_rows) // run.fabric.world_size
        self.batches = per_rank // cfg.batch_size + (
            1 if per_rank % cfg.batch_size and not self.drop_last else 0
        )

    def epoch(self, phase: Phase, epoch: int):
        """(positions into train_rows, pixels or None, flips) for each of this rank's batches."""
        return _batches(self.run.cfg, self.run.fabric, self.model, self.run.table,
                        self.train_rows, self.run.fold, phase.name, epoch, self.cached,
                        self.drop_last)  # fmt: skip

    def inputs(self, positions, pixels, flips, device) -> dict[str, torch.Tensor | None]:
        """The model's keyword inputs for a batch: stored features, or pixels (and stored style
        features)."""
        if self.cached:
            features = self.train_features.take(positions, flips).to(device)
            return {"pixels": None, "features": features}
        style = None
        if self.train_features is not None:
            style = self.train_features.take(positions, flips).to(device)
        return {"pixels": pixels.to(device), "style_features": style}


def train_one_epoch(run: FoldRun, source: BatchSource, model, model_f, optimizer_f, scheduler,
                    ema, loss_fn, targets, phase: Phase, epoch: int) -> float:  # fmt: skip
    """One pass over this rank's batches; returns the mean training loss."""
    cfg, fabric, table = run.cfg, run.fabric, run.table
    # Seeds per (seed, fold, phase, epoch): a resumed epoch draws what it would have.
    torch.manual_seed(_seed(cfg.seed, run.fold, phase.name, epoch, "dropout"))
    mix_generator = torch.Generator().manual_seed(
        _seed(cfg.seed, run.fold, phase.name, epoch, "mix")
    )
    encoder = _mixgen_encoder(cfg, fabric)
    model.train()
    total, count = 0.0, 0
    title = f"{run.label}{phase.name} {epoch + 1}/{phase.epochs}"
    with progress_bar(title, source.batches, run.progress) as bar:
        for step, (positions, pixels, flips) in enumerate(source.epoch(phase, epoch)):
            rows = torch.as_tensor(source.train_rows)[positions]
            batch_targets = targets[rows.to(targets.device)]
            inputs = source.inputs(positions, pixels, flips, fabric.device)
            if encoder is not None and inputs["pixels"] is not None:  # MixGen on the pixels
                prompts = [table.prompts[int(r)] for r in rows]
                mixed = mixgen(inputs["pixels"], prompts, batch_targets, cfg.mixgen,
                               encoder.encode, mix_generator)  # fmt: skip
                inputs["pixels"], batch_targets = mixed[0], mixed[1]
            predictions = model_f(**inputs)
            loss = loss_fn(predictions, batch_targets) / cfg.accumulate
            # Gradients sync across ranks only on the step that updates the weights.
            last_micro = (step + 1) % cfg.accumulate == 0 or step + 1 == source.batches
            with fabric.no_backward_sync(model_f, enabled=not last_micro):
                fabric.backward(loss)
            if last_micro:
                if cfg.clip_grad:
                    fabric.clip_gradients(model_f, optimizer_f, max_norm=cfg.clip_grad)
                optimizer_f.step()
                optimizer_f.zero_grad(set_to_none=True)
                scheduler.step()
                if ema is not None:
                    ema.update_parameters(model)
            total += float(loss.detach()) * cfg.accumulate * len(positions)
            count += len(positions)
            bar.advance()
    return total / max(count, 1)


@functools.cache
def _mixgen_encoder_cached(spec: str, device: str):
    from img2prompt.data.embed import load_encoder

    return load_encoder(spec, device)


def _mixgen_encoder(cfg: TrainConfig, fabric):
    """MixGen embeds the joined prompts of mixed images on the fly (None without MixGen)."""
    if cfg.mixgen <= 0:
        return None
    return _mixgen_encoder_cached(cfg.model.target_encoder, str(fabric.device))


# --- the pieces fit() calls ---------------------------------------------------------------------


def _seed(*parts: Any) -> int:
    """A 63-bit seed from any parts: independent streams per (seed, fold, phase, epoch)."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _precision(requested: str) -> str:
    """`--precision` as Lightning names it (config.LIGHTNING_PRECISION is the mapping)."""
    if requested != "auto":
        return LIGHTNING_PRECISION.get(requested, requested)
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def _fabric(cfg: TrainConfig):
    from lightning.fabric import Fabric

    return Fabric(accelerator=cfg.accelerator, strategy=cfg.strategy, devices=cfg.devices,
                  num_nodes=cfg.num_nodes, precision=_precision(cfg.precision))  # fmt: skip


def _folds_to_run(fold: str, table_folds: np.ndarray) -> list[int | None]:
    present = sorted(set(table_folds.tolist()))
    if fold == "none":
        return [None]
    if fold == "all":
        if len(present) < 2:
            raise ConfigError(
                "--fold all needs a table with at least 2 folds (data prepare --folds)"
            )
        return present
    if int(fold) not in present:
        raise ConfigError(f"--fold {fold}: the table's folds are {present}")
    if len(present) < 2:
        raise ConfigError("the table has one fold, so nothing is left to train on; use --fold none")
    return [int(fold)]


def _batches(cfg, fabric, model, table, train_rows, fold, phase, epoch, cached, drop_last):
    """This rank's batches of one epoch: (positions into train_rows, pixels or None, flips)."""
    generator = torch.Generator().manual_seed(_seed(cfg.seed, fold, phase, epoch))
    order = torch.randperm(len(train_rows), generator=generator).tolist()  # same on every rank
    usable = len(order) - len(order) % fabric.world_size  # every rank takes as many steps
    order = order[fabric.global_rank : usable : fabric.world_size]
    # Flips are keyed by table row, so the cached and the pixel paths flip the same images.
    flips = torch.tensor(
        [cfg.hflip and flip_decision(cfg.seed, epoch, int(row)) for row in train_rows]
    )
    if cached:
        for start in range(0, len(order), cfg.batch_size):
            batch = torch.tensor(order[start : start + cfg.batch_size])
            if len(batch) < cfg.batch_size and drop_last:
                break
            yield batch, None, flips[batch]
        return
    dataset = ImageDataset([table.images[i] for i in train_rows], model.preprocess,
                           flip="random" if cfg.hflip else None, seed=cfg.seed,
                           keys=train_rows)  # fmt: skip
    dataset.set_epoch(epoch)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=order,
                        num_workers=cfg.workers, drop_last=drop_last)  # fmt: skip
    for pixels, positions in loader:
        yield positions, pixels, flips[positions]


@torch.inference_mode()
def validate(model, run: FoldRun, targets, val_rows, source: BatchSource):
    """(mean cosine, predictions) on the validation rows, or (None, None) when there are none.
    Every rank evaluates all of them: it is small, and it keeps the ranks' best epoch identical."""
    cfg, fabric, table, cached = run.cfg, run.fabric, run.table, source.val_features
    if len(val_rows) == 0:
        return None, None
    model.eval()
    if source.cached:
        predictions = model(None, features=cached.plain.to(fabric.device))
    else:
        loader = DataLoader(ImageDataset([table.images[i] for i in val_rows], model.preprocess),
                            batch_size=cfg.batch_size, num_workers=cfg.workers)  # fmt: skip
        chunks = []
        for pixels, positions in loader:
            style = cached.plain[positions].to(fabric.device) if cached else None
            with fabric.autocast():
                chunks.append(model(pixels.to(fabric.device), style_features=style).float())
        predictions = torch.cat(chunks)
    predictions = F.normalize(predictions.float(), dim=-1)
    val_targets = targets[torch.as_tensor(val_rows, device=targets.device)]
    cosine = mean_cosine(predictions, val_targets)
    return cosine, predictions.cpu().numpy()


def _save_checkpoint(fabric, path: Path, state: dict) -> None:
    """fabric.save (module and optimizer states taken by Fabric) into io.atomic_path's temporary
    file, fsynced and renamed once complete: a run killed mid-save keeps its previous checkpoint."""
    # Under ddp only rank 0 writes; the others pass the path and wait in fabric.save's barrier.
    writer = atomic_path(path) if fabric.is_global_zero else contextlib.nullcontext(path)
    with writer as target:
        fabric.save(target, state)
    fabric.barrier()
