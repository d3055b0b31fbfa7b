"""Per-step schedules of the training run: learning-rate multiplier, Muon momentum and Muon weight decay.

Pure functions of the step index (no torch), evaluated once per optimizer step by the trainer:

- ``lr_multiplier``     linear warmup, flat, then a warmdown to ``final_lr_frac`` ("linear" = upstream's
                        own formula, "sqrt" = the 1-sqrt shape both arms of the benchmark use);
- ``muon_momentum``     0.85 -> 0.97 over a fixed 400 steps, then 0.97 -> 0.90 across the LR warmdown;
- ``muon_weight_decay`` cosine from the (scaled) weight decay down to 0 at the last step.

``lr_multiplier`` and ``warmdown_steps`` (and the shape names) are defined once, in protocol/schedule.py (upstream's swapped-in
warmdown calls the same function), and imported here so the trainer reads its schedules from one module.
"""
from __future__ import annotations

import math

from protocol.schedule import lr_multiplier, warmdown_steps  # noqa: F401 - the one closed form, used by the trainer

MOMENTUM_WARMUP_STEPS = 400  # hard-coded upstream, independent of the LR warmup
MOMENTUM_START, MOMENTUM_PEAK, MOMENTUM_END = 0.85, 0.97, 0.90


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
