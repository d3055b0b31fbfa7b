"""The JSONL event contract between every training arm and the harness.

One JSON object per line, each with an ``event`` field: ``step``, ``eval`` or ``final``.
Units are SI: seconds, bytes, tokens per second. Fields that an arm cannot measure are
``null``, never 0. Our trainer (models/), the upstream log parser (upstream/) and any
external ``command`` trainer write exactly these records; the harness reads nothing else.

This module must stay import-light (standard library only): models/ imports it and
nothing else of this project.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO, Iterable, Iterator, Union


@dataclass
class StepEvent:
    """One optimizer step. ``step`` is 0-based: the index whose update just ran."""
    step: int
    loss: float                  # debiased EMA (beta 0.9) of the training loss, as upstream prints it
    lrm: float                   # learning-rate multiplier used for this step
    dt_s: float                  # wall time of the step (fwd+bwd of all micro-steps, next-batch fetch, optimizer)
    tokens_per_s: float          # total batch tokens / dt_s
    loss_raw: float | None = None  # last micro-step's loss, un-smoothed (null where the arm does not expose it)
    mfu: float | None = None     # model FLOPs utilisation in percent, if the arm computes it
    t_s: float | None = None     # seconds since the arm started (for timelines)
    event: str = field(default="step", init=False)


@dataclass
class EvalEvent:
    """A validation bits-per-byte measurement, taken before the optimizer step of ``step``."""
    step: int
    val_bpb: float
    eval_tokens: int | None = None
    dt_s: float | None = None
    t_s: float | None = None
    event: str = field(default="eval", init=False)


@dataclass
class FinalEvent:
    """End of a run: totals the harness cannot infer from the step records alone."""
    steps: int                   # optimizer steps taken
    tokens: int                  # training tokens processed (counted once across ranks)
    train_time_s: float          # training time excluding eval, checkpointing and sampling
    peak_mem_bytes: int | None = None  # the arm's own torch peak allocation (null on CPU where it cannot know)
    min_val_bpb: float | None = None
    param_counts: dict[str, int] | None = None  # wte, value_embeds, lm_head, transformer_matrices, scalars, total
    extra: dict | None = None    # arm-specific facts (e.g. flops per token, dtype, world size)
    t_s: float | None = None
    event: str = field(default="final", init=False)


Event = Union[StepEvent, EvalEvent, FinalEvent]
_BY_NAME = {"step": StepEvent, "eval": EvalEvent, "final": FinalEvent}


class EventFormatError(ValueError):
    """A line of an events file that does not follow this contract."""


def to_json(ev: Event) -> str:
    d = asdict(ev)
    for k, v in d.items():  # JSON has no NaN/inf: a diverged loss is written as null with a flag
        if isinstance(v, float) and not math.isfinite(v):
            d[k] = None
            d.setdefault("nonfinite", []).append(k)
    return json.dumps(d, separators=(",", ":"))


def from_dict(d: dict) -> Event:
    kind = d.get("event")
    cls = _BY_NAME.get(kind)
    if cls is None:
        raise EventFormatError(f"unknown event type {kind!r}; expected one of {sorted(_BY_NAME)}")
    names = {f.name for f in fields(cls) if f.init}
    kwargs = {k: v for k, v in d.items() if k in names}
    try:
        ev = cls(**kwargs)
    except TypeError as e:
        raise EventFormatError(f"{kind} event {d}: {e}") from None
    _check_values(ev, d.get("nonfinite") or [])
    return ev


_NUMBER = {"int": "a whole number", "int | None": "a whole number or null", "float": "a finite number",
           "float | None": "a finite number or null", "dict[str, int] | None": "an object or null",
           "dict | None": "an object or null"}


def _check_values(ev: Event, nonfinite: list) -> None:
    """Every field of the right JSON type and finite (a diverged loss is not a number a summary can use)."""
    for f in fields(ev):
        if f.name == "event":
            continue
        v, want = getattr(ev, f.name), _NUMBER.get(str(f.type))
        if want is None or (v is None and "null" in want):
            if v is None and f.name in nonfinite:
                raise EventFormatError(f"{ev.event} event: {f.name} is NaN or infinite (written as null); "
                                       f"the run diverged or the arm computed it wrongly")
            continue
        if want.startswith("an object"):
            ok = isinstance(v, dict)
        elif "whole" in want:
            ok = isinstance(v, int) and not isinstance(v, bool) and v >= 0
        else:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not ok:
            shown = "null (NaN or infinite)" if v is None and f.name in nonfinite else repr(v)
            raise EventFormatError(f"{ev.event} event: {f.name} = {shown} must be {want.replace('whole', 'non-negative whole')}")


class EventWriter:
    """Appends events to a JSONL file, flushing each line so a crash loses nothing written."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self._fh: IO[str] | None = None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")

    def write(self, ev: Event) -> None:
        if self._fh:
            self._fh.write(to_json(ev) + "\n")
            self._fh.flush()

    def close(self) -> None:
        if self._fh:
            self._fh.close()
            self._fh = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_events(path: str | Path) -> list[Event]:
    return list(iter_events(Path(path).read_text(encoding="utf-8").splitlines(), source=str(path)))


def iter_events(lines: Iterable[str], source: str = "<events>") -> Iterator[Event]:
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise EventFormatError(f"{source}:{n}: not JSON ({e.msg}); every line must be one event object") from None
        try:
            yield from_dict(d)
        except EventFormatError as e:
            raise EventFormatError(f"{source}:{n}: {e}") from None
