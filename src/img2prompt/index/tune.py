"""`index tune`: choose k and the temperature of an index on images with known prompts, and
write the out-of-fold predictions an ensemble learns its weights from.

Leakage: when the index was built from the same prepared table as the images, each image's own
prompt is in the index, and its nearest neighbor would often be its own answer; the scores
would favour k = 1 and a tiny temperature, which fail on new images. So each image's neighbors
leave out every prompt of its own `group` (near-duplicates share one, `data prepare --group-
threshold`) and any prompt equal to its own; tables from another source share no group ids, so
only equal prompts are left out there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from img2prompt.data.table import PreparedTable, read_prepared
from img2prompt.errors import InputError
from img2prompt.index.model import RetrievalModel, is_retrieval_manifest
from img2prompt.index.options import IndexTuneConfig
from img2prompt.index.store import PromptIndex, blend
from img2prompt.metrics import mean_cosine
from img2prompt.predict.options import PredictOptions
from img2prompt.predict.predictor import Failure, Predictions, Predictor
from img2prompt.predict.tables import write_oof


@dataclass(kw_only=True)
class TuneResult:
    index: Path
    images: int
    k_grid: list[int]
    temperature_grid: list[float]
    scores: np.ndarray
    """(len(k_grid), len(temperature_grid)) mean cosines."""
    k: int
    temperature: float
    score: float
    exclusion: str
    oof: Path
    written: bool
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Exclusion:
    """What each image may not take as a neighbor (see the module docstring)."""

    prompts: list[str]
    """Each image's own prompt: an index row with the same prompt is left out."""
    groups: np.ndarray | None = None
    """Each image's group, when the index's groups come from the same table."""
    targets: np.ndarray | None = None
    """Each image's own MiniLM target, with `similar`: rows whose target is that close are left
    out, whatever table the index came from (near-duplicate prompts)."""
    similar: float = 1.0


NOT_AN_INDEX = "not a retrieval index (made by `img2prompt index build`)"

QUERY_BLOCK = 256
"""Images searched together while excluding: bounds the (block, depth, 384) targets read."""


