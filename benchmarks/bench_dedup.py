"""Near-duplicate filter: exact and approximate modes against the seed solution's method.

    python benchmarks/bench_dedup.py [--n 100000] [--approx-n 1000000] [--skip-approx] ...

Sections (each measured method runs in its own spawned process, so its peak RSS is its own):

  a. exact mode (`exact_near_duplicates`) on n synthetic vectors with big near-duplicate clusters;
  b. the seed solution's method on the same vectors as the baseline: a flat inner-product index
     over all rows, `search(block, k=5000)` per block of 5000 queries, pairs with sim >= threshold,
     keep-first over the pairs found. Printed: time and memory ratios, pairs it misses because of
     the k limit, and rows where its keep mask differs from the exact one;
  c. approximate mode (`approx_near_duplicates`, IVF) on approx-n vectors: goals <= 10 min,
     <= 6 GiB peak RSS, pair recall >= 0.99 (a higher nprobe is tried if 16 misses recall);
  d. exact mode on 200k vectors: goal <= 3 min.

Peak RSS is the whole child process during the call (Python, numpy, faiss, and the input array
it loaded); "extra" is what the call added on top of that. Wall time is the figure the goals
use; the CPU time (all threads) and the load average at the start show whether other work on the
machine slowed a measurement down.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    Measured,
    fmt_mb,
    fmt_s,
    run_isolated,
    save_array,
    synthetic_embeddings,
    verdict,
)

APPROX_GOAL_S = 600.0
APPROX_GOAL_MIB = 6 * 1024.0
APPROX_GOAL_RECALL = 0.99
EXACT_200K_N = 200_000
EXACT_200K_GOAL_S = 180.0


# ---------------------------------------------------------------- methods (run in child processes)


def run_exact(emb: np.ndarray, threshold: float, block_size: int = 4096) -> dict:
    from img2prompt.data.dedup import exact_near_duplicates

    result = exact_near_duplicates(emb, threshold, block_size=block_size, progress=False)
    return {"keep": result.keep, "kept": int(result.keep.sum())}


def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    """np.unique by sorting: numpy 2.4's hash-based np.unique takes ~10x longer on 10M+ keys."""
    keys = np.sort(keys)
    return keys[np.r_[True, keys[1:] != keys[:-1]]] if len(keys) else keys


def run_seed_method(
    emb: np.ndarray, threshold: float, k: int, query_block: int, pairs_path: str
) -> dict:
    """The seed solution's filter: top-k flat search per query block, then keep-first.

    Found pairs are saved (sorted unique keys a * n + b, a < b) to `pairs_path` for the parent to
    compare with the true pairs; only a summary comes back.
    """
    import faiss

    n, dim = emb.shape
    index = faiss.IndexFlatIP(dim)
    index.add(emb)
    k = min(k, n)
    keys = []
    saturated = 0  # queries whose k-th neighbor is still >= threshold: the k limit cut them off
    for start in range(0, n, query_block):
        block = emb[start : start + query_block]
        sims, ids = index.search(block, k)
        saturated += int((sims[:, -1] >= threshold).sum())
        rows = np.arange(start, start + len(block), dtype=np.int64)[:, None]
        hit = (sims >= threshold) & (ids != rows) & (ids >= 0)
        a = np.broadcast_to(rows, ids.shape)[hit]
        b = ids[hit]
        keys.append(_sorted_unique(np.minimum(a, b) * n + np.maximum(a, b)))
        del sims, ids, hit
    found = _sorted_unique(np.concatenate(keys)) if keys else np.zeros(0, dtype=np.int64)
    del keys
    np.save(pairs_path, found)

    # Keep-first over the found pairs: walk rows in order; a row is dropped if any earlier *kept*
    # row is among its found pairs.
    earlier, later = found // n, found % n
    order = np.argsort(later * n + earlier, kind="stable")
    earlier, later = earlier[order], later[order]
    del order
    dropped = np.zeros(n, dtype=bool)
    if len(later):
        starts = np.flatnonzero(np.r_[True, later[1:] != later[:-1]])
        ends = np.r_[starts[1:], len(later)]
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            dropped[later[s]] = not dropped[earlier[s:e]].all()
    keep = ~dropped
    return {"keep": keep, "kept": int(keep.sum()), "pairs": len(found), "saturated": saturated}


