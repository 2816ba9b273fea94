"""`img2prompt train`: the training loop, on Lightning Fabric (CPU, one GPU, or DDP over many).

Per fold: build the model -> LP phase (head only, on cached features) -> FT phase (everything
not frozen) -> keep the best epoch by validation cosine -> out-of-fold predictions. Every epoch
ends with a checkpoint, and every random choice is seeded by (seed, fold, phase, epoch), so a
resumed run continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
import yaml
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from img2prompt.config import LIGHTNING_PRECISION, TrainConfig
from img2prompt.data.dataset import ImageDataset, TrainingTable, flip_decision, read_training_table
from img2prompt.io import atomic_path, vector_column, write_json, write_parquet
from img2prompt.models.model import ImageToPromptModel, save_model
from img2prompt.progress import progress_bar, stderr
from img2prompt.train.augment import mixgen
from img2prompt.train.features import FeatureViews, compute_features
from img2prompt.train.losses import WeightedLoss, parse_loss_weights
from img2prompt.train.optim import freeze_bottom, param_groups, reinit_top, warmup_cosine

# Only these may differ when resuming: they change how the run executes, not what it computes.
RESUMABLE_CHANGES = (
    "resume",
    "stop_after_epochs",
    "devices",
    "num_nodes",
    "workers",
    "accelerator",
)


@dataclass
class Phase:
    name: str  # "lp" (head only) or "ft"
    epochs: int
    backbone_frozen: bool


@dataclass
class FoldResult:
    fold: int | None
    best_cosine: float | None
    best_epoch: str | None
    model_dir: Path


@dataclass
class TrainReport:
    out: Path
    folds: list[FoldResult] = field(default_factory=list)
    oof_cosine: float | None = None
    stopped_early: bool = False
    seconds: float = 0.0
    is_global_zero: bool = True  # only rank 0 prints the summary


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


# --- run folder, config and resume ------------------------------------------------------------


def config_to_yaml(cfg: TrainConfig) -> str:
    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return str(value) if isinstance(value, Path) else value

    return yaml.safe_dump(plain(dataclasses.asdict(cfg)), sort_keys=False)


def _flat(values: dict, prefix: str = "") -> dict:
    """{"model": {"head": ...}} -> {"model.head": ...}: settings compared one by one."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _check_run_folder(cfg: TrainConfig) -> TrainConfig:
    """A new run needs a fresh folder; a resumed one must compute exactly what was started."""
    saved_path = cfg.out / "config.yaml"
    if not cfg.resume:
        if saved_path.exists():
            raise ValueError(
                f"{cfg.out} already holds a run; pass --resume to continue it, "
                "or choose another --out"
            )
        return cfg
    if not saved_path.exists():
        raise ValueError(
            f"{cfg.out}: nothing to resume (no config.yaml); start it without --resume"
        )
    saved = _flat(yaml.safe_load(saved_path.read_text()))
    current = _flat(yaml.safe_load(config_to_yaml(cfg)))
    changed = [k for k in saved if k not in RESUMABLE_CHANGES and saved[k] != current.get(k)]
    if changed:
        details = ", ".join(f"{k}: {saved[k]!r} -> {current.get(k)!r}" for k in changed)
        raise ValueError(f"{saved_path}: --resume with different settings ({details})")
    return cfg


class RunState:
    """Which folds are finished, and the last checkpoint of the one in progress."""

    def __init__(self, out: Path) -> None:
        self.path = out / "state.json"
        self.done: dict[str, dict] = {}
        if self.path.exists():
            self.done = json.loads(self.path.read_text())["finished_folds"]

    def finish(self, key: str, result: FoldResult) -> None:
        self.done[key] = {
            "best_cosine": result.best_cosine,
            "best_epoch": result.best_epoch,
            "model_dir": str(result.model_dir),
        }
        write_json({"finished_folds": self.done}, self.path)


# --- the loop ---------------------------------------------------------------------------------


