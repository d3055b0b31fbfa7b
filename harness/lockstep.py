"""Lock-step interleaving: the two arms of a round run as live processes at the same time, and the harness hands
the CPU to one of them at a time, switching every few training steps (SIGSTOP / SIGCONT of each arm's process
group). Slow drift of the machine (a 2-core cloud VM's matmul rate wanders by +-15 % over tens of seconds, see
docs/measurement.md) then falls on both arms alike, a second apart instead of a whole run apart.

Start-up stays sequential and undisturbed: the first arm runs alone to its first training step and is paused,
then the second does the same, so ``time_to_first_step_s`` means what it means in a sequential campaign. After
that the running arm is paused once it has finished ``steps_per_slice`` steps and the other resumed; when one arm
ends, the other runs to its end alone.

A pause that falls inside a step or an eval lengthens that record's ``dt_s`` as the arm measured it.
``unpause_events`` takes it out again: each pause is charged to the record whose measured interval
[seen - dt_s, seen] holds the pause's midpoint (``seen`` = when the harness read the record, a few ms after the
arm wrote it; pauses last a slice, ~1 s, so the midpoint rule is not sensitive to that delay), and every record's
``t_s`` loses the pauses before it. The arm's own record is kept as events.raw.jsonl beside the corrected
events.jsonl.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from harness.process import ArmProcess, ProcessOutcome
from protocol.events import EvalEvent, Event, EventFormatError, EventWriter, FinalEvent, StepEvent, read_events

SLICE_POLL_S = 0.01      # how often the conductor looks at the arms (ours' events file is polled this often too)


class Lockstep:
    """Runs two ArmProcess objects in lock-step; ``run`` returns both outcomes (in the order given)."""

    def __init__(self, first: ArmProcess, second: ArmProcess, steps_per_slice: int):
        if steps_per_slice < 1:
            raise ValueError("steps_per_slice must be at least 1")
        self.arms, self.k = (first, second), steps_per_slice
        for arm in self.arms:
            arm.sampler_partners = [other for other in self.arms if other is not arm]
        self.ended: dict[int, tuple[str, str | None]] = {}

    def run(self) -> tuple[ProcessOutcome, ProcessOutcome]:
        try:
            for i, arm in enumerate(self.arms):
                arm.start()
                self._until(lambda: self._steps(arm) > 0, only=i)   # alone to its first step
                if i == 0:
                    arm.pause()
            self._alternate(current=1)
        except KeyboardInterrupt:
            for i, arm in enumerate(self.arms):
                if i not in self.ended:
                    self.ended[i] = arm.stop("interrupted", f"interrupted by the user (Ctrl-C) at step "
                                                            f"{arm._last_step()}")
        for arm in self.arms:
            arm.resume()
        return tuple(arm.finish(*self.ended[i]) for i, arm in enumerate(self.arms))

    def _alternate(self, current: int) -> None:
        mark = self._steps(self.arms[current])
        while len(self.ended) < 2:
            self._look()
            other = 1 - current
            if current in self.ended or (self._steps(self.arms[current]) - mark >= self.k and other not in self.ended):
                if other in self.ended:
                    break
                self.arms[current].pause()
                self.arms[other].resume()
                current, mark = other, self._steps(self.arms[other])
            time.sleep(SLICE_POLL_S)

    def _until(self, done, only: int) -> None:
        while only not in self.ended and not done():
            self._look()
            time.sleep(SLICE_POLL_S)

    def _look(self) -> None:
        for i, arm in enumerate(self.arms):
            if i not in self.ended and arm.started:
                ended = arm.poll()
                if ended is not None:
                    self.ended[i] = ended

    @staticmethod
    def _steps(arm: ArmProcess) -> int:
        return sum(isinstance(e, StepEvent) for e in list(arm.events))


def unpause_events(events: list[Event], seen: dict[tuple[str, int], float],
                   pauses: list[tuple[float, float]]) -> tuple[list[Event], float]:
    """(events with the harness's pauses taken out of dt_s and t_s, total seconds charged to records).

    ``seen`` maps (event kind, step) to the monotonic time the harness read that record; ``pauses`` are monotonic
    (start, end) intervals. A record the harness did not see live (upstream's final record, built after the
    exit) is charged nothing and loses every pause from its ``t_s``."""
    charged = [0.0] * len(events)
    for a, b in pauses:
        mid = (a + b) / 2
        for i, ev in enumerate(events):
            at, dt = seen.get((ev.event, getattr(ev, "step", None))), getattr(ev, "dt_s", None)
            if at is not None and dt is not None and at - dt <= mid <= at:
                charged[i] += b - a
                break
    out, total = [], 0.0
    for ev, paid in zip(events, charged):
        changes = {}
        if paid and ev.dt_s - paid > 0:
            total += paid
            changes["dt_s"] = ev.dt_s - paid
            if isinstance(ev, StepEvent) and ev.tokens_per_s:
                changes["tokens_per_s"] = ev.tokens_per_s * ev.dt_s / changes["dt_s"]
                if ev.mfu is not None:
                    changes["mfu"] = ev.mfu * ev.dt_s / changes["dt_s"]
        at = seen.get((ev.event, getattr(ev, "step", None)), float("inf"))
        before = sum(b - a for a, b in pauses if b <= at)
        if getattr(ev, "t_s", None) is not None and before:
            changes["t_s"] = max(0.0, ev.t_s - before)
        out.append(dataclasses.replace(ev, **changes) if changes else ev)
    steps_paid = sum(p for p, ev in zip(charged, events) if isinstance(ev, StepEvent) and p and ev.dt_s - p > 0)
    out = [dataclasses.replace(ev, train_time_s=max(0.0, ev.train_time_s - steps_paid))
           if isinstance(ev, FinalEvent) and steps_paid else ev for ev in out]
    return out, total


def unpause(events_path: Path, proc: ArmProcess, out: ProcessOutcome) -> None:
    """Correct one lock-step arm's record on disk and in ``out`` once the arm (and its adapter) is done with it.

    A broken events file is left as it is, for the run's own checks to fail it (never papered over)."""
    out.paused_s = sum(b - a for a, b in proc.pauses)
    out.wall_time_s = max(0.0, out.wall_time_s - out.paused_s)
    try:
        on_disk = read_events(events_path) if events_path.is_file() else None
    except EventFormatError:
        return
    if on_disk:
        seen = {(ev.event, ev.step): at for ev, at in zip(proc.events, proc.seen_at) if hasattr(ev, "step")}
        corrected, _ = unpause_events(on_disk, seen, proc.pauses)
        rewrite_events(events_path, corrected)
        out.events = corrected


def rewrite_events(events_path: Path, corrected: list[Event]) -> None:
    """Keep the arm's own record as events.raw.jsonl and write the corrected one as events.jsonl."""
    raw = events_path.with_name("events.raw.jsonl")
    if events_path.is_file():
        events_path.replace(raw)
    with EventWriter(events_path) as w:
        for ev in corrected:
            w.write(ev)


class PairProgress:
    """Shows a lock-step pair as one run: the bar counts both arms' steps; run_finished lines pass through."""

    def __init__(self, progress):
        self.progress, self.counts = progress, [0, 0]

    def run_started(self, index: int, n_runs: int, label: str, steps: int) -> None:
        self.progress.run_started(index, n_runs, label, steps)

    def arm(self, k: int) -> "_ArmProgress":
        return _ArmProgress(self, k)


class _ArmProgress:
    def __init__(self, pair: PairProgress, k: int):
        self.pair, self.k = pair, k

    def step(self, ev: StepEvent) -> None:
        self.pair.counts[self.k] = ev.step + 1
        self.pair.progress.step(dataclasses.replace(ev, step=sum(self.pair.counts) - 1))

    def eval(self, ev: EvalEvent) -> None:
        self.pair.progress.eval(ev)
