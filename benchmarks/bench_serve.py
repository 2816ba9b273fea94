"""The web app under load: latency and throughput of `POST /api/describe` on a live server.

    python benchmarks/bench_serve.py [--requests 200] [--concurrency 8] [--mode fast]

Starts `img2prompt serve` on a free loopback port (a subprocess, the real command), uploads the
competition's sample images (or scikit-image's example photographs when ../shared is absent) and
reports p50/p95 latency and requests per second. Loopback only, and bounded: a fixed number of
requests at a fixed concurrency, never an open-ended flood.

Baseline, measured in the same run against the same server: the requests one at a time
(concurrency 1), which is what the server does without concurrent clients to batch. The main run
must finish with zero errors.

`--corpus DIR` (issue 35): instead, every file under DIR uploaded once at `--concurrency` (a
decoder test corpus: truncated, fuzzed and odd files among real ones). Each answer must be 200
or a 4xx naming the problem (never a 5xx, never a dropped connection), and the server's peak
resident memory (its VmHWM) must stay under 2 GB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO_ROOT, SHARED_DIR, load_average, verdict

HOST = "127.0.0.1"  # loopback only, by design


def sample_images() -> list[tuple[str, bytes]]:
    folder = SHARED_DIR / "data" / "kaggle_sample" / "images"
    paths = sorted(folder.glob("*.png")) if folder.is_dir() else []
    if not paths:
        from img2prompt.app.demo import example_images

        paths = example_images()
    return [(p.name, p.read_bytes()) for p in paths]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(args, port: int) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "img2prompt",
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--model",
        args.model,
        "--bank",
        args.bank,
        "--mode",
        args.mode,
        "--max-batch",
        str(args.max_batch),
        "--log-level",
        "warning",
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO_ROOT / "src"), env.get("PYTHONPATH")])
    )
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_until_up(url: str, server: subprocess.Popen, timeout: float) -> dict:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited:\n{server.stderr.read().decode()[-2000:]}")
        try:
            return httpx.get(f"{url}/api/health", timeout=2).json()
        except httpx.HTTPError:
            time.sleep(0.5)
    raise RuntimeError(f"the server did not answer within {timeout:.0f} s")


async def load(url: str, images, requests: int, concurrency: int) -> dict:
    """`requests` uploads by `concurrency` clients; latencies of the successful ones."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    next_request = iter(range(requests))

    async def client_loop(client: httpx.AsyncClient) -> None:
        for i in next_request:
            name, data = images[i % len(images)]
            start = time.perf_counter()
            try:
                response = await client.post(
                    "/api/describe", files={"image": (name, data, "image/png")}
                )
                if response.status_code == 200 and len(response.json()["embedding"]) == 384:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
            except httpx.HTTPError as e:
                errors.append(f"{type(e).__name__}: {e}")

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        seconds = time.perf_counter() - start
    return {"latencies": latencies, "errors": errors, "seconds": seconds, "requests": requests}


CORPUS_PEAK_GOAL_GB = 2.0


def corpus_files(folder: Path) -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()]


async def upload_all(url: str, files, concurrency: int) -> dict[str, list[str]]:
    """Each file uploaded once; names by answer: `ok`, `refused` (4xx), `failed` (the rest)."""
    import httpx

    answers: dict[str, list[str]] = {"ok": [], "refused": [], "failed": []}
    todo = iter(files)

    async def client_loop(client: httpx.AsyncClient) -> None:
        for name, data in todo:
            try:
                response = await client.post(
                    "/api/describe", files={"image": (name, data, "application/octet-stream")}
                )
                status = response.status_code
                kind = "ok" if status == 200 else "refused" if 400 <= status < 500 else "failed"
                answers[kind].append(name if kind == "ok" else f"{name}: HTTP {status}")
            except httpx.HTTPError as e:
                answers["failed"].append(f"{name}: {type(e).__name__}: {e}")

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
    return answers


