"""A training run's folder: everything `train` writes besides the weights it learns.

    RUN/config.yaml          the resolved TrainConfig (a resumed run must match it)
    RUN/state.json           which folds are finished
    RUN/metrics.csv          one row per epoch, rewritten atomically; RUN/curves.png
    RUN[/fold-K]/checkpoints/last.pt, RUN[/fold-K]/model/, RUN[/fold-K]/oof.parquet
    RUN/oof.parquet          every fold's out-of-fold predictions (K-fold runs)
    RUN/model/               the run's model: the best fold's, for K-fold runs

Only rank 0 writes; the loop calls these on rank 0 or guards them itself.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from img2prompt.errors import ConfigError
from img2prompt.fields import build_options
from img2prompt.io import atomic_dir, atomic_path, write_json, write_parquet
from img2prompt.predict.tables import write_oof as write_oof_table
from img2prompt.train.options import TrainConfig

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
class FoldResult:
    fold: int | None
    best_cosine: float | None
    best_epoch: str | None
    model_dir: Path


def config_to_dict(cfg: TrainConfig) -> dict:
    """The resolved config as plain values (paths as strings), as config.yaml holds it."""

    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return str(value) if isinstance(value, Path) else value

    return plain(cfg.to_dict())


def config_to_yaml(cfg: TrainConfig) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def _flat(values: dict, prefix: str = "") -> dict:
    """{"model": {"head": ...}} -> {"model.head": ...}: settings compared one by one."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def check_run_folder(cfg: TrainConfig) -> None:
    """A new run needs a fresh folder; a resumed one must compute exactly what was started."""
    saved_path = cfg.out / "config.yaml"
    if not cfg.resume:
        if saved_path.exists():
            raise ConfigError(
                f"{cfg.out} already holds a run; pass --resume to continue it, "
                "or choose another --out"
            )
        return
    if not saved_path.exists():
        raise ConfigError(
            f"{cfg.out}: nothing to resume (no config.yaml); start it without --resume"
        )
    written = yaml.safe_load(saved_path.read_text())
    with contextlib.suppress(ValueError, TypeError):  # unreadable now: compared as written
        written = config_to_dict(build_options(TrainConfig, written))
    saved = _flat(written)
    current = _flat(yaml.safe_load(config_to_yaml(cfg)))
    changed = [k for k in saved if k not in RESUMABLE_CHANGES and saved[k] != current.get(k)]
    if changed:
        details = ", ".join(f"{k}: {saved[k]!r} -> {current.get(k)!r}" for k in changed)
        raise ConfigError(f"{saved_path}: --resume with different settings ({details})")


def write_config(cfg: TrainConfig) -> None:
    cfg.out.mkdir(parents=True, exist_ok=True)
    with atomic_path(cfg.out / "config.yaml") as tmp:
        tmp.write_text(config_to_yaml(dataclasses.replace(cfg, resume=False)))


class RunState:
    """Which folds are finished (state.json), so a resumed run skips them."""

    def __init__(self, out: Path) -> None:
        self.path = out / "state.json"
        self.done: dict[str, dict] = {}
        if self.path.exists():
            self.done = json.loads(self.path.read_text())["finished_folds"]

    def result(self, key: str, fold: int | None) -> FoldResult | None:
        done = self.done.get(key)
        if done is None:
            return None
        return FoldResult(fold, done["best_cosine"], done["best_epoch"], Path(done["model_dir"]))

    def finish(self, key: str, result: FoldResult) -> None:
        self.done[key] = {
            "best_cosine": result.best_cosine,
            "best_epoch": result.best_epoch,
            "model_dir": str(result.model_dir),
        }
        write_json({"finished_folds": self.done}, self.path)


def _epoch_key(row: dict) -> tuple[str, ...]:
    """(fold, phase, epoch) as metrics.csv spells them (a CSV reads back text; None is '')."""
    return tuple("" if row[k] is None else str(row[k]) for k in ("fold", "phase", "epoch"))


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
        """Add an epoch's row; an epoch done again (a run killed after writing its row but
        before its checkpoint, then resumed) replaces its earlier row."""
        if not self.enabled:
            return
        new = {k: row.get(k) for k in self.FIELDS}
        self.rows = [old for old in self.rows if _epoch_key(old) != _epoch_key(new)] + [new]
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


def write_fold_oof(path: Path, table, rows: np.ndarray, fold: int, predictions) -> None:
    """A fold's out-of-fold predictions (`predict.tables.write_oof`'s layout)."""
    write_oof_table(path, table, rows, np.full(len(rows), fold, np.int64), predictions)


def write_oof(out: Path, parts: list[Path], several: bool) -> float | None:
    """Concatenate the folds' out-of-fold predictions into RUN/oof.parquet; return their cosine."""
    if not parts:
        return None
    table = pa.concat_tables([pq.read_table(p) for p in parts])
    if several:
        write_parquet(table, out / "oof.parquet")
    return float(np.mean(table.column("cosine").to_numpy()))


def publish_best_model(out: Path, folds: list[FoldResult]) -> None:
    """K-fold runs keep each fold's model in fold-K/model; RUN/model is the best of them."""
    if len(folds) < 2:
        return
    best = max(folds, key=lambda r: -1.0 if r.best_cosine is None else r.best_cosine)
    with atomic_dir(out / "model") as tmp:
        shutil.copytree(best.model_dir, tmp, dirs_exist_ok=True)
