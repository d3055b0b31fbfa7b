"""Process-group set-up and gradient averaging for data-parallel training under torchrun.

CUDA uses NCCL; CPU uses gloo, so two CPU processes do real data parallelism (unlike upstream, which
creates no process group on CPU). Gradients are averaged once per optimizer step, after all micro-steps:
with each rank's loss already divided by the accumulation count, the average is the mean over the whole
total batch, exactly the single-process gradient at the same total batch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init(device_type: str) -> tuple[DistInfo, torch.device]:
    """Join the torchrun process group if launched by torchrun; return this rank's info and device."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return DistInfo(), torch.device(device_type)
    info = DistInfo(int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"]))
    if device_type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl", device_id=device)
    else:
        device = torch.device(device_type)
        dist.init_process_group(backend="gloo")
    return info, device


def average_gradients(params: list[torch.nn.Parameter], world_size: int) -> None:
    """All-reduce every gradient to its mean over ranks (flattened into one buffer per dtype: one collective each)."""
    if world_size == 1:
        return
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for p in params:
        if p.grad is not None:
            by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
    for grads in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.div_(world_size)
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
