"""torch.distributed helpers: data-parallel extraction under ``torchrun``, one process per device.

Each rank encodes a disjoint set of feature shards; rank 0 merges them, scores, and writes rows.
Works with NCCL (GPUs, one or many nodes) and gloo (CPU). Outside torchrun it is a no-op.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from clip_bench.util.resources import env_setting


def launched_with_torchrun() -> bool:
    return int(env_setting("WORLD_SIZE", "1")) > 1 and env_setting("RANK") is not None


def init_from_env() -> None:
    """Join the process group torchrun describes in the environment (NCCL on CUDA, else gloo)."""
    if not launched_with_torchrun() or dist.is_initialized():
        return
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(int(env_setting("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def local_device() -> str | None:
    """The device for this rank under torchrun (cuda:LOCAL_RANK), or None to use the default."""
    if is_distributed() and torch.cuda.is_available():
        return f"cuda:{int(env_setting('LOCAL_RANK', '0'))}"
    return None


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (a list of one outside distributed runs)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
