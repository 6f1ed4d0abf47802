"""Process group set-up for ``torchrun``-style multi-process training.

``torchrun --nproc-per-node N python -m pipeline train …`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous address; a plain run has none and is world size 1. The
backend is NCCL on CUDA and gloo on CPU. Every rank draws the same global batch of the step
(a function of the seed and the step only) and keeps its own slice, so the run's samples do
not depend on the number of processes (docs/training.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from pipeline.errors import PipelineError


@dataclass(frozen=True)
class World:
    """This process's place: ``rank`` of ``size`` processes, ``local_rank`` on its node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: list[int]) -> list[int]:
        """This rank's slice of a global batch (``items[rank::size]``)."""
        return items[self.rank::self.size]


def resolve_device(name: str, world: World) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` → a device (``cuda:<local_rank>`` under torchrun).

    Raises:
        PipelineError: CUDA asked for where torch sees none, or fewer GPUs than processes.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise PipelineError(f"device {name!r} was asked for (train.run.device) but torch "
                                f"{torch.__version__} sees no CUDA device here; use "
                                "device: cpu or auto, or install a CUDA build of torch")
        count = torch.cuda.device_count()
        if world.size > 1 and world.local_rank >= count:
            raise PipelineError(f"{world.size} processes on this node but only {count} "
                                "visible CUDA devices (CUDA_VISIBLE_DEVICES?)")
        return torch.device("cuda", world.local_rank if world.size > 1 else 0)
    return torch.device("cpu")


def init_world() -> World:
    """Join the process group when launched by torchrun; a single process otherwise."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return world


def close_world(world: World, wait: bool = False) -> None:
    """Leave the process group (no-op for a single process). ``wait``: first wait until
    every rank is here (after a run that ended well on every rank): a rank that closes its
    connections while another still reads from it makes that one abort (gloo). Not after a
    failure, where the other ranks may never come (torchrun stops them)."""
    if world.size > 1 and dist.is_initialized():
        if wait:
            if dist.get_backend() == "nccl":
                dist.barrier(device_ids=[world.local_rank])
            else:
                dist.barrier()
        dist.destroy_process_group()


def all_mean(values: dict[str, float], world: World, device: torch.device) -> dict[str, float]:
    """Mean of each scalar over the ranks (identity for one process)."""
    if world.size == 1 or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return {k: float(v) / world.size for k, v in zip(keys, tensor.tolist(), strict=True)}
