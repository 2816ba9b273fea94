"""`index build`: embed every distinct prompt of a prepared table with CLIP's text tower and
write an index folder (see `index.model` for the layout).

Resumable: the work happens in `OUT.partial/`. The CLIP checkpoint is copied there first, then
the prompts are embedded in chunks of `chunk_size` rows, each written atomically as
`chunks/chunk-NNNNNN.npy` (a chunk is there whole or not at all). Run the same command after an
interruption and only the missing chunks are embedded; rows are neither lost nor duplicated.
`build.json` records what decides the features (the prompts, the CLIP spec, the precision, the
chunking); a different job into the same OUT is refused, naming what changed. When every chunk
is there the FAISS index, targets and manifest are written and the folder is renamed to OUT.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from img2prompt.data.table import PreparedTable, read_prepared
from img2prompt.device import resolve_device
from img2prompt.errors import ConfigError, InputError
from img2prompt.index.clip import (
    DTYPES,
    TextEncoder,
    clip_preprocess,
    load_clip,
    load_tokenizer,
    save_clip_folder,
)
from img2prompt.index.model import CLIP_FOLDER, KIND, RetrievalConfig, is_retrieval_manifest
from img2prompt.index.options import IndexBuildConfig
from img2prompt.index.store import (
    INDEX_FILE,
    PROMPTS_FILE,
    TARGETS_FILE,
    configure_search,
    top_k,
)
from img2prompt.io import (
    atomic_path,
    read_json,
    swap_dir,
    write_json,
    write_parquet,
)
from img2prompt.models.model import write_model_manifest
from img2prompt.predict.resume import partial_folder
from img2prompt.progress import progress_bar
from img2prompt.ranks import Ranks, join_ranks, leave_ranks

RECALL_QUERIES = 1000
"""Prompts whose neighbors an approximate index is checked on against exact search."""


@dataclass(kw_only=True)
class BuildReport:
    out: Path
    prompts: int
    rows_read: int
    dim: int
    embedded: int
    resumed: int
    seconds: float
    embed_seconds: float
    search: str
    recall: float | None
    recall_k: int
    precision: str
    device: str
    split: str = ""
    """Under torchrun, how the chunks were split between ranks, else ''."""
    wrote: bool = True
    """This process wrote the index (rank 0 does, after every rank's chunks are in)."""

    @property
    def texts_per_second(self) -> float:
        return self.embedded / max(self.embed_seconds, 1e-9)


def _groups(table: PreparedTable) -> np.ndarray:
    """The prompts' groups; a table without them makes each prompt its own."""
    return table.groups if table.groups is not None else np.arange(len(table), dtype=np.int64)


def _identity(cfg: IndexBuildConfig, table: PreparedTable, precision: str) -> dict:
    digest = hashlib.blake2b(digest_size=16)
    for prompt in table.prompts:
        digest.update(prompt.encode("utf-8") + b"\0")
    return {
        "prompts": str(table.path.resolve()),
        "distinct_prompts": len(table.prompts),
        "prompts_digest": digest.hexdigest(),
        "clip": cfg.clip,
        "precision": precision,
        "chunk_size": cfg.chunk_size,
    }


def _check_identity(work: Path, identity: dict) -> None:
    job = work / "build.json"
    if not job.is_file():
        write_json(identity, job)
        return
    before = json.loads(job.read_text())
    changed = [key for key in identity if before.get(key) != identity[key]]
    if changed:
        raise InputError(
            job,
            f"an interrupted build with other {', '.join(changed)} is here; run it with the "
            f"same options, or delete {work} to start over",
        )


def _chunk_path(work: Path, chunk: int) -> Path:
    return work / "chunks" / f"chunk-{chunk:06d}.npy"


def _save_array(array: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def _chunks_done(work: Path, n_rows: int, chunk_size: int, dim: int) -> set[int]:
    """Chunks already on disk with the right shape (a chunk file is whole or absent)."""
    done = set()
    for chunk in range(_chunk_count(n_rows, chunk_size)):
        path = _chunk_path(work, chunk)
        if path.is_file():
            expected = (_chunk_rows(n_rows, chunk_size, chunk), dim)
            if np.load(path, mmap_mode="r").shape == expected:
                done.add(chunk)
    return done


def _ensure_clip_copy(cfg: IndexBuildConfig, work: Path, clip, tokenizer) -> Path:
    target = work / CLIP_FOLDER
    if not (target / "config.json").is_file():
        tmp = work / f".{CLIP_FOLDER}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        save_clip_folder(cfg.clip, clip, tokenizer, tmp)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    return target


def _check_out(out: Path) -> None:
    """OUT may be replaced only when it is an index (or empty): never someone's other folder."""
    if not out.exists():
        return
    manifest = out / "model.json"
    is_index = False
    if manifest.is_file():
        written = read_json(manifest)
        is_index = isinstance(written, dict) and is_retrieval_manifest(written)
    if out.is_file() or not (is_index or not any(out.iterdir())):
        raise InputError(out, "exists and is not an index folder; choose another --out")


def build_index(cfg: IndexBuildConfig, progress: bool = True) -> BuildReport:
    """Embed the prompts (resumably), build the search index, write the folder; see the module
    docstring. Under torchrun, chunk c is embedded by rank c mod WORLD_SIZE, and rank 0 builds
    the index from every rank's chunks."""
    ranks = join_ranks()
    try:
        if ranks.world_size > 1 and not ranks.group:
            raise ConfigError("index build over several processes needs torchrun's rendezvous")
        return _build_index(cfg, ranks, progress)
    finally:
        leave_ranks(ranks)


def _build_index(cfg: IndexBuildConfig, ranks: Ranks, progress: bool) -> BuildReport:
    started = time.perf_counter()
    _check_out(cfg.out)
    table = read_prepared(cfg.prompts, need=("target",), want=("group",)).distinct_prompts()
    device = resolve_device(cfg.device)
    precision = _precision(cfg.precision, device)
    work = partial_folder(cfg.out)
    clip = load_clip(cfg.clip)
    tokenizer = load_tokenizer(cfg.clip)
    identity = _identity(cfg, table, precision)
    clip_dir = _set_up_work(cfg, ranks, work, identity, clip=clip, tokenizer=tokenizer)
    dim = clip.config.projection_dim
    preprocess = clip_preprocess(clip_dir, clip.config.vision_config.image_size)
    encoder = TextEncoder(clip, tokenizer, device, DTYPES[precision])
    embedded, resumed, embed_seconds = _embed_chunks(
        cfg, ranks, work, table.prompts, encoder=encoder, dim=dim, progress=progress
    )
    del encoder, clip
    report = BuildReport(
        out=cfg.out,
        prompts=len(table.prompts),
        rows_read=table.rows_read,
        dim=dim,
        embedded=embedded,  # this process's (the other ranks' are in their own reports)
        resumed=resumed,
        seconds=0.0,
        embed_seconds=embed_seconds,
        search=cfg.retrieval.search,
        recall=None,
        recall_k=0,
        precision=precision,
        device=str(device),
    )
    if ranks.world_size > 1:
        report.split = (
            f"{_chunk_count(report.prompts, cfg.chunk_size):,} chunks over {ranks.world_size} ranks"
        )
        ranks.barrier()  # every rank's chunks are on disk
        if not ranks.is_main:
            report.wrote = False
            report.seconds = time.perf_counter() - started
            return report
    report.recall, report.recall_k = _write_search_files(cfg, work, table, dim)
    report.seconds = time.perf_counter() - started
    _write_manifest(cfg, work, table, preprocess.to_dict(), report)
    shutil.rmtree(work / "chunks")
    (work / "build.json").unlink()
    swap_dir(work, cfg.out)  # the old index or the new one, never neither
    return report


def _precision(precision: str, device: torch.device) -> str:
    """`auto`: fp16 on CUDA, fp32 elsewhere."""
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    return precision


def _chunk_count(n_rows: int, chunk_size: int) -> int:
    return -(-n_rows // chunk_size)


def _chunk_rows(n_rows: int, chunk_size: int, chunk: int) -> int:
    return min(chunk_size, n_rows - chunk * chunk_size)


def _set_up_work(
    cfg: IndexBuildConfig, ranks: Ranks, work: Path, identity: dict, *, clip, tokenizer
) -> Path:
    """Create or check OUT.partial and copy CLIP in; rank 0 does it before the others look.
    Returns the copied CLIP folder."""
    for turn in ("main", "others"):
        if (turn == "main") == ranks.is_main:
            work.mkdir(parents=True, exist_ok=True)
            _check_identity(work, identity)
            clip_dir = _ensure_clip_copy(cfg, work, clip, tokenizer)
        ranks.barrier()
    return clip_dir


def _embed_chunks(
    cfg: IndexBuildConfig,
    ranks: Ranks,
    work: Path,
    prompts: list[str],
    *,
    encoder: TextEncoder,
    dim: int,
    progress: bool,
) -> tuple[int, int, float]:
    """Embed this rank's missing chunks (chunk c is rank c mod WORLD_SIZE's). Returns the rows
    embedded here, the rows found already on disk, and the seconds it took."""
    n, size = len(prompts), cfg.chunk_size
    mine = [c for c in range(_chunk_count(n, size)) if c % ranks.world_size == ranks.rank]
    done = _chunks_done(work, n, size, dim) & set(mine)
    rows = sum(_chunk_rows(n, size, c) for c in mine)
    resumed = sum(_chunk_rows(n, size, c) for c in done)
    started = time.perf_counter()
    with progress_bar("index build: CLIP text features", rows, progress) as bar:
        bar.advance(resumed)
        for chunk in mine:
            if chunk not in done:
                texts = prompts[chunk * size : (chunk + 1) * size]
                _save_array(encoder.encode(texts, cfg.batch_size, bar), _chunk_path(work, chunk))
    return rows - resumed, resumed, time.perf_counter() - started


def _write_search_files(
    cfg: IndexBuildConfig, work: Path, table: PreparedTable, dim: int
) -> tuple[float | None, int]:
    """The FAISS index from every chunk, the targets and the prompts; returns the approximate
    index's measured recall@k (None, 0 for exact search)."""
    import faiss

    n = len(table.prompts)
    chunks = [_chunk_path(work, c) for c in range(_chunk_count(n, cfg.chunk_size))]
    index = _faiss_index(cfg, chunks, n, dim)
    recall = (None, 0) if cfg.retrieval.search == "exact" else _approx_recall(cfg, index, chunks)
    with atomic_path(work / INDEX_FILE) as tmp:
        faiss.write_index(index, str(tmp))
    _save_array(np.ascontiguousarray(table.targets, dtype=np.float32), work / TARGETS_FILE)
    write_parquet(
        pa.table({"id": table.ids, "prompt": table.prompts, "group": _groups(table)}),
        work / PROMPTS_FILE,
    )
    return recall


def _write_manifest(
    cfg: IndexBuildConfig, work: Path, table: PreparedTable, preprocess: dict, report: BuildReport
) -> None:
    """model.json of the index: its `RetrievalConfig`, and what it was built from and how."""
    retrieval = RetrievalConfig(
        clip=cfg.clip,
        **asdict(cfg.retrieval),
        out_dim=table.targets.shape[1],
        target_encoder=table.encoder,
    )
    index = {
        "source": str(table.path.resolve()),
        "source_rows": table.rows_read,
        "prompts": len(table.prompts),
        "dim": report.dim,
        "search": cfg.retrieval.search,
        "approx_recall": report.recall,
        "approx_recall_k": report.recall_k,
    }
    build = {
        "precision": report.precision,
        "device": report.device,
        "batch_size": cfg.batch_size,
        "seconds": round(report.seconds, 3),
        "texts_per_second": round(report.texts_per_second, 3),
    }
    write_model_manifest(
        work,
        kind=KIND,
        config=asdict(retrieval),
        preprocess=preprocess,
        record={"index": index, "build": build, "tuning": None},
    )


def _iter_chunks(chunks: list[Path]):
    for path in chunks:
        yield np.load(path)


def _faiss_index(cfg: IndexBuildConfig, chunks: list[Path], n: int, dim: int):
    """Inner product over unit vectors = cosine. Vectors are added a chunk at a time, so memory
    is the index itself, not a second copy of every feature."""
    import faiss

    if cfg.retrieval.search == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
    elif cfg.retrieval.search == "ivf":
        nlist = ivf_lists(n)
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(_sample_rows(chunks, n, min(n, nlist * 64), seed=0))
    else:
        index = faiss.IndexFlatIP(dim)
    for features in _iter_chunks(chunks):
        index.add(features)
    if cfg.retrieval.search == "ivf":
        index.make_direct_map()  # rows can be read back (tune, interrogation)
    return index


def ivf_lists(n: int) -> int:
    """~sqrt(N) lists, with >= 39 training points each: the k-means that trains them is the
    cost of a CPU build, so fewer lists than FAISS's upper advice (4 sqrt(N)); nprobe 32 of
    sqrt(N) lists keeps recall high (docs/clip-index.md)."""
    return int(max(1, min(np.sqrt(n), n // 39)))


def _sample_rows(chunks: list[Path], n: int, count: int, seed: int) -> np.ndarray:
    rows = np.sort(np.random.default_rng(seed).choice(n, size=count, replace=False))
    return read_rows(chunks, rows)


def read_rows(chunks: list[Path], rows: np.ndarray) -> np.ndarray:
    """Rows (sorted) of the concatenated chunk files, reading one chunk at a time."""
    out, start = [], 0
    for path in chunks:
        features = np.load(path, mmap_mode="r")
        inside = rows[(rows >= start) & (rows < start + len(features))] - start
        if len(inside):
            out.append(np.asarray(features[inside]))
        start += len(features)
    return np.concatenate(out).astype(np.float32)


def exact_top_k(queries: np.ndarray, chunks, k: int) -> np.ndarray:
    """Ids of the k highest inner products, by brute force over chunks (a flat index's answer
    without holding every vector at once)."""
    return top_k(queries, chunks, k)[1]


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean share of each query's exact k neighbors the approximate search also returned."""
    k = exact_ids.shape[1]
    hits = [
        len(set(a.tolist()) & set(e.tolist())) for a, e in zip(approx_ids, exact_ids, strict=True)
    ]
    return float(np.mean(hits) / k)


def _approx_recall(cfg: IndexBuildConfig, index, chunks: list[Path]) -> tuple[float, int]:
    """recall@k of the approximate index against exact search, with sampled prompts' own text
    features as queries, each query's own row left out (it would be found trivially)."""
    n = int(index.ntotal)
    k = min(cfg.retrieval.k, n - 1)
    if k < 1:
        return 1.0, 0
    rows = np.sort(np.random.default_rng(1).choice(n, size=min(RECALL_QUERIES, n), replace=False))
    queries = read_rows(chunks, rows)
    exact = _drop_self(exact_top_k(queries, _iter_chunks(chunks), k + 1), rows, k)
    configure_search(index, cfg.retrieval.nprobe, cfg.retrieval.ef_search)
    approx = _drop_self(index.search(queries, k + 1)[1], rows, k)
    return recall_at_k(approx, exact), k


def _drop_self(ids: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    return np.stack([[i for i in row if i != own][:k] for row, own in zip(ids, rows, strict=True)])
