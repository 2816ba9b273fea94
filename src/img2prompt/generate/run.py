"""`img2prompt generate`: prompts table -> Stable Diffusion images in shards + `images.parquet`.

A run is defined by its parameters (written to `OUT/generate.json`); running the same command
again resumes it, and another command into the same folder is refused. Each process (rank) makes
the shards that are its own and not finished yet; when all shards are there, the index
`OUT/images.parquet` is assembled from their parts, one row per image, ready for `data prepare`
(or training) as it is: `image` is relative to OUT.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from img2prompt import __version__
from img2prompt.data.table import PreparedTable
from img2prompt.device import resolve_device
from img2prompt.errors import InputError
from img2prompt.generate.options import GenerateConfig
from img2prompt.generate.prompts import prompts_fingerprint, read_prompts
from img2prompt.generate.sd import (
    count_tokens,
    load_pipeline,
    locate_model,
    render,
    resolve_dtype,
)
from img2prompt.generate.shards import (
    SHARDS,
    ImageJob,
    ShardPlan,
    assemble_index,
    finish_shard,
    is_done,
    open_partial,
    save_image,
    shard_name,
)
from img2prompt.io import read_json, write_json, write_parquet
from img2prompt.progress import progress_bar
from img2prompt.ranks import Ranks, join_ranks, leave_ranks

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline
    from PIL import Image

RUN_FILE = "generate.json"
INDEX_FILE = "images.parquet"
# Parameters that do not change an image's bytes, so a resumed run may change them.
NOT_IDENTITY = ("out", "prompts", "preset", "limit", "device")


@dataclass
class GenerateReport:
    prompts: int
    images: int
    shards: int
    shards_done_before: int
    """Shards finished (by any process) before this run started."""
    rank: int = 0
    world_size: int = 1
    shards_written: int = 0
    """By this process."""
    images_generated: int = 0
    """By this process (images reused from an interrupted shard are not counted)."""
    seconds: float = 0.0
    device: str | None = None
    precision: str | None = None
    index: Path | None = None
    """`images.parquet`, when this process wrote it."""
    truncated_prompts: int | None = None
    """Prompts longer than the text encoder's window (from the index, once complete)."""
    max_prompt_tokens: int | None = None
    token_window: int = 77


def generate(cfg: GenerateConfig, progress: bool = True) -> GenerateReport:
    started = time.perf_counter()
    prompts = read_prompts(cfg.prompts, cfg.limit)
    model = locate_model(cfg.model)  # a wrong --model fails before anything is written
    plan = ShardPlan(len(prompts), cfg.images_per_prompt, cfg.shard_size)
    ranks = join_ranks()
    try:
        _claim(cfg, prompts, model, plan, ranks)
        done_before = sum(is_done(cfg.out, s) for s in range(plan.shards))
        report = GenerateReport(
            prompts=len(prompts),
            images=plan.images,
            shards=plan.shards,
            shards_done_before=done_before,
            rank=ranks.rank,
            world_size=ranks.world_size,
        )
        mine = plan.shards_of_rank(ranks.rank, ranks.world_size)
        todo = [shard for shard in mine if not is_done(cfg.out, shard)]
        if todo:
            _make_shards(
                cfg, prompts, model, plan, todo, ranks=ranks, report=report, progress=progress
            )
        ranks.barrier()
        if ranks.is_main or not ranks.group:  # without a group, the last to finish writes it
            index = assemble_index(cfg.out, plan)
            if index is not None:
                write_parquet(index, cfg.out / INDEX_FILE)
                report.index = cfg.out / INDEX_FILE
                _count_truncation(index, report)
    finally:
        leave_ranks(ranks)
    report.seconds = time.perf_counter() - started
    return report


def _make_shards(
    cfg: GenerateConfig,
    prompts: PreparedTable,
    model: str,
    plan: ShardPlan,
    todo: list[int],
    *,
    ranks: Ranks,
    report: GenerateReport,
    progress: bool,
) -> None:
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.precision, device)
    pipe = load_pipeline(model, cfg.scheduler, device, dtype, cfg.safety_checker)
    report.device, report.precision = str(device), str(dtype).removeprefix("torch.")
    report.token_window = pipe.tokenizer.model_max_length
    provenance = {
        "rank": str(ranks.rank),
        "world_size": str(ranks.world_size),
        "host": platform.node(),
        "device": report.device,
    }
    total = sum(stop - start for start, stop in map(plan.bounds, todo))
    label = "generate" if ranks.world_size == 1 else f"generate (rank {ranks.rank})"
    with progress_bar(label, total, enabled=progress and ranks.is_main) as bar:
        for shard in todo:
            jobs = plan.jobs(shard, prompts.ids, cfg.seed)
            folder = open_partial(cfg.out, shard)
            report.images_generated += _render_shard(cfg, prompts, pipe, jobs, folder, bar)
            part = _index_part(
                cfg, prompts, pipe, model=model, shard=shard, jobs=jobs, precision=report.precision
            )
            finish_shard(cfg.out, shard, part, provenance)
            report.shards_written += 1