def train(cfg: TrainConfig, progress: bool = True) -> TrainReport:
    """Train as `cfg` says; returns what was written where. Safe to call again with resume=True."""
    started = time.perf_counter()
    fabric = _fabric(cfg)
    fabric.launch()
    cfg = _check_run_folder(cfg)
    table = read_training_table(cfg.data)
    if fabric.is_global_zero:
        cfg.out.mkdir(parents=True, exist_ok=True)
        with atomic_path(cfg.out / "config.yaml") as tmp:
            tmp.write_text(config_to_yaml(dataclasses.replace(cfg, resume=False)))
    fabric.barrier()

    folds = _folds_to_run(cfg.fold, table.folds)
    state = RunState(cfg.out)
    report = TrainReport(cfg.out, is_global_zero=fabric.is_global_zero)
    metrics = MetricsLog(cfg.out / "metrics.csv", fabric.is_global_zero)
    oof_parts: list[Path] = []
    for fold in folds:
        key = "all" if fold is None else str(fold)
        fold_dir = cfg.out if len(folds) == 1 else cfg.out / f"fold-{fold}"
        if key in state.done:
            done = state.done[key]
            result = FoldResult(
                fold, done["best_cosine"], done["best_epoch"], Path(done["model_dir"])
            )
        else:
            trainer = FoldTrainer(cfg, fabric, table, fold, fold_dir, metrics, progress)
            result = trainer.run()
            if result is None:  # --stop-after-epochs reached
                report.stopped_early = True
                break
            if fabric.is_global_zero:
                state.finish(key, result)
        report.folds.append(result)
        if fold is not None and (fold_dir / "oof.parquet").exists():
            oof_parts.append(fold_dir / "oof.parquet")
    if fabric.is_global_zero and not report.stopped_early:
        report.oof_cosine = _write_oof(cfg.out, oof_parts, len(folds) > 1)
        _publish_best_model(cfg.out, report.folds)
        metrics.plot(cfg.out / "curves.png")
    fabric.barrier()
    report.seconds = time.perf_counter() - started
    return report


def _folds_to_run(fold: str, table_folds: np.ndarray) -> list[int | None]:
    present = sorted(set(table_folds.tolist()))
    if fold == "none":
        return [None]
    if fold == "all":
        if len(present) < 2:
            raise ValueError(
                "--fold all needs a table with at least 2 folds (data prepare --folds)"
            )
        return present
    if int(fold) not in present:
        raise ValueError(f"--fold {fold}: the table's folds are {present}")
    if len(present) < 2:
        raise ValueError("the table has one fold, so nothing is left to train on; use --fold none")
    return [int(fold)]


