"""The work plan and its files.

Images are numbered prompt-major (prompt 0 image 0, prompt 0 image 1, ..., prompt 1 image 0 ...);
shard j holds images [j * shard_size, (j + 1) * shard_size). Everything about an image — its seed,
its shard, its batch inside the shard, its file name — follows from that number and the run's
parameters, never from which process made it or when, so a resumed or multi-process run writes
the same files as one uninterrupted process.

A shard is made in `shards/.NNNNN.partial/` and renamed to `shards/NNNNN/` when its images and its
index part (`index.parquet`) are all written, so a finished-looking shard is always complete.
Inside a partial shard each image is written to a temporary name and renamed, so an image file
that exists is whole; a resumed run keeps the batches whose images all exist and redoes the rest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from img2prompt.errors import InputError
from img2prompt.io import atomic_path, swap_dir

SHARDS = "shards"
INDEX_PART = "index.parquet"


def image_seed(base_seed: int, prompt_id: str, image_number: int) -> int:
    """Seed of image `image_number` of a prompt: a hash of (base seed, prompt id, number), so it
    does not depend on batch, rank, order or `--limit`; 63 bits fit Parquet's int64."""
    key = f"{base_seed}\x1f{prompt_id}\x1f{image_number}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") >> 1


@dataclass(frozen=True)
class ImageJob:
    number: int
    """Position in the whole run (prompt-major)."""
    prompt_row: int
    image_number: int
    """k: which image of its prompt (0 .. images_per_prompt - 1)."""
    seed: int

    @property
    def file_name(self) -> str:
        return f"{self.prompt_row:08d}_{self.image_number}.png"


@dataclass(frozen=True)
class ShardPlan:
    prompts: int
    images_per_prompt: int
    shard_size: int

    @property
    def images(self) -> int:
        return self.prompts * self.images_per_prompt

    @property
    def shards(self) -> int:
        return -(-self.images // self.shard_size)

    def bounds(self, shard: int) -> tuple[int, int]:
        """Image numbers [start, stop) of a shard."""
        start = shard * self.shard_size
        return start, min(start + self.shard_size, self.images)

    def jobs(self, shard: int, prompt_ids: Sequence[str], base_seed: int) -> list[ImageJob]:
        start, stop = self.bounds(shard)
        jobs = []
        for number in range(start, stop):
            row, k = divmod(number, self.images_per_prompt)
            jobs.append(ImageJob(number, row, k, image_seed(base_seed, prompt_ids[row], k)))
        return jobs

    def shards_of_rank(self, rank: int, world_size: int) -> range:
        """Round-robin by shard number: fixed, so ranks never share a shard."""
        return range(rank, self.shards, world_size)


def shard_name(shard: int) -> str:
    return f"{shard:05d}"


def shard_dir(out: Path, shard: int) -> Path:
    return out / SHARDS / shard_name(shard)


def partial_dir(out: Path, shard: int) -> Path:
    return out / SHARDS / f".{shard_name(shard)}.partial"


def is_done(out: Path, shard: int) -> bool:
    return (shard_dir(out, shard) / INDEX_PART).is_file()


def open_partial(out: Path, shard: int) -> Path:
    """The shard's work folder, kept from an interrupted run (its whole images are reused) but
    without half-written temporary files."""
    folder = partial_dir(out, shard)
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in folder.glob("*.tmp"):
        leftover.unlink()
    return folder


def save_image(image, path: Path) -> None:
    """PNG written under a temporary name, flushed to disk, then renamed: whole or absent."""
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def finish_shard(out: Path, shard: int, index_part: pa.Table, provenance: dict[str, str]) -> Path:
    """Write the shard's index part and publish the folder in place of any unfinished one."""
    folder = partial_dir(out, shard)
    table = index_part.replace_schema_metadata(
        {f"img2prompt.{k}": v for k, v in provenance.items()}
    )
    with atomic_path(folder / INDEX_PART) as tmp:
        pq.write_table(table, tmp)
    final = shard_dir(out, shard)
    swap_dir(folder, final)  # a shard there lacks its index part (see is_done): it is redone
    return final


def assemble_index(out: Path, plan: ShardPlan) -> pa.Table | None:
    """All shards' index parts in shard order, or None while a shard is missing."""
    if not all(is_done(out, shard) for shard in range(plan.shards)):
        return None
    parts = [pq.read_table(shard_dir(out, s) / INDEX_PART) for s in range(plan.shards)]
    table = pa.concat_tables(parts, promote_options="default").replace_schema_metadata(None)
    if table.num_rows != plan.images:
        raise InputError(
            out / SHARDS,
            f"the shards hold {table.num_rows} images, the plan {plan.images}; they come from "
            "another run",
        )
    return table
