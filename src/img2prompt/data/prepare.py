"""`img2prompt data prepare`: corpora -> clean -> filter -> embed -> near-dup filter -> folds.

De-duplication works on *prompts*, not rows: rows whose cleaned prompts share a `dedup_key` are one
prompt, and every image row of a kept prompt is kept, in the prompt's group and fold. A row without
an image whose prompt is already there (as text or with images) is an exact duplicate.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa

from img2prompt import __version__
from img2prompt.data.clean import clean_prompt, dedup_key, latin_fraction, word_count
from img2prompt.data.dedup import near_duplicates, similar_pairs
from img2prompt.data.folds import assign_folds, connected_groups
from img2prompt.data.options import PrepareConfig
from img2prompt.data.sources import META_COLUMNS, SourceRow, read_sources
from img2prompt.errors import ErrorLog, InputError
from img2prompt.io import vector_column, write_json, write_parquet
from img2prompt.targets.encoder import TargetEncoder, embed_texts, load_encoder


@dataclass
class PrepareReport:
    removed: dict[str, int] = field(default_factory=dict)  # step -> rows removed, in step order
    rows_read: int = 0
    rows: int = 0
    prompts: int = 0
    groups: int = 0
    largest_group: int = 0
    fold_rows: list[int] = field(default_factory=list)
    pair_recall: float | None = None
    near_duplicate_examples: list[tuple[str, str, float]] = field(default_factory=list)
    error_examples: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


SKIPPED = "bad rows skipped (--on-error skip)"


def prepare(cfg: PrepareConfig, progress: bool = True) -> PrepareReport:
    """Read `cfg.inputs`, clean and filter the prompts, embed them, drop near duplicates, group
    and fold what is left, and write `prompts.parquet` and `manifest.json` into `cfg.out`."""
    if cfg.out.exists() and not cfg.out.is_dir():
        raise InputError(cfg.out, "--out must be a folder, and this is a file")
    report = PrepareReport()
    lap = _Stopwatch(report.seconds)

    rows = _read(cfg, report)
    lap("read")

    rows, prompts, keys = _clean_and_filter(rows, cfg, report)
    if not rows:
        skipped = report.removed[SKIPPED]
        why = f" ({skipped} bad rows skipped)" if skipped else ""
        raise InputError(", ".join(map(str, cfg.inputs)), f"no prompts left after filters{why}")
    lap("clean")

    encoder = load_encoder(cfg.encoder, cfg.embed.device)
    targets = _embed(prompts, encoder, cfg, progress)
    lap("embed")

    units = _drop_near_duplicates(keys, prompts, targets, cfg, report, progress)
    keep_row = units.keep[units.of_row]
    report.removed["near duplicates"] = int((~keep_row).sum())
    lap("near-duplicates")

    unit_group = _group_units(units, cfg, report, progress)
    rows = [row for row, keep in zip(rows, keep_row, strict=True) if keep]
    prompts = [p for p, keep in zip(prompts, keep_row, strict=True) if keep]
    targets = targets[keep_row]
    groups = unit_group[units.of_row[keep_row]]
    folds = assign_folds(groups, cfg.folds)
    report.fold_rows = np.bincount(folds, minlength=cfg.folds).tolist()
    report.rows = len(rows)
    lap("groups and folds")

    _check_unique_ids(rows)
    table = _table(rows, prompts, targets, groups, folds)
    cfg.out.mkdir(parents=True, exist_ok=True)
    write_parquet(table, cfg.out / "prompts.parquet")
    write_json(_manifest(cfg, report, encoder), cfg.out / "manifest.json")
    lap("write")
    return report


class _Stopwatch:
    """Records the seconds each step took, into `seconds[step]`."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds, self.clock = seconds, time.perf_counter()

    def __call__(self, step: str) -> None:
        now = time.perf_counter()
        self.seconds[step] = round(now - self.clock, 3)
        self.clock = now


def _read(cfg: PrepareConfig, report: PrepareReport) -> list[SourceRow]:
    """Every input's rows; bad ones stop the run or, with --on-error skip, are counted."""
    errors = ErrorLog(cfg.on_error)
    rows = read_sources(cfg.inputs, errors, cfg.images)
    report.rows_read = len(rows) + errors.count
    report.removed[SKIPPED] = errors.count
    report.error_examples = errors.examples
    return rows


def _embed(
    prompts: list[str], encoder: TargetEncoder, cfg: PrepareConfig, progress: bool
) -> np.ndarray:
    """Each row's target vector, embedding every distinct cleaned text once."""
    texts = list(dict.fromkeys(prompts))
    text_row = {text: i for i, text in enumerate(texts)}
    vectors = embed_texts(
        texts, encoder, cfg.embed.cache_dir, batch_size=cfg.embed.batch_size, progress=progress
    )
    return vectors[[text_row[p] for p in prompts]]


@dataclass
class _Units:
    """The prompts (one per dedup key): which unit each row is, and each unit's vector."""

    of_row: np.ndarray  # row -> unit
    vectors: np.ndarray  # unit -> its first row's target
    keep: np.ndarray  # unit -> not a near duplicate of an earlier one


