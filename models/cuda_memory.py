"""Peak CUDA memory of this process as torch's caching allocator counts it: allocated (what tensors held, the
number upstream prints as "Peak memory usage") and reserved (what the allocator took from the driver, closer to
what NVML sees). Both are None off CUDA, where torch has no such counters: unknown, never 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CudaPeaks:
    allocated_bytes: int | None = None
    reserved_bytes: int | None = None


def peaks(device: torch.device, cuda=torch.cuda) -> CudaPeaks:
    """Peaks since the process started on ``device``; empty (None, None) on a non-CUDA device."""
    if device.type != "cuda":
        return CudaPeaks()
    return CudaPeaks(allocated_bytes=int(cuda.max_memory_allocated(device)),
                     reserved_bytes=int(cuda.max_memory_reserved(device)))

