"""The training-free CLIP index: build rate, query latency and memory, exact vs approximate.

    python benchmarks/bench_index.py [--n 1000000] [--dim 768] [--hnsw-n 100000] [--texts 2000]

Sections (one process; each figure is printed beside a baseline measured in the same run):

  a. build rate: `index build` of `--texts` synthetic prompts with a tiny random CLIP dual
     encoder (the tests' one), against the bare text-tower calls on the same texts (what the
     chunking, resume files, FAISS and the folder cost on top);
  b. search at `--n` rows of `--dim`-d unit vectors (768 = ViT-L/14's projection), clustered
     like text embeddings (a centre per 250 rows, centres in overlapping families of 16,
     members at cosine ~0.4 to their centre; queries from the same centres at ~0.45). Per-query
     latency p50/p95 of `PromptIndex.predict` (search + softmax blend of k=32 float32 MiniLM
     targets), one image a call and in batches of 16; the baseline is FAISS's
     own IndexFlatIP.search (+ the same blend) over the same rows. Exact (numpy BLAS over the
     IndexFlatIP's rows) and IVF at `--n`, HNSW at `--hnsw-n` rows of their own (its build is
     the slow part on 2 cores); recall@32 of each approximate index against exact search;
     each index's size.

Synthetic vectors measure the machinery, not CLIP's quality (no CLIP weights here).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from common import load_average

MEMBERS = 250
"""Rows per cluster centre: a query's 32 nearest rows are then its cluster's, not noise."""
K = 32
TEMPERATURE = 0.05
CHUNK = 100_000


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _noisy(centres: np.ndarray, labels: np.ndarray, cosine: float, rng) -> np.ndarray:
    dim = centres.shape[1]
    scale = np.sqrt((1 / cosine**2 - 1) / dim)
    noise = rng.standard_normal((len(labels), dim), dtype=np.float32) * np.float32(scale)
    return _unit(centres[labels] + noise).astype(np.float32)


def _centres(n: int, dim: int, seed: int) -> np.ndarray:
    """A centre per `MEMBERS` rows, in families of 16 (cosine ~0.8 to a family's own centre), so
    neighboring clusters overlap as topics of prompts do."""
    rng = np.random.default_rng(seed)
    count = max(1, n // MEMBERS)
    families = _unit(rng.standard_normal((max(1, count // 16), dim), np.float32))
    return _noisy(families, rng.integers(0, len(families), count), 0.8, rng)


def synthetic_chunks(n: int, dim: int, seed: int = 0):
    """The n rows a chunk at a time (the same rows on every call)."""
    centres = _centres(n, dim, seed)
    for start in range(0, n, CHUNK):
        rng = np.random.default_rng((seed, start))
        labels = rng.integers(0, len(centres), min(CHUNK, n - start))
        yield _noisy(centres, labels, 0.4, rng)


def synthetic_queries(count: int, n: int, dim: int, seed: int = 0) -> np.ndarray:
    centres = _centres(n, dim, seed)
    rng = np.random.default_rng((seed, 1 << 40))
    return _noisy(centres, rng.integers(0, len(centres), count), 0.45, rng)


def percentiles(seconds: list[float]) -> tuple[float, float]:
    ms = np.array(seconds) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def latency(predict, queries: np.ndarray, batch: int) -> tuple[float, float]:
    """p50/p95 milliseconds per image, calling `predict` on `batch` queries at a time."""
    predict(queries[:batch])  # warm up
    times = []
    for start in range(0, len(queries) - batch + 1, batch):
        t = time.perf_counter()
        predict(queries[start : start + batch])
        times.append((time.perf_counter() - t) / batch)
    return percentiles(times)


def bench_build(texts_n: int) -> None:
    import pyarrow as pa
    import torch

    from img2prompt.index.build import build_index
    from img2prompt.index.clip import TextEncoder, load_clip, load_tokenizer
    from img2prompt.index.options import IndexBuildConfig
    from img2prompt.io import vector_column, write_parquet
    from tiny_checkpoints import save_tiny_clip_dual

    torch.set_num_threads(2)
    words = Path(__file__).resolve().parents[1] / "src/img2prompt/assets/prior_prompts.txt"
    vocabulary = sorted(set(words.read_text().split()))
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(vocabulary, rng.integers(6, 30))) for _ in range(texts_n)]
    texts = list(dict.fromkeys(texts))
    targets = _unit(rng.standard_normal((len(texts), 384)).astype(np.float32))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip_dir = save_tiny_clip_dual(tmp / "clip", context=77)
        write_parquet(
            pa.table(
                {
                    "id": [str(i) for i in range(len(texts))],
                    "prompt": texts,
                    "target": vector_column(targets),
                }
            ),
            tmp / "data" / "prompts.parquet",
        )
        encoder = TextEncoder(load_clip(clip_dir), load_tokenizer(clip_dir), "cpu", torch.float32)
        encoder.encode(texts[:256], 256)  # warm torch up: the build below runs warm too
        t = time.perf_counter()
        encoder.encode(texts, 256)
        bare = len(texts) / (time.perf_counter() - t)
        cfg = IndexBuildConfig(
            tmp / "data", str(clip_dir), tmp / "idx", batch_size=256, chunk_size=512
        )
        t = time.perf_counter()
        report = build_index(cfg, progress=False)
        whole = len(texts) / (time.perf_counter() - t)
        shutil.rmtree(tmp / "idx")
    print(f"a. build, tiny CLIP, {len(texts):,} prompts (batch 256, chunks of 512):")
    print(f"   bare text-tower calls (baseline): {bare:,.0f} texts/s")
    print(
        f"   index build, embedding phase:     {report.texts_per_second:,.0f} texts/s "
        f"({report.texts_per_second / bare:.2f}x the bare calls)"
    )
    print(
        f"   index build, whole command:       {whole:,.0f} texts/s ({whole / bare:.2f}x; "
        "includes loading and copying CLIP, FAISS and the folder)"
    )


def bench_search(n: int, dim: int, hnsw_n: int, queries_n: int) -> None:
    import faiss

    from img2prompt.index.build import ivf_lists, recall_at_k
    from img2prompt.index.store import PromptIndex

    print(
        f"\nb. search over {n:,} x {dim}-d unit vectors, k={K}, {queries_n} queries "
        f"(faiss threads {faiss.omp_get_max_threads()}):"
    )
    rng = np.random.default_rng(1)
    targets = np.empty((n, 384), np.float32)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        targets[start:stop] = _unit(rng.standard_normal((stop - start, 384), dtype=np.float32))

    def size_mb(index) -> float:
        """What the index holds (its serialised size; RSS differences here mix in freed
        temporaries)."""
        return faiss.serialize_index(index).nbytes / 2**20

    def measure(name, index, queries, truth, build_s, mb, baseline, exact_p50=None):
        p50, p95 = latency(lambda q: index.predict(q, K, TEMPERATURE), queries, 1)
        b50, _ = latency(lambda q: index.predict(q, K, TEMPERATURE), queries, 16)
        recall = recall_at_k(index.search(queries, K)[1], truth)
        versus = f", {exact_p50 / p50:.1f}x exact's" if exact_p50 else ""
        print(
            f"   {name:<24} build {build_s:6.1f} s, {mb:6.0f} MiB; 1 image p50 {p50:7.2f} ms "
            f"p95 {p95:7.2f} ms ({baseline / p50:.1f}x the baseline's p50{versus}); batch 16 "
            f"{b50:6.2f} ms/image; recall@{K} {recall:.4f}",
            flush=True,
        )
        return p50

    def flat(rows_n: int):
        t = time.perf_counter()
        index = faiss.IndexFlatIP(dim)
        for chunk in synthetic_chunks(rows_n, dim):
            index.add(chunk[: rows_n - index.ntotal])
        return index, time.perf_counter() - t, size_mb(index)

    def faiss_baseline(index, queries, rows_n):
        def predict(q):
            scores, ids = index.search(q, K)
            return PromptIndex(index, targets[:rows_n]).blend(scores, ids, TEMPERATURE)

        p50, p95 = latency(predict, queries, 1)
        b50, _ = latency(predict, queries, 16)
        print(
            f"   {'FAISS flat search (base)':<24} 1 image p50 {p50:7.2f} ms p95 {p95:7.2f} ms; "
            f"batch 16 {b50:6.2f} ms/image",
            flush=True,
        )
        return p50

    queries = synthetic_queries(queries_n, n, dim)
    flat_index, flat_s, flat_mb = flat(n)
    exact = PromptIndex(flat_index, targets)
    truth = exact.search(queries, K)[1]
    baseline = faiss_baseline(flat_index, queries, n)
    exact_p50 = measure("exact", exact, queries, truth, flat_s, flat_mb, baseline)
    del exact, flat_index

    nlist = ivf_lists(n)
    t = time.perf_counter()
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    per_chunk = -(-nlist * 64 // -(-n // CHUNK))
    ivf.train(np.concatenate([c[:per_chunk] for c in synthetic_chunks(n, dim)]))
    for chunk in synthetic_chunks(n, dim):
        ivf.add(chunk)
    ivf.make_direct_map()
    ivf_s = time.perf_counter() - t
    ivf_mb = size_mb(ivf)
    for nprobe in (8, 32):
        index = PromptIndex(ivf, targets, nprobe=nprobe)
        name = f"IVF{nlist}, nprobe {nprobe}"
        measure(name, index, queries, truth, ivf_s, ivf_mb, baseline, exact_p50)
    del ivf, index

    if hnsw_n:
        print(f"   HNSW on {hnsw_n:,} rows of their own (exact search there as its baseline):")
        queries = synthetic_queries(queries_n, hnsw_n, dim)
        small, _, _ = flat(hnsw_n)
        small_exact = PromptIndex(small, targets[:hnsw_n])
        truth = small_exact.search(queries, K)[1]
        small_p50, _ = latency(lambda q: small_exact.predict(q, K, TEMPERATURE), queries, 1)
        print(f"   {'exact @' + format(hnsw_n, ','):<24} 1 image p50 {small_p50:7.2f} ms")
        t = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = 80
        for chunk in synthetic_chunks(hnsw_n, dim):
            hnsw.add(chunk)
        hnsw_s = time.perf_counter() - t
        hnsw_mb = size_mb(hnsw)
        index = PromptIndex(hnsw, targets[:hnsw_n], ef_search=128)
        measure("HNSW32, efSearch 128", index, queries, truth, hnsw_s, hnsw_mb, small_p50)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000, help="0 skips the search section")
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--hnsw-n", type=int, default=100_000, help="0 skips HNSW")
    p.add_argument("--queries", type=int, default=96)
    p.add_argument("--texts", type=int, default=2000)
    args = p.parse_args(argv)
    started = time.perf_counter()
    print(f"bench_index (load average {load_average()})", flush=True)
    if args.texts:
        bench_build(args.texts)
    if args.n:
        bench_search(args.n, args.dim, min(args.hnsw_n, args.n), args.queries)
    print(f"bench_index done in {time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
