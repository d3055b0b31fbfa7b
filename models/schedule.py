"""Per-step schedules of the training run: learning-rate multiplier, Muon momentum and Muon weight decay.

Pure functions of the step index (no torch), evaluated once per optimizer step by the trainer:

- ``lr_multiplier``     linear warmup, flat, then a warmdown to ``final_lr_frac`` ("linear" = upstream's
                        own formula, "sqrt" = the 1-sqrt shape both arms of the benchmark use);
- ``muon_momentum``     0.85 -> 0.97 over a fixed 400 steps, then 0.97 -> 0.90 across the LR warmdown;
- ``muon_weight_decay`` cosine from the (scaled) weight decay down to 0 at the last step.

The warmdown length is ``warmdown_steps(N, ratio) = round(ratio * N)`` (Python's round, ties to even),
exactly as upstream computes it, so both arms switch phases on the same step.
"""
from __future__ import annotations

import math

SHAPES = ("linear", "sqrt")
MOMENTUM_WARMUP_STEPS = 400  # hard-coded upstream, independent of the LR warmup
MOMENTUM_START, MOMENTUM_PEAK, MOMENTUM_END = 0.85, 0.97, 0.90


def warmdown_steps(num_iterations: int, warmdown_ratio: float) -> int:
    """Number of final steps spent in the LR warmdown."""
    return round(warmdown_ratio * num_iterations)


def lr_multiplier(it: int, num_iterations: int, warmup_steps: int, warmdown_ratio: float,
                  final_lr_frac: float, shape: str = "sqrt") -> float:
    """Factor applied to every group's initial LR at step ``it`` (0-based)."""
    if shape not in SHAPES:
        raise ValueError(f"warmdown shape {shape!r} is not one of {SHAPES}; pick 'sqrt' or 'linear'")
    if it < warmup_steps:  # warmup wins over everything, even on runs shorter than it
        return (it + 1) / warmup_steps
    warmdown = warmdown_steps(num_iterations, warmdown_ratio)
    if warmdown == 0 or it <= num_iterations - warmdown:
        return 1.0
    remaining = (num_iterations - it) / warmdown  # 1 at the warmdown start, 0 at the last step
    if shape == "linear":
        return remaining * 1.0 + (1 - remaining) * final_lr_frac
    done = 1 - remaining
    return final_lr_frac + (1 - final_lr_frac) * (1 - math.sqrt(done))


def muon_momentum(it: int, num_iterations: int, warmdown_ratio: float) -> float:
    """Muon's Nesterov momentum at step ``it``; the fixed 400-step warmup takes precedence."""
    if it < MOMENTUM_WARMUP_STEPS:
        frac = it / MOMENTUM_WARMUP_STEPS
        return (1 - frac) * MOMENTUM_START + frac * MOMENTUM_PEAK
    warmdown = warmdown_steps(num_iterations, warmdown_ratio)
    start = num_iterations - warmdown
    if warmdown > 0 and it >= start:
        frac = (it - start) / warmdown
        return MOMENTUM_PEAK * (1 - frac) + MOMENTUM_END * frac
    return MOMENTUM_PEAK


def muon_weight_decay(it: int, num_iterations: int, weight_decay: float) -> float:
    """Muon's weight decay at step ``it``: half a cosine from ``weight_decay`` to 0 at ``num_iterations``."""
    return weight_decay * 0.5 * (1 + math.cos(math.pi * it / num_iterations))
