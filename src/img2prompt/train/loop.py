"""`img2prompt train`: the training loop, on Lightning Fabric (CPU, one GPU, or DDP over many).

`train` walks the folds; `fit` trains one of them top to bottom: build the model -> LP phase
(head only, on cached features) -> FT phase (everything not frozen) -> keep the best epoch by
validation cosine -> out-of-fold predictions. Each epoch is `train_one_epoch` then `validate`.
`FoldData` is what a fold trains on, `PhaseTraining` what a phase trains with (model, EMA copy,
optimizer, schedule), `BatchSource` hides whether a phase trains on stored features or on
pixels, and `FoldState` is what the checkpoint holds. Every epoch ends with a checkpoint, and
every random choice is seeded by (seed, fold, phase, epoch), so a resumed run continues exactly
where the interrupted one stopped. The run folder's bookkeeping (config, state, metrics, OOF,
the published model) is in `run_folder.py`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from img2prompt.data.dataset import ImageDataset, flip_decision
from img2prompt.data.table import PreparedTable, read_prepared
from img2prompt.errors import ConfigError
from img2prompt.io import atomic_path, remove_stale_temporaries
from img2prompt.metrics import mean_cosine
from img2prompt.models.model import ImageToPromptModel, save_model
from img2prompt.progress import EpochSummary, print_epoch, progress_bar
from img2prompt.train import run_folder
from img2prompt.train.augment import mixgen
from img2prompt.train.features import FeatureStore
from img2prompt.train.optim import (
    check_layer_options,
    freeze_bottom,
    param_groups,
    reinit_top,
    warmup_cosine,
)
from img2prompt.train.options import LIGHTNING_PRECISION, TrainConfig
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


EpochLine = Callable[[EpochSummary], None]
"""How a caller hears of each finished epoch (by default, with progress on, `progress.print_epoch`
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
    fabric = _fabric(cfg)
    fabric.launch()
    run_folder.check_run_folder(cfg)
    fabric.barrier()  # every rank checks before rank 0 writes config.yaml
    table = read_prepared(cfg.data, need=("target", "fold", "image"))
    if fabric.is_global_zero:
        run_folder.write_config(cfg)
    fabric.barrier()

    folds = _folds_to_run(cfg.fold, table.folds)
    main = fabric.is_global_zero  # only rank 0 shows progress and hears of epochs
    every_fold = FoldRun(
        cfg=cfg,
        fabric=fabric,
        table=table,
        fold=None,
        folder=cfg.out,
        metrics=MetricsLog(cfg.out / "metrics.csv", main),
        budget=EpochBudget(cfg.stop_after_epochs),
        store=FeatureStore(
            table.images, fabric.device, cfg.batch_size, cfg.workers, progress and main
        ),
        progress=progress and main,
        on_epoch=on_epoch if main else None,
    )
    state = RunState(cfg.out)
    report = TrainReport(cfg.out, is_global_zero=main)
    oof_parts: list[Path] = []
    for fold in folds:
        folder = cfg.out if len(folds) == 1 else cfg.out / f"fold-{fold}"
        key = "all" if fold is None else str(fold)
        result = state.result(key, fold)
        if result is None:
            result = fit(dataclasses.replace(every_fold, fold=fold, folder=folder))
            if result is None:  # --stop-after-epochs reached
                report.stopped_early = True
                break
            if main:
                state.finish(key, result)
        report.folds.append(result)
        if fold is not None and (folder / "oof.parquet").exists():
            oof_parts.append(folder / "oof.parquet")
    if main and not report.stopped_early:
        report.oof_cosine = run_folder.write_oof(cfg.out, oof_parts, len(folds) > 1)
        run_folder.publish_best_model(cfg.out, report.folds)
        every_fold.metrics.plot(cfg.out / "curves.png")
    fabric.barrier()
    report.seconds = time.perf_counter() - started
    return report


@dataclass(kw_only=True)
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
class FoldData:
    """What one fold trains on and toward: its rows, every row's target, and the loss."""

    train_rows: np.ndarray
    val_rows: np.ndarray
    targets: torch.Tensor
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    @classmethod
    def of(cls, run: FoldRun) -> FoldData:
        table = run.table
        is_val = np.zeros(len(table), bool) if run.fold is None else table.folds == run.fold
        return cls(
            train_rows=np.flatnonzero(~is_val),
            val_rows=np.flatnonzero(is_val),
            targets=torch.tensor(table.targets, device=run.fabric.device),  # Arrow's is read-only
            loss_fn=run.cfg.loss_spec.build(),
        )


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
        if run.fabric.is_global_zero:  # a run killed mid-save left half a checkpoint beside it
            remove_stale_temporaries(run.checkpoint)
        if not run.checkpoint.exists():
            return cls()
        modules = {"model": model} | ({"ema": ema} if ema is not None else {})
        saved = run.fabric.load(run.checkpoint, modules, weights_only=False)  # our own file
        return cls(
            phase=saved["phase"],
            epoch=saved["epoch"],
            best_cosine=saved["best_cosine"],
            best_epoch=saved["best_epoch"],
            oof=saved["oof"],
            optimizer=saved.get("optimizer"),
            scheduler=saved.get("scheduler"),
        )

    def save(self, run: FoldRun, model, ema, optimizer, scheduler) -> None:
        state = {
            "model": model,
            "optimizer": optimizer,
            "scheduler": scheduler.state_dict(),
            "phase": self.phase,
            "epoch": self.epoch,
            "best_cosine": self.best_cosine,
            "best_epoch": self.best_epoch,
            "oof": self.oof,
        }
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
    data = FoldData.of(run)
    model, ema = build_model(run)
    state = FoldState.load(run, model, ema)

    for phase_index, phase in enumerate(phases(run.cfg)):
        start = state.epoch if phase_index == state.phase else 0
        if phase_index < state.phase or start >= phase.epochs:
            continue
        training = start_phase(run, data, model, ema, phase, resume=state if start else None)

        for epoch in range(start, phase.epochs):
            if run.budget.spent():
                return None
            clock = time.perf_counter()
            train_loss = train_one_epoch(run, data, training, epoch)
            seconds = time.perf_counter() - clock
            # Validation (the EMA weights when there are any); the best epoch is kept.
            cosine, predictions = validate(
                training.evaluated, run, data.targets, data.val_rows, training.source
            )
            improved = _keep_if_best(
                run,
                state,
                training.evaluated,
                cosine,
                predictions,
                epoch_name=f"{phase.name}-{epoch + 1}",
                last=epoch == phase.epochs - 1,
            )
            _report_epoch(
                run,
                data,
                training,
                epoch,
                loss=train_loss,
                cosine=cosine,
                improved=improved,
                seconds=seconds,
            )
            state.phase, state.epoch = phase_index, epoch + 1
            state.save(run, model, ema, training.optimizer, training.scheduler)
            run.budget.use_one()

    if run.fabric.is_global_zero and state.oof is not None and run.fold is not None:
        oof_file = run.folder / "oof.parquet"
        run_folder.write_fold_oof(oof_file, run.table, data.val_rows, run.fold, state.oof)
    run.fabric.barrier()
    return FoldResult(run.fold, state.best_cosine, state.best_epoch, run.folder / "model")


def build_model(run: FoldRun) -> tuple[ImageToPromptModel, AveragedModel | None]:
    """The fold's model (seeded by seed and fold), top layers re-initialised as asked, on the
    device; and its EMA copy (None without --ema)."""
    cfg = run.cfg
    torch.manual_seed(_seed(cfg.seed, run.fold, "init"))
    model = ImageToPromptModel(cfg.model, pretrained=True)
    check_layer_options(model, cfg.layer_decay, cfg.freeze_layers, cfg.reinit_layers)
    if cfg.reinit_layers:
        reinit_top(model, cfg.reinit_layers)
    model.to(run.fabric.device)
    ema = None
    if cfg.ema:
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
    return model, ema


@dataclass
class PhaseTraining:
    """What one phase trains with: its batches, the model, its EMA copy, the optimizer and the
    schedule, and the model and optimizer as Fabric wraps them (`_f`)."""

    phase: Phase
    source: BatchSource
    model: ImageToPromptModel
    ema: AveragedModel | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    model_f: Any
    optimizer_f: Any

    @property
    def evaluated(self) -> torch.nn.Module:
        """The weights validated and kept: the EMA copy's when there is one."""
        return self.ema.module if self.ema is not None else self.model


def start_phase(
    run: FoldRun,
    data: FoldData,
    model: ImageToPromptModel,
    ema: AveragedModel | None,
    phase: Phase,
    resume: FoldState | None,
) -> PhaseTraining:
    """Freeze what the phase keeps frozen; a new optimizer and schedule (the checkpoint's when
    `resume` continues the phase midway)."""
    cfg = run.cfg
    model.freeze_backbone(phase.frozen)
    if not phase.frozen:
        freeze_bottom(model, cfg.freeze_layers)
    source = BatchSource(run, model, data.train_rows, data.val_rows, phase)
    groups = param_groups(model, cfg.lr, cfg.backbone_lr, cfg.layer_decay, cfg.weight_decay)
    optimizer = torch.optim.AdamW(groups)
    steps_per_epoch = math.ceil(source.batches / cfg.accumulate)
    scheduler = warmup_cosine(optimizer, steps_per_epoch * phase.epochs, cfg.warmup)
    if resume is not None:
        optimizer.load_state_dict(resume.optimizer)
        scheduler.load_state_dict(resume.scheduler)
    model_f, optimizer_f = run.fabric.setup(model, optimizer)
    return PhaseTraining(phase, source, model, ema, optimizer, scheduler, model_f, optimizer_f)


def train_one_epoch(run: FoldRun, data: FoldData, training: PhaseTraining, epoch: int) -> float:
    """One pass over this rank's batches; returns the mean training loss."""
    cfg, fabric, phase, source = run.cfg, run.fabric, training.phase, training.source
    # Seeds per (seed, fold, phase, epoch): a resumed epoch draws what it would have.
    torch.manual_seed(_seed(cfg.seed, run.fold, phase.name, epoch, "dropout"))
    mix = _mixgen_for_epoch(run, phase, epoch)
    training.model.train()
    total, count = 0.0, 0
    title = f"{run.label}{phase.name} {epoch + 1}/{phase.epochs}"
    with progress_bar(title, source.batches, run.progress) as bar:
        for step, (positions, pixels, flips) in enumerate(source.epoch(phase, epoch)):
            rows = torch.as_tensor(source.train_rows)[positions]
            targets = data.targets[rows.to(data.targets.device)]
            inputs = source.inputs(positions, pixels, flips, fabric.device)
            if mix is not None and inputs["pixels"] is not None:
                inputs["pixels"], targets = mix(inputs["pixels"], rows, targets)
            # Gradients sync across ranks only on the step that updates the weights; DDP decides
            # that in the forward pass, so the forward runs inside the context too.
            last_micro = (step + 1) % cfg.accumulate == 0 or step + 1 == source.batches
            with fabric.no_backward_sync(training.model_f, enabled=not last_micro):
                predictions = training.model_f(**inputs)
                loss = data.loss_fn(predictions, targets) / cfg.accumulate
                fabric.backward(loss)
            if last_micro:
                if cfg.clip_grad:
                    fabric.clip_gradients(
                        training.model_f, training.optimizer_f, max_norm=cfg.clip_grad
                    )
                training.optimizer_f.step()
                training.optimizer_f.zero_grad(set_to_none=True)
                training.scheduler.step()
                if training.ema is not None:
                    training.ema.update_parameters(training.model)
            total += float(loss.detach()) * cfg.accumulate * len(positions)
            count += len(positions)
            bar.advance()
    return total / max(count, 1)


MixBatch = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""`mix(pixels, table rows, targets)` -> MixGen's pixels and targets for the batch."""


def _mixgen_for_epoch(run: FoldRun, phase: Phase, epoch: int) -> MixBatch | None:
    """MixGen for one epoch, its partners drawn from a generator seeded per epoch (None without
    MixGen)."""
    cfg = run.cfg
    generator = torch.Generator().manual_seed(_seed(cfg.seed, run.fold, phase.name, epoch, "mix"))
    encoder = _mixgen_encoder(cfg, run.fabric)
    if encoder is None:
        return None

    def mix(pixels: torch.Tensor, rows: torch.Tensor, targets: torch.Tensor):
        prompts = [run.table.prompts[int(r)] for r in rows]
        mixed = mixgen(pixels, prompts, targets, cfg.mixgen, encoder.encode, generator)
        return mixed[0], mixed[1]

    return mix


def _keep_if_best(
    run: FoldRun,
    state: FoldState,
    model: torch.nn.Module,
    cosine: float | None,
    predictions: np.ndarray | None,
    *,
    epoch_name: str,
    last: bool,
) -> bool:
    """Publish `model` to the fold's folder when its validation cosine is the best yet (the last
    epoch's without validation rows); returns whether it improved."""
    improved = cosine is not None and (state.best_cosine is None or cosine > state.best_cosine)
    if improved or (cosine is None and last):
        state.best_cosine, state.best_epoch = cosine, epoch_name
        if run.fabric.is_global_zero:
            training = {
                "fold": run.fold,
                "best_epoch": state.best_epoch,
                "val_cosine": state.best_cosine,
                "config": config_to_dict(run.cfg),
            }
            save_model(model, run.folder / "model", training)
            state.oof = predictions if predictions is not None else state.oof
    return improved


def _report_epoch(
    run: FoldRun,
    data: FoldData,
    training: PhaseTraining,
    epoch: int,
    *,
    loss: float,
    cosine: float | None,
    improved: bool,
    seconds: float,
) -> None:
    """A row of metrics.csv, and the epoch's line for whoever listens (`run.on_epoch`)."""
    phase = training.phase
    speed = len(data.train_rows) / seconds if seconds else None
    run.metrics.add(
        fold=run.fold,
        phase=phase.name,
        epoch=epoch + 1,
        train_loss=loss,
        val_cosine=cosine,
        lr=training.scheduler.get_last_lr()[0],
        seconds=seconds,
        images_per_s=speed,
    )
    if run.on_epoch is not None:
        summary = EpochSummary(
            label=f"{run.label}{phase.name}",
            epoch=epoch + 1,
            epochs=phase.epochs,
            loss=loss,
            cosine=cosine,
            improved=improved,
            images_per_s=speed or 0.0,
        )
        run.on_epoch(summary)


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

    def epoch(
        self, phase: Phase, epoch: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]]:
        """(positions into train_rows, pixels or None, flips) for each of this rank's batches."""
        cfg = self.run.cfg
        order = self._rank_order(phase, epoch)
        # Flips are keyed by table row, so the cached and the pixel paths flip the same images.
        flips = torch.tensor(
            [cfg.hflip and flip_decision(cfg.seed, epoch, int(row)) for row in self.train_rows]
        )
        if self.cached:
            for start in range(0, len(order), cfg.batch_size):
                batch = torch.tensor(order[start : start + cfg.batch_size])
                if len(batch) < cfg.batch_size and self.drop_last:
                    break
                yield batch, None, flips[batch]
            return
        for pixels, positions in self._pixel_loader(order, epoch):
            yield positions, pixels, flips[positions]

    def _rank_order(self, phase: Phase, epoch: int) -> list[int]:
        """This rank's share of the epoch's shuffled positions into train_rows."""
        cfg, fabric = self.run.cfg, self.run.fabric
        generator = torch.Generator().manual_seed(_seed(cfg.seed, self.run.fold, phase.name, epoch))
        order = torch.randperm(len(self.train_rows), generator=generator).tolist()  # every rank's
        usable = len(order) - len(order) % fabric.world_size  # every rank takes as many steps
        return order[fabric.global_rank : usable : fabric.world_size]

    def _pixel_loader(self, order: list[int], epoch: int) -> DataLoader:
        """The training images at `order`, preprocessed (and randomly flipped) by workers."""
        cfg, rows = self.run.cfg, self.train_rows
        dataset = ImageDataset(
            [self.run.table.images[i] for i in rows],
            self.model.preprocess,
            flip="random" if cfg.hflip else None,
            seed=cfg.seed,
            keys=rows,
        )
        dataset.set_epoch(epoch)
        return DataLoader(
            dataset,
            batch_size=cfg.batch_size,
            sampler=order,
            num_workers=cfg.workers,
            drop_last=self.drop_last,
        )

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


@functools.cache
def _mixgen_encoder_cached(spec: str, device: str):
    from img2prompt.targets.encoder import load_encoder

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

    return Fabric(
        accelerator=cfg.accelerator,
        strategy=cfg.strategy,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        precision=_precision(cfg.precision),
    )


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
        loader = DataLoader(
            ImageDataset([table.images[i] for i in val_rows], model.preprocess),
            batch_size=cfg.batch_size,
            num_workers=cfg.workers,
        )
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
