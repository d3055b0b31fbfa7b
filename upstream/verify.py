"""Did an upstream run do what was asked? Its steps, batch and printed LR trace against the requested budget.

Upstream prints the LR multiplier with two decimals, so each printed value must lie within half a unit of
the last place of the closed form (``protocol.schedule.lr_multiplier``) for the requested shape. Returns mismatch
strings, one line each; an empty list means the run matches.
"""
from __future__ import annotations

from dataclasses import dataclass

from protocol.events import Event, FinalEvent, StepEvent
from upstream.errors import UpstreamError
from protocol.schedule import SHAPES, lr_multiplier
from protocol.upstream_output import LRM_PRINT_TOL

UPSTREAM_DEFAULTS = {"warmup-steps": 40, "warmdown-ratio": 0.65, "final-lr-frac": 0.05}


@dataclass(frozen=True)
class Expected:
    """The schedule and size a run was asked for."""
    num_iterations: int
    total_batch_size: int
    warmup_steps: int = UPSTREAM_DEFAULTS["warmup-steps"]
    warmdown_ratio: float = UPSTREAM_DEFAULTS["warmdown-ratio"]
    final_lr_frac: float = UPSTREAM_DEFAULTS["final-lr-frac"]
    shape: str = "sqrt"

    def __post_init__(self):
        if self.shape not in SHAPES:
            raise UpstreamError(f"expected shape {self.shape!r}: use one of {', '.join(SHAPES)}")
        if self.num_iterations < 1 or self.total_batch_size < 1:
            raise UpstreamError("expected num_iterations and total_batch_size must be explicit positive numbers")

    @classmethod
    def from_flags(cls, flags: list[str], shape: str) -> "Expected":
        """From base_train flags (``--name=value``); upstream's defaults for the schedule flags left out."""
        given = {f[2:].split("=", 1)[0].replace("_", "-"): f.split("=", 1)[1] for f in flags if "=" in f}
        if "num-iterations" not in given or "total-batch-size" not in given:
            raise UpstreamError("verification needs explicit --num-iterations and --total-batch-size flags")
        value = lambda name, kind: kind(given.get(name, UPSTREAM_DEFAULTS.get(name)))  # noqa: E731
        return cls(num_iterations=value("num-iterations", int), total_batch_size=value("total-batch-size", int),
                   warmup_steps=value("warmup-steps", int), warmdown_ratio=value("warmdown-ratio", float),
                   final_lr_frac=value("final-lr-frac", float), shape=shape)

    def lrm(self, step: int) -> float:
        return lr_multiplier(step, self.num_iterations, self.warmup_steps, self.warmdown_ratio,
                             self.final_lr_frac, self.shape)


def mismatches(events: list[Event], expected: Expected) -> list[str]:
    """Every way the run differs from ``expected`` (steps, tokens, batch, LR trace), one line each."""
    steps = [e for e in events if isinstance(e, StepEvent)]
    finals = [e for e in events if isinstance(e, FinalEvent)]
    out = _step_indices(steps, expected.num_iterations)
    out += _lr_trace(steps, expected)
    if not finals:
        return out + ["no final record: the run did not finish or was not collected"]
    return out + _totals(finals[-1], expected)


def _step_indices(steps: list[StepEvent], n: int) -> list[str]:
    seen = [s.step for s in steps]
    if seen == list(range(n)):
        return []
    missing = sorted(set(range(n)) - set(seen))
    extra = sorted(set(seen) - set(range(n)))
    return [f"steps: expected 0..{n - 1} once each, got {len(seen)} step records "
            f"(missing {missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected {extra[:5]})"]


def _lr_trace(steps: list[StepEvent], expected: Expected) -> list[str]:
    bad = [(s.step, s.lrm, expected.lrm(s.step)) for s in steps
           if abs(s.lrm - expected.lrm(s.step)) > LRM_PRINT_TOL]
    if not bad:
        return []
    step, got, want = bad[0]
    return [f"lrm: {len(bad)} steps off the {expected.shape} schedule, first at step {step}: "
            f"printed {got:.2f}, expected {want:.4f}"]


def _totals(final: FinalEvent, expected: Expected) -> list[str]:
    out = []
    batch = (final.extra or {}).get("total_batch_size")
    if batch != expected.total_batch_size:
        out.append(f"total batch: upstream used {batch} tokens per step, expected {expected.total_batch_size}")
    if final.steps != expected.num_iterations:
        out.append(f"steps: final record says {final.steps}, expected {expected.num_iterations}")
    want_tokens = expected.num_iterations * expected.total_batch_size
    if final.tokens != want_tokens:
        out.append(f"tokens: final record says {final.tokens}, expected {want_tokens}")
    return out