class FoldTrainer:
    """Trains one fold (or everything, with fold=None) from start or from its last checkpoint."""

    def __init__(
        self,
        cfg: TrainConfig,
        fabric,
        table: TrainingTable,
        fold: int | None,
        fold_dir: Path,
        metrics: MetricsLog,
        progress: bool,
    ) -> None:
        self.cfg, self.fabric, self.fold, self.dir = cfg, fabric, fold, fold_dir
        self.metrics, self.progress = metrics, progress and fabric.is_global_zero
        is_val = np.zeros(len(table), bool) if fold is None else table.folds == fold
        self.train_rows, self.val_rows = np.flatnonzero(~is_val), np.flatnonzero(is_val)
        self.table = table
        # a copy: the table's Arrow-backed array is read-only
        self.targets = torch.tensor(table.targets, device=fabric.device)
        self.loss_fn = WeightedLoss(parse_loss_weights(cfg.loss), cfg.mnrl_scale)
        self.encoder = None
        if cfg.mixgen > 0:
            from img2prompt.data.embed import load_encoder

            self.encoder = load_encoder(cfg.model.target_encoder, str(fabric.device))
        self.checkpoint_path = fold_dir / "checkpoints" / "last.pt"
        self.best_cosine: float | None = None
        self.best_epoch: str | None = None
        self.epochs_this_call = 0
        self._oof: np.ndarray | None = None  # validation predictions of the best epoch
        self._resume_state: dict | None = None

    # -- setup --

    def run(self) -> FoldResult | None:
        cfg, fabric = self.cfg, self.fabric
        torch.manual_seed(_seed(cfg.seed, self.fold, "init"))
        self.model = ImageToPromptModel(cfg.model, pretrained=True)
        if cfg.reinit_layers:
            reinit_top(self.model, cfg.reinit_layers)
        self.model.to(fabric.device)
        self.ema = (
            AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
            if cfg.ema
            else None
        )
        resume_at = self._load_checkpoint()
        phases = [Phase("lp", cfg.lp_epochs, True), Phase("ft", cfg.epochs, cfg.freeze_backbone)]
        for phase_index, phase in enumerate(phases):
            if phase.epochs == 0 or (resume_at and phase_index < resume_at[0]):
                continue
            start = resume_at[1] if resume_at and phase_index == resume_at[0] else 0
            resume_at = None
            if not self._run_phase(phase_index, phase, start):
                return None
        if fabric.is_global_zero:
            self._write_fold_outputs()
        fabric.barrier()
        return FoldResult(self.fold, self.best_cosine, self.best_epoch, self.dir / "model")

    def _run_phase(self, phase_index: int, phase: Phase, start_epoch: int) -> bool:
        cfg, fabric, model = self.cfg, self.fabric, self.model
        model.freeze_backbone(phase.backbone_frozen)
        if not phase.backbone_frozen:
            freeze_bottom(model, cfg.freeze_layers)
        # Cache what is frozen, unless MixGen needs fresh pixels every step.
        cacheable = cfg.cache_features and cfg.mixgen == 0
        cache_all = cacheable and phase.backbone_frozen
        cache_style = cacheable and not cache_all and model.style is not None
        extract = model.features if cache_all else model.style_features if cache_style else None
        train_views = val_views = None
        if extract is not None:
            model.eval()
            train_views = self._cache(extract, self.train_rows, "train")
            if len(self.val_rows):  # --fold none validates on nothing
                val_views = self._cache(extract, self.val_rows, "val", flips=False)

        groups = param_groups(model, cfg.lr, cfg.backbone_lr, cfg.layer_decay, cfg.weight_decay)
        optimizer = torch.optim.AdamW(groups)
        steps_per_epoch = math.ceil(self._batches_per_epoch() / cfg.accumulate)
        scheduler = warmup_cosine(optimizer, steps_per_epoch * phase.epochs, cfg.warmup)
        if start_epoch:
            self._restore_optimizer(optimizer, scheduler)
        model_f, optimizer_f = fabric.setup(model, optimizer)

        for epoch in range(start_epoch, phase.epochs):
            if cfg.stop_after_epochs is not None and self.epochs_this_call >= cfg.stop_after_epochs:
                return False
            clock = time.perf_counter()
            loss = self._train_epoch(
                model_f, optimizer_f, scheduler, phase, epoch, cache_all, train_views
            )
            seconds = time.perf_counter() - clock
            cosine, predictions = self._validate(cache_all, val_views)
            tag = f"{phase.name}-{epoch + 1}"
            improved = cosine is not None and (
                self.best_cosine is None or cosine > self.best_cosine
            )
            if improved or (cosine is None and epoch == phase.epochs - 1):
                self.best_cosine, self.best_epoch = cosine, tag
                self._save_best(predictions)
            self.metrics.add(
                fold=self.fold, phase=phase.name, epoch=epoch + 1, train_loss=loss,
                val_cosine=cosine, lr=scheduler.get_last_lr()[0], seconds=seconds,
                images_per_s=len(self.train_rows) / seconds if seconds else None,
            )  # fmt: skip
            self._log_epoch(phase, epoch, loss, cosine, improved, seconds)
            self._save_checkpoint(phase_index, epoch + 1, optimizer, scheduler)
            self.epochs_this_call += 1
        return True

    def _cache(
        self, extract, rows: np.ndarray, name: str, flips: bool | None = None
    ) -> FeatureViews:
        images = [self.table.images[i] for i in rows]
        flips = self.cfg.hflip if flips is None else flips
        fold = "" if self.fold is None else f" (fold {self.fold})"
        common = dict(
            preprocess=self.model.preprocess, device=self.fabric.device,
            batch_size=self.cfg.batch_size, workers=self.cfg.workers, progress=self.progress,
        )  # fmt: skip
        plain = compute_features(extract, images, description=f"caching {name}{fold}", **common)
        flipped = (
            compute_features(
                extract, images, flip=True, description=f"caching {name} flipped", **common
            )
            if flips
            else None
        )
        return FeatureViews(plain, flipped)

    # -- one epoch --

    def _epoch_order(self, phase: Phase, epoch: int) -> list[int]:
        """This rank's shuffled positions into train_rows (same shuffle on every rank)."""
        generator = torch.Generator().manual_seed(
            _seed(self.cfg.seed, self.fold, phase.name, epoch)
        )
        order = torch.randperm(len(self.train_rows), generator=generator).tolist()
        world, rank = self.fabric.world_size, self.fabric.global_rank
        usable = len(order) - len(order) % world  # every rank takes as many steps (DDP needs it)
        return order[rank:usable:world]

    def _batches_per_epoch(self) -> int:
        per_rank = len(self.train_rows) // self.fabric.world_size
        full, rest = divmod(per_rank, self.cfg.batch_size)
        return full + (1 if rest and not self._drop_last() else 0)

    def _drop_last(self) -> bool:
        # A BatchNorm head cannot train on a batch of one.
        return self.cfg.model.head == "mlp" and len(self.train_rows) > self.cfg.batch_size

    def _batches(self, phase: Phase, epoch: int, cached: bool):
        """Yields (positions into train_rows, pixels or None, flips)."""
        cfg = self.cfg
        order = self._epoch_order(phase, epoch)
        # Flips are keyed by table row, so the cached and the pixel paths flip the same images.
        flips = torch.tensor(
            [cfg.hflip and flip_decision(cfg.seed, epoch, int(row)) for row in self.train_rows]
        )
        if cached:
            for start in range(0, len(order), cfg.batch_size):
                batch = torch.tensor(order[start : start + cfg.batch_size])
                if len(batch) < cfg.batch_size and self._drop_last():
                    break
                yield batch, None, flips[batch]
            return
        dataset = ImageDataset(
            [self.table.images[i] for i in self.train_rows],
            self.model.preprocess,
            flip="random" if cfg.hflip else None,
            seed=cfg.seed,
            keys=self.train_rows,
        )
        dataset.set_epoch(epoch)
        loader = DataLoader(
            dataset,
            batch_size=cfg.batch_size,
            sampler=order,
            num_workers=cfg.workers,
            drop_last=self._drop_last(),
        )
        for pixels, positions in loader:
            yield positions, pixels, flips[positions]

    def _train_epoch(self, model_f, optimizer, scheduler, phase, epoch, cached, views) -> float:
        cfg, fabric, model = self.cfg, self.fabric, self.model
        torch.manual_seed(_seed(cfg.seed, self.fold, phase.name, epoch, "dropout"))
        mix_generator = torch.Generator().manual_seed(
            _seed(cfg.seed, self.fold, phase.name, epoch, "mix")
        )
        model.train()
        total, count = 0.0, 0
        batches = self._batches_per_epoch()
        fold = "" if self.fold is None else f"fold {self.fold} "
        description = f"{fold}{phase.name} {epoch + 1}/{phase.epochs}"
        with progress_bar(description, batches, self.progress) as bar:
            for step, (positions, pixels, flips) in enumerate(self._batches(phase, epoch, cached)):
                rows = torch.as_tensor(self.train_rows)[positions]
                targets = self.targets[rows.to(self.targets.device)]
                if cached:
                    features = views.take(positions, flips).to(fabric.device)
                    predictions = model_f(None, features=features)
                else:
                    pixels = pixels.to(fabric.device)
                    if cfg.mixgen > 0:
                        prompts = [self.table.prompts[int(r)] for r in rows]
                        pixels, targets, _ = mixgen(
                            pixels, prompts, targets, cfg.mixgen, self.encoder.encode, mix_generator
                        )
                    style = views.take(positions, flips).to(fabric.device) if views else None
                    predictions = model_f(pixels, style_features=style)
                loss = self.loss_fn(predictions, targets) / cfg.accumulate
                last_micro = (step + 1) % cfg.accumulate == 0 or step + 1 == batches
                with fabric.no_backward_sync(model_f, enabled=not last_micro):
                    fabric.backward(loss)
                if last_micro:
                    if cfg.clip_grad:
                        fabric.clip_gradients(model_f, optimizer, max_norm=cfg.clip_grad)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    scheduler.step()
                    if self.ema is not None:
                        self.ema.update_parameters(model)
                total += float(loss.detach()) * cfg.accumulate * len(positions)
                count += len(positions)
                bar.advance()
        return total / max(count, 1)

    # -- validation, checkpoints, outputs --

    @torch.inference_mode()
    def _validate(self, cached: bool, views: FeatureViews | None):
        """Mean cosine on the validation fold (every rank evaluates all of it: it is small, and it
        keeps the ranks' choices of the best epoch identical)."""
        if len(self.val_rows) == 0:
            return None, None
        model = self.ema.module if self.ema is not None else self.model
        model.eval()
        if cached:
            predictions = model(None, features=views.plain.to(self.fabric.device))
        else:
            loader = DataLoader(
                ImageDataset([self.table.images[i] for i in self.val_rows], model.preprocess),
                batch_size=self.cfg.batch_size,
                num_workers=self.cfg.workers,
            )
            chunks = []
            for pixels, positions in loader:
                style = views.plain[positions].to(self.fabric.device) if views else None
                with self.fabric.autocast():
                    chunks.append(
                        model(pixels.to(self.fabric.device), style_features=style).float()
                    )
            predictions = torch.cat(chunks)
        predictions = F.normalize(predictions.float(), dim=-1)
        targets = self.targets[torch.as_tensor(self.val_rows, device=self.targets.device)]
        cosine = float((predictions * targets).sum(-1).mean())
        return cosine, predictions.cpu().numpy()

    def _save_best(self, predictions: np.ndarray | None) -> None:
        if not self.fabric.is_global_zero:
            return
        model = self.ema.module if self.ema is not None else self.model
        training = {
            "fold": self.fold,
            "best_epoch": self.best_epoch,
            "val_cosine": self.best_cosine,
            "config": yaml.safe_load(config_to_yaml(self.cfg)),
        }
        save_model(model, self.dir / "model", training)
        if predictions is not None:
            self._oof = predictions

    def _write_fold_outputs(self) -> None:
        predictions = self._oof
        if predictions is None or self.fold is None:
            return
        rows = self.val_rows
        targets = self.table.targets[rows]
        table = pa.table(
            {
                "id": [self.table.ids[i] for i in rows],
                "image": [str(self.table.images[i]) for i in rows],
                "fold": np.full(len(rows), self.fold, np.int64),
                "embedding": vector_column(predictions),
                "cosine": (predictions * targets).sum(1).astype(np.float32),
            }
        )
        write_parquet(table, self.dir / "oof.parquet")

    def _checkpoint_state(self, phase_index, epoch, optimizer, scheduler) -> dict:
        return {
            "phase": phase_index,
            "epoch": epoch,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "best_cosine": self.best_cosine,
            "best_epoch": self.best_epoch,
            "oof": self._oof,
        }

    def _save_checkpoint(self, phase_index, epoch, optimizer, scheduler) -> None:
        if self.fabric.is_global_zero:
            state = self._checkpoint_state(phase_index, epoch, optimizer, scheduler)
            with atomic_path(self.checkpoint_path) as tmp:
                torch.save(state, tmp)
        self.fabric.barrier()

    def _load_checkpoint(self) -> tuple[int, int] | None:
        """Restore weights and bookkeeping; returns (phase index, next epoch) or None."""
        if not self.checkpoint_path.exists():
            return None
        state = torch.load(
            self.checkpoint_path, map_location=self.fabric.device, weights_only=False
        )
        self.model.load_state_dict(state["model"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        self.best_cosine, self.best_epoch = state["best_cosine"], state["best_epoch"]
        self._oof = state["oof"]
        self._resume_state = state
        return state["phase"], state["epoch"]

    def _restore_optimizer(self, optimizer, scheduler) -> None:
        state = self._resume_state
        if state is not None:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])

    def _log_epoch(self, phase, epoch, loss, cosine, improved, seconds) -> None:
        if not self.fabric.is_global_zero:
            return
        fold = f"fold {self.fold} " if self.fold is not None else ""
        val = (
            f"val cosine {cosine:.4f}{' (best)' if improved else ''}" if cosine is not None else ""
        )
        speed = len(self.train_rows) / seconds if seconds else 0.0
        stderr.print(
            f"{fold}{phase.name} epoch {epoch + 1}/{phase.epochs}  loss {loss:.4f}  {val}  "
            f"{speed:,.1f} img/s",
            highlight=False,
        )