def peak_rss_gb(pid: int) -> float:
    """A live process's peak resident memory (Linux's VmHWM), in GB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e9
    raise RuntimeError("no VmHWM in /proc: Linux only")


def corpus_run(url: str, server: subprocess.Popen, folder: Path, concurrency: int) -> bool:
    files = corpus_files(folder)
    start = time.perf_counter()
    answers = asyncio.run(upload_all(url, files, concurrency))
    seconds = time.perf_counter() - start
    alive = server.poll() is None
    peak = peak_rss_gb(server.pid) if alive else float("nan")
    ok = alive and not answers["failed"] and peak <= CORPUS_PEAK_GOAL_GB
    print(
        f"  corpus {folder}: {len(files)} files in {seconds:.0f} s at concurrency {concurrency}:"
        f" {len(answers['ok'])} described, {len(answers['refused'])} refused (4xx), "
        f"{len(answers['failed'])} failed; server {'alive' if alive else 'DIED'}; PEAK server "
        f"RSS {peak:.2f} GB (goal <= {CORPUS_PEAK_GOAL_GB} GB): {verdict(ok)}",
        flush=True,
    )
    for failure in answers["failed"][:10]:
        print(f"    failed: {failure}", flush=True)
    return ok


def report(name: str, r: dict) -> float:
    lat = sorted(r["latencies"])
    rate = len(lat) / r["seconds"]
    p50 = statistics.median(lat) if lat else float("nan")
    p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else float("nan")
    slowest = lat[-1] if lat else float("nan")
    print(
        f"  {name}: {r['requests']} requests, {len(r['errors'])} errors; latency p50 "
        f"{p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max {slowest * 1000:.0f} ms; "
        f"{rate:.1f} requests/s; load average {load_average()}",
        flush=True,
    )
    for error in r["errors"][:5]:
        print(f"    error: {error}", flush=True)
    return rate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--baseline-requests", type=int, default=40, help="at concurrency 1")
    p.add_argument("--model", default="default")
    p.add_argument("--bank", default="default")
    p.add_argument("--mode", default="fast", choices=["fast", "best"])
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--startup-timeout", type=float, default=300, help="a first run builds the bank")
    p.add_argument("--corpus", type=Path, help="upload every file under this folder once instead")
    args = p.parse_args(argv)
    if not (1 <= args.concurrency <= 64 and 1 <= args.requests <= 10_000):
        p.error("keep it bounded: --concurrency 1..64, --requests 1..10000")

    print("== bench_serve: POST /api/describe on a live server (loopback) ==", flush=True)
    images = sample_images()
    port = free_port()
    url = f"http://{HOST}:{port}"
    started = time.perf_counter()
    server = start_server(args, port)
    try:
        health = wait_until_up(url, server, args.startup_timeout)
        print(
            f"  server up in {time.perf_counter() - started:.1f} s: model {health['model']}, "
            f"bank {health['bank']} ({health['bank_entries']:,} entries), {health['mode']} "
            f"decoding, batches of up to {args.max_batch}; {len(images)} distinct images; "
            f"{os.cpu_count()} CPUs",
            flush=True,
        )
        if args.corpus:
            return 0 if corpus_run(url, server, args.corpus, args.concurrency) else 1
        asyncio.run(load(url, images, 8, 4))  # warm-up: first calls pick precision, fill caches
        baseline = asyncio.run(load(url, images, args.baseline_requests, 1))
        base_rate = report("baseline, concurrency 1", baseline)
        main_run = asyncio.run(load(url, images, args.requests, args.concurrency))
        rate = report(f"concurrency {args.concurrency}", main_run)
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    ok = not main_run["errors"] and not baseline["errors"]
    print(
        f"  RATIO concurrency {args.concurrency} / concurrency 1: "
        f"{rate / base_rate if base_rate else float('nan'):.2f}x "
        f"requests/s; zero errors: {verdict(ok)}",
        flush=True,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
