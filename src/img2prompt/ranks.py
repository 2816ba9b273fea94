"""Several processes, on one machine or many: `torchrun --nproc-per-node N -m img2prompt generate`
(or `predict`, `index build`), or `accelerate launch -m img2prompt ...`. Both set RANK and
WORLD_SIZE; the work is split by rank (round-robin), so no data needs to travel between
processes. A process group (gloo, on the CPU, whatever the GPUs) is opened only for barriers,
after which rank 0 writes the joined output; without one (RANK/WORLD_SIZE set by hand on separate
machines sharing a folder) the last process to finish writes it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch.distributed as dist

from img2prompt.errors import ConfigError

# Ranks finish their shards at different times (a resumed rank may have nothing left to do), and
# the barrier waits for the slowest: allow it a long time.
BARRIER_TIMEOUT = timedelta(days=7)


@dataclass(frozen=True)
class Ranks:
    rank: int
    world_size: int
    group: bool
    """A torch.distributed process group is open (barrier available)."""
    owns_group: bool = False
    """The group was opened here, and is closed by `leave_ranks`."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.group:
            dist.barrier()


def join_ranks() -> Ranks:
    """This process's rank; opens a gloo group when a launcher set up a rendezvous."""
    if dist.is_available() and dist.is_initialized():  # a caller's own group
        return Ranks(dist.get_rank(), dist.get_world_size(), group=True)
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if not 0 <= rank < world_size:
        raise ConfigError(f"RANK={rank} is not in [0, WORLD_SIZE={world_size})")
    if world_size > 1 and dist.is_available() and "MASTER_ADDR" in os.environ:
        dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
        return Ranks(dist.get_rank(), dist.get_world_size(), group=True, owns_group=True)
    return Ranks(rank, world_size, group=False)


def leave_ranks(ranks: Ranks) -> None:
    """Close the group this module opened (a caller's own group is left alone)."""
    if ranks.owns_group and dist.is_initialized():
        dist.destroy_process_group()
