"""Facts about what upstream's base_train prints, which every reader of its output must allow for.

It prints the training loss as a debiased EMA (beta 0.9) with 6 decimals, val bpb with 6 decimals and the LR
multiplier with 2 (``lrm: 0.70``), and seeds its weight init with 42 whatever the budget says. Comparisons
against an upstream run (the budget audit, the parity check, upstream/verify.py) take their tolerances from here;
our trainer prints its loss with the same EMA so the two traces compare directly.
"""
from __future__ import annotations

from typing import Sequence

LOSS_DECIMALS = 6                      # "loss: 8.349106"; also val bpb
LRM_DECIMALS = 2                       # "lrm: 0.70"
LRM_PRINT_TOL = 0.005 + 1e-9           # half a unit of the 2nd decimal: the closed form rounded as printed
EMA_BETA = 0.9                         # the logging EMA of the training loss
SEED = 42                              # base_train's fixed init seed


def debiased_ema(losses: Sequence[float], beta: float = EMA_BETA) -> list[float]:
    """The loss upstream prints: s_t = beta*s_{t-1} + (1-beta)*l_t from s = 0, divided by 1 - beta^(t+1)."""
    out, s = [], 0.0
    for t, loss in enumerate(losses):
        s = beta * s + (1 - beta) * loss
        out.append(s / (1 - beta ** (t + 1)))
    return out
