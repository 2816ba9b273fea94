"""Shared helpers for the benchmarks: timers, peak memory, isolated runs and synthetic vectors.

Every benchmark prints its figures next to a baseline measured in the same run, so the ratios do
not depend on the machine of the day.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from img2prompt.device import CPU_LIMIT_VARIABLES

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"
# The dev-only asset builders (tiny pipeline, odd images, default model) live in scripts/.
if str(REPO_ROOT / "scripts") not in sys.path:
    sys.path.insert(0, str(REPO_ROOT / "scripts"))


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports ru_maxrss in KiB).

    In a spawned child this includes the parent's peak (see `reset_peak_rss`).
    """
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def current_rss_mb() -> float:
    """Resident memory of this process now, in MiB (falls back to the peak off Linux)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return peak_rss_mb()


def _proc_status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset this process's peak-RSS mark (Linux: write 5 to /proc/self/clear_refs).

    Needed because a spawned child inherits its parent's high-water mark: fork copies it and exec
    folds it into ru_maxrss, so ru_maxrss in a fresh child is at least the parent's peak. Returns
    False where the reset is not possible.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def process_peak_mb() -> float:
    """Peak RSS since the last `reset_peak_rss()` (VmHWM); ru_maxrss where /proc is missing."""
    hwm = _proc_status_mb("VmHWM")
    return peak_rss_mb() if hwm is None else hwm


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def hardware_line() -> str:
    """What every figure runs on: CPU model, cores, the instruction sets that decide speed
    (/proc/cpuinfo: avx2, avx512f, avx512_bf16, amx_bf16), whether bf16 counts as native, and
    the emulation in force (`ONEDNN_MAX_CPU_ISA=AVX2` with `IMG2PROMPT_NATIVE_BF16=0` makes a
    bf16 CPU behave as an AVX2 one for fp32 and bf16; `ATEN_CPU_CAPABILITY=avx2` and
    `FBGEMM_ENABLE_INSTRUCTIONS=AVX2` limit torch's own kernels and its int8 ones, fbgemm, which
    ignore oneDNN's variable), and the int8 engine with the kernels ATen dispatches to."""
    from img2prompt.device import cpu_flags, native_bf16

    model = "unknown CPU"
    with (
        contextlib.suppress(OSError),
        open("/proc/cpuinfo", encoding="ascii", errors="replace") as f,
    ):
        model = next(
            (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model
        )
    emulated = [f"{k}={os.environ[k]}" for k in EMULATION_VARIABLES if k in os.environ]
    return (
        f"hardware: {model}, {os.cpu_count()} cores; flags {' '.join(cpu_flags()) or 'none'};"
        f" native bf16: {'yes' if native_bf16('cpu') else 'no'}; {kernels_line()}"
        + (f"; emulating: {' '.join(emulated)}" if emulated else "")
    )


EMULATION_VARIABLES = (*CPU_LIMIT_VARIABLES, "IMG2PROMPT_NATIVE_BF16")
"""What limits this CPU to a lesser one's instructions (docs/predict.md names the set used)."""


def kernels_line() -> str:
    """torch's dispatch level (AVX2, AVX512...) and the engine int8 layers run on."""
    import torch

    from img2prompt.device import int8_engine

    return f"torch kernels {torch.backends.cpu.get_cpu_capability()}, int8 engine {int8_engine()}"


def load_average() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


class Timer:
    """`with Timer() as t: ...` then `t.seconds`."""

    def __init__(self) -> None:
        self.seconds = math.nan
        self._start = 0.0

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start


@contextlib.contextmanager
def timed(label: str) -> Iterator[Timer]:
    """Time a block and print `label: 1.23 s` when it ends."""
    with Timer() as timer:
        yield timer
    print(f"  {label}: {timer.seconds:.2f} s", flush=True)


@dataclass
class Measured:
    """What one isolated call returned and cost."""

    result: Any
    seconds: float  # wall time of the call alone (not the child's start-up or data loading)
    peak_rss_mb: float  # peak RSS of the child process during the call, everything included
    base_rss_mb: float  # RSS of the child just before the call (imports + loaded input)
    cpu_seconds: float = math.nan  # user + system CPU time of the call (all threads)
    load_before: str = ""  # 1/5/15-minute load average when the call started (other work)

    @property
    def extra_mb(self) -> float:
        """Peak memory the call added on top of what the process held before it."""
        return max(0.0, self.peak_rss_mb - self.base_rss_mb)


def _child_main(fn: Callable, data_path: str | None, kwargs: dict, conn) -> None:
    try:
        args = () if data_path is None else (np.load(data_path),)
        # Without a reset the best there is: the (inherited) high-water mark so far.
        base = current_rss_mb() if reset_peak_rss() else peak_rss_mb()
        load = load_average()
        cpu = cpu_seconds()
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds = time.perf_counter() - start
        cpu = cpu_seconds() - cpu
        conn.send(("ok", result, seconds, process_peak_mb(), base, cpu, load))
    except BaseException:  # report anything, including MemoryError, to the parent
        message = traceback.format_exc()
        conn.send(("error", message, math.nan, process_peak_mb(), math.nan, math.nan, ""))
    finally:
        conn.close()


def run_isolated(fn: Callable, data_path: str | Path | None = None, **kwargs: Any) -> Measured:
    """Run `fn(np.load(data_path), **kwargs)` (or `fn(**kwargs)`) in a fresh spawned process.

    Each measured method gets its own process, so its peak RSS is its own and not the high-water
    mark of whatever ran before it (the mark a child inherits from its parent is reset first).
    `fn` must be a module-level function and its result picklable (return a small summary, not
    big arrays). Raises RuntimeError when the child fails or dies (for example killed for
    memory).
    """
    ctx = mp.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    path = None if data_path is None else str(data_path)
    process = ctx.Process(target=_child_main, args=(fn, path, kwargs, send))
    process.start()
    send.close()
    try:
        message = receive.recv()
    except EOFError:
        message = None
    process.join()
    if message is None:
        raise RuntimeError(f"{fn.__name__} died with exit code {process.exitcode} (out of memory?)")
    status, result, seconds, peak, base, cpu, load = message
    if status != "ok":
        raise RuntimeError(f"{fn.__name__} failed in its child process:\n{result}")
    return Measured(result, seconds, peak, base, cpu, load)


def noise_scale_for_cosine(cos: np.ndarray | float, dim: int) -> np.ndarray | float:
    """Per-coordinate Gaussian noise std that takes a unit vector to about this cosine.

    For a unit x and noise e ~ N(0, s^2 I_d), cos(x, x + e) ~ 1 / sqrt(1 + d s^2).
    """
    cos = np.asarray(cos, dtype=np.float64)
    return np.sqrt((1.0 / cos**2 - 1.0) / dim)


def _unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def synthetic_embeddings(
    n: int,
    dim: int = 384,
    dup_fraction: float = 0.1,
    noise: tuple[float, float] | None = None,
    seed: int = 0,
    *,
    cos_range: tuple[float, float] = (0.92, 0.99),
    clusters: int = 0,
    cluster_size: int = 0,
    cluster_cos_range: tuple[float, float] = (0.965, 0.995),
    return_sources: bool = False,
    chunk: int = 200_000,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Float32, L2-normalised random unit vectors with planted near-duplicates, rows shuffled.

    - `dup_fraction` of the rows are copies of an earlier row (original or copy) plus Gaussian
      noise. `noise` is the (min, max) per-coordinate noise std; by default it is derived from
      `cos_range`, so a copy's cosine to its source is spread over about 0.92-0.99.
    - `clusters` groups of `cluster_size` rows are noisy copies of one centre each, with cosine to
      the centre in `cluster_cos_range`; with the default (0.965, 0.995) two members have cosine
      of about 0.93 or more, so each cluster is (almost exactly) a clique of near-duplicates at 0.9.
    - Independent random unit vectors in 384-d have |cos| of ~0.05 (max over 10^12 pairs ~0.4),
      so at thresholds near 0.9 the similar pairs are exactly the planted ones.

    `return_sources=True` also returns `source` (int64, -1 for originals and cluster members):
    the row each planted copy was made from, in the shuffled order.
    """
    rng = np.random.default_rng(seed)
    n_cluster = clusters * cluster_size
    if n_cluster > n:
        raise ValueError(f"{clusters} clusters of {cluster_size} do not fit in {n} rows")
    n_dup = round(dup_fraction * (n - n_cluster))
    n_orig = n - n_cluster - n_dup
    if n_dup and n_orig < 1:
        raise ValueError("need at least one original row to copy from")
    if noise is None:
        low, high = cos_range
        noise = (float(noise_scale_for_cosine(high, dim)), float(noise_scale_for_cosine(low, dim)))

    emb = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n_orig, chunk):
        stop = min(n_orig, start + chunk)
        emb[start:stop] = _unit(rng.standard_normal((stop - start, dim), dtype=np.float32))

    source = np.full(n, -1, dtype=np.int64)
    # Copies: row n_orig + k copies a uniformly chosen earlier row (original or earlier copy).
    for start in range(0, n_dup, chunk):
        stop = min(n_dup, start + chunk)
        rows = np.arange(n_orig + start, n_orig + stop)
        src = (rng.random(len(rows)) * rows).astype(np.int64)
        # A copy of a copy made in the same chunk would read a row not written yet: fall back to
        # the original it was going to be compared with anyway.
        src = np.where(src >= n_orig + start, src % n_orig, src)
        scale = rng.uniform(noise[0], noise[1], size=(len(rows), 1)).astype(np.float32)
        step = emb[src] + scale * rng.standard_normal((len(rows), dim), dtype=np.float32)
        emb[rows] = _unit(step)
        source[rows] = src

    cluster_scale = noise_scale_for_cosine(np.asarray(cluster_cos_range[::-1]), dim)
    first = n_orig + n_dup
    for c in range(clusters):
        centre = _unit(rng.standard_normal((1, dim), dtype=np.float32))
        rows = slice(first + c * cluster_size, first + (c + 1) * cluster_size)
        scale = rng.uniform(*cluster_scale, size=(cluster_size, 1)).astype(np.float32)
        members = centre + scale * rng.standard_normal((cluster_size, dim), dtype=np.float32)
        emb[rows] = _unit(members)

    order = rng.permutation(n)
    emb = emb[order]
    if not return_sources:
        return emb
    new_row = np.empty(n, dtype=np.int64)
    new_row[order] = np.arange(n)
    old_source = source[order]
    source = np.where(old_source >= 0, new_row[np.maximum(old_source, 0)], -1)
    return emb, source


def save_array(array: np.ndarray, directory: str | Path, name: str) -> Path:
    """Write `array` as `directory/name.npy` for child processes to load; returns the path."""
    path = Path(directory) / f"{name}.npy"
    np.save(path, array)
    return path


def fmt_mb(mb: float) -> str:
    return f"{mb:,.0f} MiB"


def fmt_s(seconds: float) -> str:
    return f"{seconds:,.2f} s"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"