# --- run-level outputs ------------------------------------------------------------------------


class MetricsLog:
    """metrics.csv, rewritten atomically after every epoch, and the curves PNG."""

    FIELDS = ("fold", "phase", "epoch", "train_loss", "val_cosine", "lr", "seconds", "images_per_s")

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = path, enabled
        self.rows: list[dict] = []
        if enabled and path.exists():  # a resumed run keeps its history
            with open(path, newline="") as f:
                self.rows = list(csv.DictReader(f))

    def add(self, **row: Any) -> None:
        if not self.enabled:
            return
        self.rows.append({k: row.get(k) for k in self.FIELDS})
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, self.FIELDS)
            writer.writeheader()
            writer.writerows(self.rows)

    def plot(self, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        if not self.rows:
            return
        figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        for fold in dict.fromkeys(r["fold"] for r in self.rows):
            rows = [r for r in self.rows if r["fold"] == fold]
            x = range(1, len(rows) + 1)
            label = "all data" if fold in (None, "", "None") else f"fold {fold}"
            left.plot(x, [float(r["train_loss"]) for r in rows], label=label)
            cosines = [
                float(r["val_cosine"]) if r["val_cosine"] not in (None, "") else math.nan
                for r in rows
            ]
            right.plot(x, cosines, marker="o", label=label)
        left.set(title="training loss", xlabel="epoch (LP then FT)")
        right.set(title="validation mean cosine", xlabel="epoch (LP then FT)")
        for axis in (left, right):
            axis.grid(alpha=0.3)
            axis.legend()
        figure.tight_layout()
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=100)
        plt.close(figure)


def _write_oof(out: Path, parts: list[Path], several: bool) -> float | None:
    """Concatenate the folds' out-of-fold predictions into RUN/oof.parquet; return their cosine."""
    if not parts:
        return None
    table = pa.concat_tables([pq.read_table(p) for p in parts])
    if several:
        write_parquet(table, out / "oof.parquet")
    return float(np.mean(table.column("cosine").to_numpy()))


def _publish_best_model(out: Path, folds: list[FoldResult]) -> None:
    """K-fold runs keep each fold's model in fold-K/model; RUN/model is the best of them."""
    if len(folds) < 2:
        return
    best = max(folds, key=lambda r: -1.0 if r.best_cosine is None else r.best_cosine)
    target = out / "model"
    tmp = out / ".model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(best.model_dir, tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