def excluded_neighbors(
    index: PromptIndex, features: np.ndarray, k: int, exclusion: Exclusion
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest index rows of each feature row, leaving out what `exclusion` names.
    Returns (B, k) cosines and ids, padded with -inf / -1 when fewer rows remain. Searches
    2k deep first and four times deeper for the rows that lost too many."""
    n = len(index)
    codes = {prompt: i for i, prompt in enumerate(index.prompts)}
    own_prompt = np.array([codes.get(p, -1) for p in exclusion.prompts], np.int64)
    index_groups = index.groups
    scores_out = np.full((len(features), k), -np.inf, np.float32)
    ids_out = np.full((len(features), k), -1, np.int64)
    for block in range(0, len(features), QUERY_BLOCK):
        todo = np.arange(block, min(block + QUERY_BLOCK, len(features)))
        depth = min(n, 2 * k)
        while len(todo):
            scores, ids = index.search(features[todo], depth)
            rows = np.maximum(ids, 0)
            bad = (ids < 0) | (ids == own_prompt[todo, None])
            if exclusion.groups is not None:
                bad |= index_groups[rows] == exclusion.groups[todo, None]
            if exclusion.targets is not None and exclusion.similar < 1.0:
                near = np.asarray(index.targets[rows.reshape(-1)]).reshape(*rows.shape, -1)
                cosines = np.einsum("bkd,bd->bk", near, exclusion.targets[todo])
                bad |= cosines >= exclusion.similar
            finished = ((~bad).sum(1) >= k) | (depth >= n)
            for row, scores_row, ids_row, bad_row in zip(
                todo[finished], scores[finished], ids[finished], bad[finished], strict=True
            ):
                keep = np.flatnonzero(~bad_row)[:k]
                scores_out[row, : len(keep)] = scores_row[keep]
                ids_out[row, : len(keep)] = ids_row[keep]
            todo = todo[~finished]
            depth = min(n, depth * 4)
    return scores_out, ids_out


def grid_scores(
    index: PromptIndex,
    scores: np.ndarray,
    ids: np.ndarray,
    targets: np.ndarray,
    k_grid: list[int],
    temperature_grid: list[float],
) -> np.ndarray:
    """Mean cosine to `targets` of the blend of the first k neighbors at each temperature.
    The neighbors' targets are read from the (memory-mapped) store once, for the largest k;
    each cell blends a slice of them."""
    deepest = max(k_grid)
    valid = ids[:, :deepest] >= 0  # fewer than k neighbors left: -1 ids, zero weight
    rows = np.where(valid, ids[:, :deepest], 0)
    masked = np.where(valid, scores[:, :deepest], -np.inf)
    near = np.asarray(index.targets[rows.reshape(-1)]).reshape(*rows.shape, -1)
    out = np.zeros((len(k_grid), len(temperature_grid)))
    for i, k in enumerate(k_grid):
        for j, temperature in enumerate(temperature_grid):
            predicted = blend(masked[:, :k], near[:, :k], temperature)
            out[i, j] = mean_cosine(predicted, targets)
    return out


def _same_source(manifest: dict, table_path: Path) -> bool:
    return manifest.get("index", {}).get("source") == str(table_path.resolve())


def tune_index(cfg: IndexTuneConfig, progress: bool = True) -> TuneResult:
    """Grid-search (k, T) by out-of-fold mean cosine; write model.json and the OOF file."""
    from img2prompt.models.model import read_model_manifest

    started = time.perf_counter()
    manifest = read_model_manifest(cfg.index)
    if not is_retrieval_manifest(manifest):
        raise InputError(cfg.index / "model.json", NOT_AN_INDEX)
    table = read_prepared(cfg.data, need=("target", "fold", "image"), want=("group",))
    model = _load_index(cfg, table)
    predicted = _image_features(cfg, model, table, progress)
    rows = _rows_by_image(table, predicted.images)
    if not len(rows):
        raise InputError(table.path, "none of the table's images could be read")
    targets = table.targets[rows]
    exclusion, said = _exclusion(cfg, table, rows, same=_same_source(manifest, table.path))
    k_grid = sorted(set(cfg.k_grid))
    temperature_grid = sorted(set(cfg.temperature_grid))
    scores, ids = excluded_neighbors(model.index, predicted.embeddings, max(k_grid), exclusion)
    if (ids[:, 0] < 0).any():
        raise InputError(table.path, "some images have no neighbor left after the exclusion")
    grid = grid_scores(model.index, scores, ids, targets, k_grid, temperature_grid)
    best_k, best_t = np.unravel_index(int(np.argmax(grid)), grid.shape)
    k, temperature = k_grid[best_k], temperature_grid[best_t]
    oof_path = cfg.oof or cfg.index / "oof.parquet"
    _write_oof(oof_path, table, rows, model.index.blend(scores[:, :k], ids[:, :k], temperature))
    result = TuneResult(
        index=cfg.index,
        images=len(rows),
        k_grid=k_grid,
        temperature_grid=temperature_grid,
        scores=grid,
        k=k,
        temperature=temperature,
        score=float(grid[best_k, best_t]),
        exclusion=said,
        oof=oof_path,
        written=cfg.write,
        failures=predicted.failures,
    )
    if cfg.write:
        _write_choice(cfg, manifest, table, result)
    result.seconds = time.perf_counter() - started
    return result


def _load_index(cfg: IndexTuneConfig, table: PreparedTable) -> RetrievalModel:
    """The index as a model, checked to predict vectors as wide as the table's targets."""
    from img2prompt.models.model import load_model

    model = load_model(cfg.index, "cpu")
    if not isinstance(model, RetrievalModel):
        raise InputError(cfg.index, NOT_AN_INDEX)
    if table.targets.shape[1] != model.cfg.out_dim:
        raise InputError(
            table.path,
            f"targets are {table.targets.shape[1]}-d, the index's {model.cfg.out_dim}-d",
        )
    return model


def _image_features(
    cfg: IndexTuneConfig, model: RetrievalModel, table: PreparedTable, progress: bool
) -> Predictions:
    """The CLIP image features of the table's images (unfinished: searched by the caller)."""
    options = PredictOptions(
        batch_size=cfg.batch_size,
        precision=cfg.precision,
        workers=cfg.workers,
        device=cfg.device,
        compile="off",
    )
    predictor = Predictor(model, options, finish=False)
    return predictor.predict_files([str(p) for p in table.images], progress=progress)


def _exclusion(
    cfg: IndexTuneConfig, table: PreparedTable, rows: np.ndarray, *, same: bool
) -> tuple[Exclusion, str]:
    """What each image may not take as a neighbor, and how the report says it; `same`: the
    index was built from this table (its groups apply)."""
    if not cfg.exclude_own_group:
        nothing = Exclusion([""] * len(rows))  # "" matches no index prompt
        return nothing, "nothing (leaked: each image may find its own prompt)"
    exclusion = Exclusion(
        [table.prompts[i] for i in rows],
        table.groups[rows] if same and table.groups is not None else None,
        table.targets[rows],
        cfg.exclude_similar,
    )
    said = ("own group, " if same else "") + "own prompt"
    if cfg.exclude_similar < 1.0:
        said += f", prompts with target cosine >= {cfg.exclude_similar:g}"
    return exclusion, said


def _rows_by_image(table: PreparedTable, done: list[str]) -> np.ndarray:
    position = {str(p): i for i, p in enumerate(table.images)}
    return np.array([position[name] for name in done], np.int64)


def _write_oof(path: Path, table: PreparedTable, rows: np.ndarray, predictions: np.ndarray) -> None:
    """The layout `train --fold all` writes (`predict.tables.write_oof`)."""
    write_oof(path, table, rows, table.folds[rows], predictions)


def _write_choice(
    cfg: IndexTuneConfig, manifest: dict, table: PreparedTable, r: TuneResult
) -> None:
    """k and T into model.json (atomically), with the grid they won on."""
    from img2prompt.models.model import manifest_record, write_model_manifest

    record = manifest_record(manifest)
    record["tuning"] = {
        "data": str(table.path.resolve()),
        "images": r.images,
        "excluded": r.exclusion,
        "k_grid": r.k_grid,
        "temperature_grid": r.temperature_grid,
        "mean_cosine": [[round(float(x), 6) for x in row] for row in r.scores],
        "k": r.k,
        "temperature": r.temperature,
        "score": round(r.score, 6),
        "oof": str(r.oof),
    }
    write_model_manifest(
        cfg.index,
        kind=manifest["kind"],
        config={**manifest["config"], "k": r.k, "temperature": r.temperature},
        preprocess=manifest["preprocess"],
        record=record,
    )
