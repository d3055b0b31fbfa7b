"""Progress on the terminal while a campaign runs: run i of n, the current step of N, and an ETA.

``RichProgress`` draws a live bar on a terminal; ``PlainProgress`` prints one line per run start, eval and run
end (logs and CI); ``Silent`` prints nothing. The runner calls the same four methods on any of them.
"""
from __future__ import annotations

import sys
import time

from protocol.events import EvalEvent, StepEvent


class Silent:
    def campaign(self, n_runs: int, todo: int) -> None: ...
    def run_started(self, index: int, n_runs: int, run_id: str, steps: int) -> None: ...
    def step(self, ev: StepEvent) -> None: ...
    def eval(self, ev: EvalEvent) -> None: ...
    def run_finished(self, run_id: str, status: str, detail: str) -> None: ...
    def close(self) -> None: ...


class PlainProgress(Silent):
    """One line per event worth a line; an ETA from the run's own step rate."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.steps, self.t0, self.last_step = 0, time.monotonic(), -1
        self.prefix = ""

    def say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def campaign(self, n_runs: int, todo: int) -> None:
        self.say(f"campaign: {n_runs} runs, {todo} to do")

    def run_started(self, index: int, n_runs: int, run_id: str, steps: int) -> None:
        self.steps, self.t0, self.last_step = steps, time.monotonic(), -1
        self.prefix = f"[run {index}/{n_runs} {run_id}]"
        self.say(f"{self.prefix} started ({steps} steps)")

    def step(self, ev: StepEvent) -> None:
        self.last_step = ev.step

    def eval(self, ev: EvalEvent) -> None:
        self.say(f"{self.prefix} step {ev.step}/{self.steps} val bpb {ev.val_bpb:.4f}{self.eta()}")

    def eta(self) -> str:
        done = self.last_step + 1
        if done <= 0 or done >= self.steps:
            return ""
        left = (time.monotonic() - self.t0) / done * (self.steps - done)
        return f" | eta {left:.0f} s"

    def run_finished(self, run_id: str, status: str, detail: str) -> None:
        self.say(f"{self.prefix} {status}: {detail}")


class RichProgress(PlainProgress):
    """A live bar (rich) over the current run's steps; the plain lines still scroll above it."""

    def __init__(self):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        self.console = Console()
        super().__init__(stream=None)
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("steps"), TimeRemainingColumn(), console=self.console, transient=True)
        self.task = None
        self.bar.start()

    def say(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def run_started(self, index: int, n_runs: int, run_id: str, steps: int) -> None:
        super().run_started(index, n_runs, run_id, steps)
        if self.task is not None:
            self.bar.remove_task(self.task)
        self.task = self.bar.add_task(f"run {index}/{n_runs} {run_id}", total=steps)

    def step(self, ev: StepEvent) -> None:
        super().step(ev)
        self.bar.update(self.task, completed=ev.step + 1)

    def close(self) -> None:
        self.bar.stop()


def for_terminal(quiet: bool = False) -> Silent:
    """The progress display that suits where output goes: rich on a terminal, plain lines otherwise."""
    if quiet:
        return Silent()
    if sys.stdout.isatty():
        try:
            return RichProgress()
        except ImportError:   # a bare GPU box may lack rich
            pass
    return PlainProgress()
