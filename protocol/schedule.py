"""The learning-rate schedule both arms run: linear warmup, flat, then a warmdown to ``final_lr_frac``.

``SHAPES`` names the warmdown shapes: "linear" is upstream's own formula, "sqrt" the 1-sqrt shape the benchmark
swaps into upstream (upstream/warmdown.py) and our trainer uses (models/schedule.py). ``lr_multiplier`` is the one
closed form: our trainer calls it, the swapped-in upstream function calls it, and the checks (upstream/verify.py,
the swap's own test of upstream's linear schedule) compare against it.

The warmdown length is ``warmdown_steps(N, ratio) = round(ratio * N)`` (Python's round, ties to even), exactly
as upstream computes it, so both arms switch phases on the same step.
"""
from __future__ import annotations

import math

SHAPES = ("linear", "sqrt")
DEFAULT_SHAPE = "sqrt"


def warmdown_steps(num_iterations: int, warmdown_ratio: float) -> int:
    """Number of final steps spent in the LR warmdown."""
    return round(warmdown_ratio * num_iterations)


def lr_multiplier(it: int, num_iterations: int, warmup_steps: int, warmdown_ratio: float,
                  final_lr_frac: float, shape: str = DEFAULT_SHAPE) -> float:
    """Factor applied to every group's initial LR at step ``it`` (0-based)."""
    if shape not in SHAPES:
        raise ValueError(f"warmdown shape {shape!r} is not one of {SHAPES}; pick 'sqrt' or 'linear'")
    if it < warmup_steps:  # warmup wins over everything, even on runs shorter than it
        return (it + 1) / warmup_steps
    warmdown = warmdown_steps(num_iterations, warmdown_ratio)
    if warmdown == 0 or it <= num_iterations - warmdown:
        return 1.0
    remaining = (num_iterations - it) / warmdown  # 1 at the warmdown start, 0 at the last step
    if shape == "linear":  # upstream's own expression, term for term
        return remaining * 1.0 + (1 - remaining) * final_lr_frac
    done = 1 - remaining
    return final_lr_frac + (1 - final_lr_frac) * (1 - math.sqrt(done))


def is_eval_step(step: int, num_iterations: int, eval_every: int, warmdown_ratio: float = 0.0,
                 warmdown_eval_every: int = 0) -> bool:
    """Whether an eval runs before step ``step``'s update: at step 0, every ``eval_every`` steps, at the last step
    (``num_iterations``), and, with ``warmdown_eval_every > 0``, also every that many steps counted from the
    warmdown's first step (``num_iterations - warmdown_steps``), where BPB moves most. ``eval_every <= 0``: never."""
    if eval_every <= 0:
        return False
    if step == num_iterations or step % eval_every == 0:
        return True
    start = num_iterations - warmdown_steps(num_iterations, warmdown_ratio)
    return warmdown_eval_every > 0 and step >= start and (step - start) % warmdown_eval_every == 0


def eval_steps(num_iterations: int, eval_every: int, warmdown_ratio: float = 0.0,
               warmdown_eval_every: int = 0) -> list[int]:
    """Every step ``is_eval_step`` picks, in order: what each arm's events must show (harness/audit.py)."""
    return [s for s in range(num_iterations + 1)
            if is_eval_step(s, num_iterations, eval_every, warmdown_ratio, warmdown_eval_every)]