def brute_force_pair_keys(emb: np.ndarray, threshold: float, block_size: int = 1024) -> np.ndarray:
    """Sorted keys a * n + b of every pair a < b with cosine >= threshold - TOLERANCE (the
    library's rule), from a float64 Gram matrix in numpy: no FAISS, for small n only."""
    from img2prompt.data.dedup import TOLERANCE

    n = len(emb)
    emb64 = emb.astype(np.float64)
    parts = [np.zeros(0, dtype=np.int64)]
    for start in range(0, n, block_size):
        gram = emb64[start : start + block_size] @ emb64.T
        rows, cols = np.nonzero(gram >= threshold - TOLERANCE)
        rows += start
        below = cols < rows
        parts.append(cols[below].astype(np.int64) * n + rows[below])
    return np.sort(np.concatenate(parts))


def compare_with_truth(
    emb: np.ndarray,
    threshold: float,
    found_path: str,
    exact_keep: np.ndarray,
    seed_keep: np.ndarray,
) -> dict:
    """True pairs, pairs the seed method missed, and pairs each keep mask left with both ends."""
    from img2prompt.data.dedup import similar_pairs

    n = len(emb)
    a, b = similar_pairs(emb, threshold, mode="exact")
    truth = np.sort(a * n + b)
    del a, b
    found = np.load(found_path)
    pos = np.searchsorted(found, truth)
    hit = (pos < len(found)) & (found[np.minimum(pos, len(found) - 1)] == truth)
    missed = int((~hit).sum()) if len(found) else len(truth)
    a, b = truth // n, truth % n
    return {
        "true_pairs": len(truth),
        "found_pairs": len(found),
        "missed": missed,
        "found_not_true": len(found) - (len(truth) - missed),
        "exact_kept_pairs": int((exact_keep[a] & exact_keep[b]).sum()),
        "seed_kept_pairs": int((seed_keep[a] & seed_keep[b]).sum()),
    }


def check_truth_against_library(emb: np.ndarray, threshold: float) -> dict:
    """On small data: `similar_pairs(mode="exact")` must equal the float64 brute force."""
    from img2prompt.data.dedup import similar_pairs

    n = len(emb)
    a, b = similar_pairs(emb, threshold, mode="exact")
    keys = np.sort(a * n + b)
    return {"equal": bool(np.array_equal(keys, brute_force_pair_keys(emb, threshold)))}


def run_approx(
    emb: np.ndarray, threshold: float, nprobe: int, recall_sample: int, sources_path: str
) -> dict:
    from img2prompt.data.dedup import TOLERANCE, approx_near_duplicates
    from img2prompt.metrics import cosines

    result = approx_near_duplicates(
        emb, threshold, nprobe=nprobe, recall_sample=recall_sample, progress=False
    )
    # Exact semantics leave no two kept rows with cos >= threshold; count planted pairs that the
    # approximate result leaves with both ends kept (each is a near-duplicate it failed to drop).
    source = np.load(sources_path)
    rows = np.flatnonzero(source >= 0)
    src = source[rows]
    cos = cosines(emb[rows].astype(np.float64), emb[src].astype(np.float64))
    similar = cos >= threshold - TOLERANCE
    both_kept = result.keep[rows] & result.keep[src] & similar
    return {
        "kept": int(result.keep.sum()),
        "recall": result.pair_recall,
        "planted_similar": int(similar.sum()),
        "planted_both_kept": int(both_kept.sum()),
    }


# ---------------------------------------------------------------------------------- sections


def _line(label: str, m: Measured, extra: str = "") -> None:
    print(
        f"  {label:<26} {fmt_s(m.seconds):>10} (cpu {m.cpu_seconds:,.0f} s, load {m.load_before})"
        f"  peak {fmt_mb(m.peak_rss_mb):>10}  extra {fmt_mb(m.extra_mb):>10}  {extra}",
        flush=True,
    )


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.2%}" if whole else "n/a"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a"