def _render_shard(
    cfg: GenerateConfig,
    prompts: PreparedTable,
    pipe: StableDiffusionPipeline,
    jobs: list[ImageJob],
    folder: Path,
    bar,
) -> int:
    """Render and save a shard's images that are not on disk yet; returns how many it rendered."""
    rendered = 0
    # Batches are fixed slices of the shard: a batch's pixels differ from single images' in the
    # last float bits, so a resumed shard must batch exactly the same.
    for start in range(0, len(jobs), cfg.batch_size):
        batch = jobs[start : start + cfg.batch_size]
        paths = [folder / job.file_name for job in batch]
        if not all(path.is_file() for path in paths):  # else kept from a killed run
            images = render(
                pipe,
                [prompts.prompts[job.prompt_row] for job in batch],
                [job.seed for job in batch],
                steps=cfg.steps,
                guidance=cfg.guidance,
                size=cfg.size,
                negative_prompt=cfg.negative_prompt,
            )
            for image, path in zip(images, paths, strict=True):
                save_image(_resized(image, cfg.save_size), path)
            rendered += len(batch)
        bar.advance(len(batch))
    return rendered


def _resized(image: Image.Image, save_size: int) -> Image.Image:
    from PIL import Image

    if image.size == (save_size, save_size):
        return image
    return image.resize((save_size, save_size), Image.Resampling.LANCZOS)


def _index_part(
    cfg: GenerateConfig,
    prompts: PreparedTable,
    pipe: StableDiffusionPipeline,
    *,
    model: str,
    shard: int,
    jobs: list[ImageJob],
    precision: str,
) -> pa.Table:
    """One row per image. Generation settings use DiffusionDB's column names (`step`, `cfg`,
    `sampler`, `width`, `height`), which `data prepare` carries into its table."""
    rows = [job.prompt_row for job in jobs]
    texts = [prompts.prompts[row] for row in rows]
    tokens = count_tokens(pipe, texts)
    window = pipe.tokenizer.model_max_length
    sampler = cfg.scheduler
    if sampler == "default":
        sampler = f"default ({type(pipe.scheduler).__name__})"
    n = len(jobs)
    columns = {
        "id": pa.array(
            [f"{prompts.ids[j.prompt_row]}_{j.image_number}" for j in jobs], pa.string()
        ),
        "prompt_id": pa.array([prompts.ids[row] for row in rows], pa.string()),
        "prompt": pa.array(texts, pa.string()),
        "image_number": pa.array([j.image_number for j in jobs], pa.int32()),
        "seed": pa.array([j.seed for j in jobs], pa.int64()),
        "image": pa.array([f"{SHARDS}/{shard_name(shard)}/{j.file_name}" for j in jobs]),
        "model": pa.array([model] * n, pa.string()),
        "sampler": pa.array([sampler] * n, pa.string()),
        "step": pa.array([cfg.steps] * n, pa.int32()),
        "cfg": pa.array([cfg.guidance] * n, pa.float32()),
        "width": pa.array([cfg.size] * n, pa.int32()),
        "height": pa.array([cfg.size] * n, pa.int32()),
        "save_size": pa.array([cfg.save_size] * n, pa.int32()),
        "negative_prompt": pa.array([cfg.negative_prompt] * n, pa.string()),
        "precision": pa.array([precision] * n, pa.string()),
        "prompt_tokens": pa.array(tokens, pa.int32()),
        "truncated": pa.array([t > window for t in tokens], pa.bool_()),
    }
    carried = prompts.columns.take(pa.array(rows, pa.int64()))
    for name in carried.column_names:
        columns[name] = carried[name].combine_chunks()
    return pa.table(columns)


def _count_truncation(index: pa.Table, report: GenerateReport) -> None:
    truncated = index.filter(index["truncated"])
    report.truncated_prompts = len(set(truncated["prompt_id"].to_pylist()))
    report.max_prompt_tokens = max(index["prompt_tokens"].to_pylist(), default=0)


def run_parameters(cfg: GenerateConfig, prompts: PreparedTable, model: str) -> dict:
    """What makes the images what they are; a resumed run must match it exactly."""
    parameters = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_IDENTITY}
    parameters["model"] = model
    parameters["prompts"] = {"rows": len(prompts), "sha256": prompts_fingerprint(prompts)}
    return parameters


def _claim(
    cfg: GenerateConfig, prompts: PreparedTable, model: str, plan: ShardPlan, ranks: Ranks
) -> None:
    """Start OUT/generate.json, or check that it describes this very run."""
    out = cfg.out
    if out.exists() and not out.is_dir():
        raise InputError(out, "--out must be a folder, and this is a file")
    if ranks.world_size == 1:  # no other writer: temporary files here are from a killed run
        for leftover in out.glob(".*.tmp"):
            leftover.unlink()
    parameters = run_parameters(cfg, prompts, model)
    run_file = out / RUN_FILE
    if run_file.is_file():
        recorded = read_json(run_file).get("parameters", {})
        changed = [
            f"{name}: {recorded.get(name)!r} -> {value!r}"
            for name, value in parameters.items()
            if recorded.get(name) != value
        ]
        if not changed:
            return
        # The parameters bind once an image exists; a run that failed before (a model that
        # would not load, say) may be started again with other options.
        if any((out / SHARDS).glob("*")):
            raise InputError(
                run_file,
                "this folder holds a generate run with other parameters ("
                + "; ".join(changed)
                + "); use another --out, or the same options to resume that run",
            )
    elif out.is_dir() and any(not p.name.startswith(".") for p in out.iterdir()):
        raise InputError(out, f"--out is not empty and has no {RUN_FILE}; give a new folder")
    import diffusers
    import torch
    import transformers

    write_json(
        {
            "img2prompt_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "parameters": parameters,
            "prompts_file": str(cfg.prompts),
            "preset": cfg.preset,
            "plan": {"images": plan.images, "shards": plan.shards, "world_size": ranks.world_size},
            "versions": {
                "torch": torch.__version__,
                "diffusers": diffusers.__version__,
                "transformers": transformers.__version__,
                "pyarrow": pa.__version__,
            },
        },
        run_file,
    )
