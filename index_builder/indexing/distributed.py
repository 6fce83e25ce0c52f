"""Index builds across processes with torch.distributed: `torchrun --nproc-per-node N -m index_builder build`.

Pass 1 shards the probes across ranks and sums the positive counts and token counts exactly (all-reduce
of integer-valued tensors, never an average of ratios). Pass 2 and HSIC run whole language pairs per rank
and rank 0 gathers the results, so every number equals a single-process build's. Backend: NCCL on CUDA,
gloo on CPU. A plain `bridgex-index build` (no WORLD_SIZE) is a world of one and touches none of this.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's share of `items` (every size-th item, starting at the rank)."""
        return list(items[self.rank :: self.size])

    def device(self, requested: str) -> str:
        """Each rank takes its own GPU (`cuda:<local rank>`) when the device is auto or cuda."""
        if self.active and requested in ("auto", "cuda") and torch.cuda.is_available():
            return f"cuda:{self.local_rank}"
        return requested

    def sum_(self, tensor: torch.Tensor) -> None:
        """In-place sum over ranks (exact for integer-valued counts)."""
        if self.active:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)

    def gather(self, obj: T) -> list[T]:
        """Every rank's `obj`, in rank order (on every rank)."""
        if not self.active:
            return [obj]
        out: list = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def init_world() -> World:
    """Join the process group that torchrun describes in the environment; a world of one otherwise."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    world = World(size, int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        use_nccl = torch.cuda.is_available() and dist.is_nccl_available()
        if use_nccl:
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group(backend="nccl" if use_nccl else "gloo")
    return world


def close_world(world: World) -> None:
    if world.active and dist.is_initialized():
        dist.destroy_process_group()