def section_exact_vs_seed(args: argparse.Namespace, tmp: Path) -> None:
    n = args.n
    clusters, size = args.clusters, args.cluster_size
    while clusters > 1 and clusters * size > n // 2:
        clusters -= 1
    if clusters * size > n:
        clusters = 0
    print(
        f"\n[a+b] exact mode vs the seed method (flat index, search k={args.seed_k}, query blocks"
        f" of {args.seed_block})",
        flush=True,
    )
    print(
        f"  data: {n:,} random unit vectors (384-d, float32, shuffled): {clusters} clusters of"
        f" {size:,} mutually similar rows (cos to centre 0.965-0.995, pairwise ~0.93+), and 10% of"
        f" the other rows planted copies of earlier rows (cos to source ~0.91-0.99);"
        f" threshold {args.threshold}",
        flush=True,
    )
    if clusters and size <= args.seed_k:
        print(f"  note: clusters of {size} do not exceed k={args.seed_k}; the k limit cannot bite")
    start = time.perf_counter()
    emb = synthetic_embeddings(n, dup_fraction=0.1, seed=1, clusters=clusters, cluster_size=size)
    path = save_array(emb, tmp, "clustered")
    print(f"  (generated in {time.perf_counter() - start:.1f} s)", flush=True)

    check = synthetic_embeddings(5000, seed=2, clusters=1, cluster_size=400)
    check_path = save_array(check, tmp, "check")
    same = run_isolated(check_truth_against_library, check_path, threshold=args.threshold)
    print(
        "  true pairs: similar_pairs(mode='exact'); on a 5k check set (one cluster of 400) it"
        f" equals a float64 brute force: {same.result['equal']}",
        flush=True,
    )
    del emb, check

    exact = run_isolated(run_exact, path, threshold=args.threshold)
    _line("exact_near_duplicates", exact, f"kept {exact.result['kept']:,}")
    pairs_path = str(tmp / "seed_pairs.npy")
    seed = run_isolated(
        run_seed_method,
        path,
        threshold=args.threshold,
        k=args.seed_k,
        query_block=args.seed_block,
        pairs_path=pairs_path,
    )
    _line(
        f"seed method (k={args.seed_k})",
        seed,
        f"kept {seed.result['kept']:,}; {seed.result['saturated']:,} queries hit the k limit",
    )
    cmp = run_isolated(
        compare_with_truth,
        path,
        threshold=args.threshold,
        found_path=pairs_path,
        exact_keep=exact.result["keep"],
        seed_keep=seed.result["keep"],
    ).result
    differ = int((exact.result["keep"] != seed.result["keep"]).sum())
    true_pairs = cmp["true_pairs"]
    share = cmp["missed"] / true_pairs if true_pairs else 0.0
    print(
        f"  true similar pairs: {true_pairs:,}; the seed method found {cmp['found_pairs']:,},"
        f" missed {cmp['missed']:,} ({share:.1%}), found {cmp['found_not_true']:,} not in truth",
        flush=True,
    )
    print(
        f"  keep masks differ on {differ:,} of {n:,} rows; pairs with cos >= threshold left with"
        f" both rows kept: exact {cmp['exact_kept_pairs']:,}, seed {cmp['seed_kept_pairs']:,}",
        flush=True,
    )
    print(
        f"  RATIO exact / seed-method: time {_ratio(exact.seconds, seed.seconds)}"
        f" ({exact.seconds:.1f} s vs {seed.seconds:.1f} s),"
        f" CPU time {_ratio(exact.cpu_seconds, seed.cpu_seconds)},"
        f" peak RSS {_ratio(exact.peak_rss_mb, seed.peak_rss_mb)},"
        f" extra memory {_ratio(exact.extra_mb, seed.extra_mb)};"
        f" missed pairs exact 0 vs seed {cmp['missed']:,}",
        flush=True,
    )