def _drop_near_duplicates(
    keys: list[str],
    prompts: list[str],
    targets: np.ndarray,
    cfg: PrepareConfig,
    report: PrepareReport,
    progress: bool,
) -> _Units:
    """Which prompts to keep: a prompt is represented by the first text of its dedup key."""
    unit_of_key = {key: i for i, key in enumerate(dict.fromkeys(keys))}
    row_unit = np.array([unit_of_key[k] for k in keys], dtype=np.int64)
    first_row_of_unit = np.unique(row_unit, return_index=True)[1]
    unit_vectors = targets[first_row_of_unit]
    dedup = near_duplicates(
        unit_vectors, cfg.dedup_threshold, cfg.dedup_mode, cfg.nprobe, progress=progress
    )
    report.pair_recall = dedup.pair_recall
    for unit in np.flatnonzero(~dedup.keep)[:10]:
        partner = dedup.duplicate_of[unit]
        cosine = float(unit_vectors[unit] @ unit_vectors[partner])
        report.near_duplicate_examples.append(
            (prompts[first_row_of_unit[unit]], prompts[first_row_of_unit[partner]], cosine)
        )
    return _Units(row_unit, unit_vectors, dedup.keep)


def _group_units(
    units: _Units, cfg: PrepareConfig, report: PrepareReport, progress: bool
) -> np.ndarray:
    """Each kept unit's group (-1 for dropped ones): chains of cosines >= --group-threshold."""
    kept_units = np.flatnonzero(units.keep)
    a, b = similar_pairs(
        units.vectors[kept_units],
        cfg.group_threshold,
        cfg.dedup_mode,
        nprobe=cfg.nprobe,
        progress=progress,
    )
    unit_group = np.full(len(units.vectors), -1, dtype=np.int64)
    unit_group[kept_units] = connected_groups(len(kept_units), a, b)
    _, prompts_per_group = np.unique(unit_group[kept_units], return_counts=True)
    report.groups, report.largest_group = len(prompts_per_group), int(prompts_per_group.max())
    report.prompts = len(kept_units)
    return unit_group


def _clean_and_filter(
    rows: list[SourceRow], cfg: PrepareConfig, report: PrepareReport
) -> tuple[list[SourceRow], list[str], list[str]]:
    """Each filter in turn, counting what it removes. Returns rows, cleaned prompts, dedup keys."""
    pairs = [(row, clean_prompt(row.prompt_raw)) for row in rows]
    steps = [
        ("empty after cleaning", lambda p: bool(p)),
        (f"under {cfg.min_latin:.0%} Latin letters", lambda p: latin_fraction(p) >= cfg.min_latin),
        (f"fewer than {cfg.min_words} words", lambda p: word_count(p) >= cfg.min_words),
        (f"more than {cfg.max_words} words", lambda p: word_count(p) <= cfg.max_words),
    ]
    for name, keep in steps:
        before = len(pairs)
        pairs = [(row, p) for row, p in pairs if keep(p)]
        report.removed[name] = before - len(pairs)
    # An image row is a duplicate only of the same (prompt, image); a text-only row adds nothing
    # when its prompt is already there, whether as text or with images.
    keys = [dedup_key(p) for _, p in pairs]
    seen = {(key, None) for key, (row, _) in zip(keys, pairs, strict=True) if row.image}
    unique = []
    for key, (row, p) in zip(keys, pairs, strict=True):
        if (key, row.image) not in seen:
            seen.add((key, row.image))
            unique.append((row, p, key))
    report.removed["exact duplicates"] = len(pairs) - len(unique)
    rows, prompts, unique_keys = zip(*unique, strict=True) if unique else ((), (), ())
    return list(rows), list(prompts), list(unique_keys)


def _check_unique_ids(rows: list[SourceRow]) -> None:
    first: dict[str, SourceRow] = {}
    for row in rows:
        if row.id in first:
            other = first[row.id]
            raise InputError(
                row.source,
                f"id {row.id!r} is also used at {other.source}:{other.line}; ids must be unique",
                row.line,
            )
        first[row.id] = row


def _table(
    rows: list[SourceRow],
    prompts: list[str],
    targets: np.ndarray,
    groups: np.ndarray,
    folds: np.ndarray,
) -> pa.Table:
    columns: dict[str, pa.Array] = {
        "id": pa.array([r.id for r in rows], pa.string()),
        "prompt": pa.array(prompts, pa.string()),
        "prompt_raw": pa.array([r.prompt_raw for r in rows], pa.string()),
        "target": vector_column(targets),
        "group": pa.array(groups, pa.int64()),
        "fold": pa.array(folds, pa.int64()),
    }
    if any(r.image for r in rows):
        columns["image"] = pa.array([r.image for r in rows], pa.string())
    columns["source"] = pa.array([r.origin or r.source for r in rows], pa.string())
    for name in META_COLUMNS:
        values = [r.meta.get(name) for r in rows]
        if any(v is not None for v in values):
            try:
                columns[name] = pa.array(values)
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):  # mixed or huge values
                columns[name] = pa.array([None if v is None else str(v) for v in values])
    return pa.table(columns)


def _manifest(cfg: PrepareConfig, report: PrepareReport, encoder: TargetEncoder) -> dict:
    import faiss
    import sentence_transformers
    import torch

    return {
        "img2prompt_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "inputs": [
            {"path": str(p), "bytes": Path(p).stat().st_size if Path(p).is_file() else None}
            for p in cfg.inputs
        ],
        "parameters": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "inputs"},
        "encoder": {
            "spec": encoder.spec,
            "fingerprint": encoder.fingerprint,
            "dim": encoder.dim,
            "device": encoder.device,
        },
        "counts": {
            "rows_read": report.rows_read,
            "removed": report.removed,
            "rows": report.rows,
            "prompts": report.prompts,
            "groups": report.groups,
            "largest_group": report.largest_group,
            "fold_rows": report.fold_rows,
        },
        "near_duplicate_pair_recall": report.pair_recall,
        "skipped_errors": report.error_examples,
        "seconds": report.seconds,
        "versions": {
            "torch": torch.__version__,
            "sentence_transformers": sentence_transformers.__version__,
            "faiss": faiss.__version__,
            "pyarrow": pa.__version__,
        },
    }