def section_approx(args: argparse.Namespace, tmp: Path) -> None:
    n = args.approx_n
    print(f"\n[c] approximate mode (IVF) at n={n:,}", flush=True)
    print(
        f"  data: {n:,} random unit vectors (384-d, float32, shuffled), 10% planted copies of"
        f" earlier rows (cos to source ~0.91-0.99); threshold {args.threshold};"
        f" recall measured by the library on a sample of {args.recall_sample:,} rows",
        flush=True,
    )
    start = time.perf_counter()
    emb, source = synthetic_embeddings(n, dup_fraction=0.1, seed=3, return_sources=True)
    path = save_array(emb, tmp, "approx")
    sources_path = str(save_array(source, tmp, "approx_sources"))
    del emb, source
    print(f"  (generated in {time.perf_counter() - start:.1f} s)", flush=True)
    goal = (
        f"goals: <= {APPROX_GOAL_S / 60:.0f} min, <= {APPROX_GOAL_MIB / 1024:.0f} GiB peak RSS,"
        f" pair recall >= {APPROX_GOAL_RECALL}"
    )
    print(f"  {goal}", flush=True)
    for nprobe in [args.nprobe, *args.nprobe_fallback]:
        m = run_isolated(
            run_approx,
            path,
            threshold=args.threshold,
            nprobe=nprobe,
            recall_sample=args.recall_sample,
            sources_path=sources_path,
        )
        r = m.result
        recall = r["recall"]
        _line(
            f"approx, nprobe={nprobe}",
            m,
            f"kept {r['kept']:,}; pair recall {recall if recall is None else f'{recall:.4f}'}",
        )
        print(
            f"    planted similar pairs left with both rows kept: {r['planted_both_kept']:,} of"
            f" {r['planted_similar']:,} ({_share(r['planted_both_kept'], r['planted_similar'])})",
            flush=True,
        )
        ok_recall = recall is not None and recall >= APPROX_GOAL_RECALL
        print(
            f"    time {verdict(m.seconds <= APPROX_GOAL_S)} ({m.seconds / 60:.1f} min)"
            f" | memory {verdict(m.peak_rss_mb <= APPROX_GOAL_MIB)}"
            f" ({m.peak_rss_mb / 1024:.2f} GiB)"
            f" | recall {verdict(ok_recall)}",
            flush=True,
        )
        if ok_recall:
            break
        print("    recall goal missed: trying a higher nprobe", flush=True)


def section_exact_200k(args: argparse.Namespace, tmp: Path) -> None:
    n = EXACT_200K_N
    print(f"\n[d] exact mode at n={n:,} (goal <= {EXACT_200K_GOAL_S / 60:.0f} min)", flush=True)
    print(
        f"  data: {n:,} random unit vectors, 10% planted copies (cos ~0.91-0.99);"
        f" threshold {args.threshold}",
        flush=True,
    )
    path = save_array(synthetic_embeddings(n, dup_fraction=0.1, seed=4), tmp, "exact200k")
    m = run_isolated(run_exact, path, threshold=args.threshold)
    _line("exact_near_duplicates", m, f"kept {m.result['kept']:,}")
    print(f"    time {verdict(m.seconds <= EXACT_200K_GOAL_S)} ({m.seconds:.1f} s)", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=100_000, help="rows for exact vs seed method")
    p.add_argument("--threshold", type=float, default=0.9)
    p.add_argument("--approx-n", type=int, default=1_000_000, help="rows for approximate mode")
    p.add_argument("--skip-approx", action="store_true", help="skip the approximate mode")
    p.add_argument("--skip-seed", action="store_true", help="skip exact vs seed method")
    p.add_argument(
        "--exact-200k",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="exact mode at 200k rows (goal <= 3 min)",
    )
    p.add_argument("--clusters", type=int, default=3, help="near-duplicate clusters in [a+b]")
    p.add_argument("--cluster-size", type=int, default=7000, help="rows per cluster in [a+b]")
    p.add_argument("--seed-k", type=int, default=5000, help="k of the seed method's search")
    p.add_argument("--seed-block", type=int, default=5000, help="seed method's query block")
    p.add_argument("--nprobe", type=int, default=16)
    p.add_argument(
        "--nprobe-fallback",
        type=int,
        nargs="*",
        default=[64],
        help="nprobe values tried in turn while the recall goal is missed",
    )
    p.add_argument("--recall-sample", type=int, default=2000)
    p.add_argument("--tmp-dir", default=None, help="where the input arrays are written")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import faiss

    print("== bench_dedup: near-duplicate filter ==", flush=True)
    print(
        f"  {os.cpu_count()} CPUs, faiss {faiss.__version__} ({faiss.omp_get_max_threads()}"
        f" threads), numpy {np.__version__}; every method runs in a fresh spawned process",
        flush=True,
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-dedup-", dir=args.tmp_dir) as tmp_name:
        tmp = Path(tmp_name)
        if not args.skip_seed:
            section_exact_vs_seed(args, tmp)
        if not args.skip_approx:
            section_approx(args, tmp)
        if args.exact_200k:
            section_exact_200k(args, tmp)
    print(f"\nbench_dedup done in {time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
