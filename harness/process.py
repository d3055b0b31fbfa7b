"""One arm process under the harness: started in its own session, its output teed to log.txt, its events watched
as they appear, its process tree sampled, and stopped on timeout or Ctrl-C (the whole tree, TERM then KILL), or
by harness/reaper.py when the harness itself dies.

The same code runs every arm; an adapter only supplies the command, the environment and, for arms that print
rather than write events, a line parser whose events the harness writes to events.jsonl itself.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from harness.adapters.base import Adapter, RunRequest
from harness.reaper import Reaper, die_with_parent, is_launcher
from protocol.events import EvalEvent, Event, EventFormatError, EventWriter, StepEvent, iter_events
from harness.results import EvalMemory
from harness.telemetry import Sample, Sampler, tree_cpu_now
from protocol.files import DiskFull, write_failure

POLL_S = 0.2
LOG_TAIL_LINES = 40


@dataclass
class ProcessOptions:
    verbose: bool = False                 # echo the arm's output to the console too
    gpus: list[int] | None = None         # CUDA devices (NVML/PCI order) the run may use; None = all
    watch_gpus: bool = False              # sample GPUs through NVML (CUDA budgets)
    telemetry_interval_s: float = 0.5
    kill_grace_s: float = 5.0


@dataclass
class ProcessOutcome:
    status: str                           # ok | failed | timeout | interrupted
    error: str | None
    returncode: int | None
    wall_time_s: float
    events: list[Event] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    eval_memory: list[EvalMemory] = field(default_factory=list)
    log_tail: str | None = None
    first_step_s: float | None = None     # process start to the harness seeing step 0's event
    trainer_hwm_bytes: int | None = None  # max kernel VmHWM over the training processes (telemetry.ProcessTree)
    helper_hwm_bytes: int | None = None   # the same over helper processes (compile workers, launchers)
    disk_full: bool = False               # a harness writer (log, events, telemetry) found no space left
    paused_s: float = 0.0                 # lock-step: seconds the harness held the arm paused (harness/lockstep.py)


class EventTail:
    """Reads the complete new lines of a JSONL events file each time it is polled."""

    def __init__(self, path: Path):
        self.path, self.offset, self.partial = path, 0, ""

    def poll(self) -> list[Event]:
        try:
            with open(self.path, "r", encoding="utf-8") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
                self.offset = fh.tell()
        except FileNotFoundError:
            return []
        lines = (self.partial + chunk).split("\n")
        self.partial = lines.pop()
        try:
            return list(iter_events(lines, source=str(self.path)))
        except EventFormatError:
            return []   # reported once, from the whole file, after the run


def child_env(extra: dict[str, str], opts: ProcessOptions) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"           # lines reach the log (and the live progress) as they are printed
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # CUDA indices = NVML indices, so telemetry watches the right GPU
    if opts.gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in opts.gpus)
    return env


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def kill_tree(pid: int, grace_s: float) -> None:
    """TERM the process group and every descendant (a paused one is let run to take it), then KILL whatever is
    still alive after ``grace_s``."""
    try:
        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True)
    except psutil.NoSuchProcess:
        return
    for send in (lambda: os.killpg(pid, signal.SIGTERM), *(p.terminate for p in procs),
                 lambda: os.killpg(pid, signal.SIGCONT)):
        try:
            send()
        except (ProcessLookupError, PermissionError, psutil.Error):
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace_s)


class ArmProcess:
    """Runs one RunRequest to its end and reports what happened; reports steps and evals to ``progress``."""

    def __init__(self, req: RunRequest, adapter: Adapter, opts: ProcessOptions, progress):
        self.req, self.adapter, self.opts, self.progress = req, adapter, opts, progress
        self.events: list[Event] = []
        self.eval_memory: list[EvalMemory] = []
        self.parser = adapter.line_parser(req)
        self.parse_error: str | None = None
        self.write_error: OSError | None = None   # the first failed write of the reader (log.txt, events.jsonl)
        self.first_step_s: float | None = None
        self.seen_at: list[float] = []          # monotonic time the harness saw each of self.events
        self.pauses: list[tuple[float, float]] = []
        self._paused_at: float | None = None
        self.sampler_partners: list["ArmProcess"] = []   # lock-step: the other arm, whose CPU is not "others"
        self._partner_max = 0.0                          # the most partner CPU read so far (see _partner_cpu_s)
        self.proc: subprocess.Popen | None = None
        self._t0 = time.monotonic()
        self._lock = threading.Lock()

    @property
    def log_path(self) -> Path:
        return self.req.run_dir / "log.txt"

    def run(self) -> ProcessOutcome:
        """Start the arm and wait for its end (or timeout, a full disk, or Ctrl-C)."""
        self.start()
        try:
            while (ended := self.poll()) is None:
                time.sleep(POLL_S)
        except KeyboardInterrupt:
            ended = self.stop("interrupted", f"interrupted by the user (Ctrl-C) at step {self._last_step()}")
        return self.finish(*ended)

    def start(self) -> None:
        """Launch the arm: its output teed to log.txt, its tree sampled, its events watched, and a reaper that
        ends its process group if the harness dies (harness/reaper.py)."""
        launch = self.adapter.launch(self.req)
        self._clear_old_outputs()
        self._t0 = time.monotonic()
        self._reaper = Reaper()
        self._log = self._open_log(launch.command)
        try:
            death = signal.SIGTERM if is_launcher(launch.command) else signal.SIGKILL
            self.proc = subprocess.Popen(launch.command, cwd=launch.cwd, env=child_env(launch.env, self.opts),
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                         errors="replace", bufsize=1, preexec_fn=die_with_parent(death),
                                         start_new_session=True)  # its own group: Ctrl-C reaches only us
            self._reaper.watch(self.proc.pid)
            self.sampler = Sampler(self.proc.pid, self.req.run_dir / "telemetry.jsonl",
                                   self.opts.telemetry_interval_s, gpus=self.opts.gpus,
                                   watch_gpus=self.opts.watch_gpus, partner_cpu_s=self._partner_cpu_s).start()
            self._reader = threading.Thread(target=self._read_output, args=(self.proc, self._log), daemon=True)
            self._reader.start()
        except BaseException:
            self._reaper.done()
            self._writing(self.log_path, self._log.close)
            raise
        self._tail = None if self.parser else EventTail(self.req.events_path)

    def poll(self) -> tuple[str, str | None] | None:
        """One look at the running arm: None while it runs; ("", None) once it has exited by itself; (status,
        error) when the harness had to stop it (a failed write, a timeout). Paused time does not count against
        the timeout."""
        if self._tail:
            self._seen(self._tail.poll())
        if self.proc.poll() is not None:
            if self._tail:
                self._seen(self._tail.poll())
            return "", None
        failed = self._failed_write()
        if failed is not None:     # a full disk: nothing more of this run can be kept, so stop it now
            return self.stop("failed", f"{failed} at step {self._last_step()}: the run was stopped")
        if self.running_s() > self.req.budget.run_timeout_s:
            return self.stop("timeout", f"still running after run_timeout_s={self.req.budget.run_timeout_s:g} s "
                                        f"(at step {self._last_step()}): killed; raise it with --timeout")
        return None

    def stop(self, status: str, error: str) -> tuple[str, str]:
        """Stop the whole tree (TERM, then KILL) for a harness-caused ending."""
        kill_tree(self.proc.pid, self.opts.kill_grace_s)
        return status, error

    def finish(self, status: str, error: str | None) -> ProcessOutcome:
        """Collect the ended arm's outcome (its reader drained, its sampler stopped, its reaper dismissed)."""
        try:
            self._reader.join(timeout=10)
        finally:
            self._reaper.done()
            self._writing(self.log_path, self._log.close)   # a full disk fails the last flush: kept as the error
        samples = self.sampler.stop()   # its last sample read every live process's VmHWM (<= interval before exit)
        return self._outcome(status, error, self.proc.returncode, time.monotonic() - self._t0, samples)

    @property
    def t0(self) -> float:
        return self._t0

    @property
    def started(self) -> bool:
        return self.proc is not None

    def _partner_cpu_s(self) -> float:
        """The lock-step partner's tree CPU, read live (a value cached at the partner's own samples lags by up to
        an interval, and with arms alternating every slice that lag reads as "others" in one interval and is
        clipped to 0 in the next); never less than already read, as a tree that has exited reads nothing."""
        live = sum(tree_cpu_now(p.proc.pid) or 0.0 for p in self.sampler_partners if p.started)
        self._partner_max = max(self._partner_max, live)
        return self._partner_max

    def running_s(self) -> float:
        """Seconds since launch, less the time the harness held the arm paused (harness/lockstep.py)."""
        now = time.monotonic()
        held = sum(b - a for a, b in self.pauses) + (now - self._paused_at if self._paused_at is not None else 0.0)
        return now - self._t0 - held

    def pause(self) -> None:
        """Freeze the arm's whole process group (SIGSTOP) and note when."""
        if self._paused_at is None and self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGSTOP)
            self._paused_at = time.monotonic()

    def resume(self) -> None:
        """Let a paused arm run again (SIGCONT) and keep the pause interval (monotonic seconds)."""
        if self._paused_at is not None:
            _signal_group(self.proc.pid, signal.SIGCONT)
            self.pauses.append((self._paused_at, time.monotonic()))
            self._paused_at = None

    def _open_log(self, command: list[str]):
        """log.txt, opened with the command line as its first line (DiskFull when even that does not fit)."""
        log = open(self.log_path, "w", encoding="utf-8")
        try:
            log.write(f"# {' '.join(command)}\n")
            log.flush()
        except OSError as e:
            try:
                log.close()
            except OSError:
                pass
            raise write_failure(self.log_path, e) from e
        return log

    def _clear_old_outputs(self) -> None:
        self.req.run_dir.mkdir(parents=True, exist_ok=True)
        for name in ("events.jsonl", "events.raw.jsonl", "telemetry.jsonl", "log.txt"):
            (self.req.run_dir / name).unlink(missing_ok=True)

    def _read_output(self, proc: subprocess.Popen, log) -> None:
        """Tee the arm's output to log.txt (and parsed events to events.jsonl) until it closes; after a failed
        write it only drains the pipe (the wait loop stops the arm), so the arm never blocks on a full pipe."""
        writer = self._writing(self.req.events_path, lambda: EventWriter(self.req.events_path if self.parser else None))
        start = time.monotonic()
        for line in proc.stdout:
            if self.write_error is None:
                self._writing(self.log_path, lambda: (log.write(line), log.flush()))
            if self.opts.verbose:
                sys.stdout.write(line)
            if self.parser and self.parse_error is None and self.write_error is None:
                new = self._parse(line, time.monotonic() - start)
                for ev in new:
                    self._writing(self.req.events_path, lambda: writer.write(ev))
                self._seen(new)
        if writer is not None:
            self._writing(self.req.events_path, writer.close)

    def _writing(self, path: Path, write):
        """``write()``, with an OSError kept as the run's write error (DiskFull naming ``path`` when it is one)."""
        try:
            return write()
        except OSError as e:
            self.write_error = self.write_error or write_failure(path, e)
            return None

    def _failed_write(self) -> OSError | None:
        return self.write_error or self.sampler.write_error

    def _parse(self, line: str, t_s: float) -> list[Event]:
        try:
            return list(self.parser(line, t_s))
        except Exception as e:  # a parser bug must not kill the reader: the run is judged from what was parsed
            self.parse_error = f"{type(e).__name__}: {e}"
            return []

    def _seen(self, new: list[Event]) -> None:
        for ev in new:
            with self._lock:
                self.events.append(ev)
                self.seen_at.append(time.monotonic())
            if isinstance(ev, StepEvent):
                if self.first_step_s is None:
                    self.first_step_s = round(time.monotonic() - self._t0, 3)
                self.progress.step(ev)
            elif isinstance(ev, EvalEvent):
                snap = self.sampler.sample()
                gpu = snap.gpu_proc_mem_bytes if snap.gpu_proc_mem_bytes is not None else snap.gpu_mem_used_bytes
                self.eval_memory.append(EvalMemory(step=ev.step, rss_bytes=snap.rss_bytes, gpu_bytes=gpu))
                self.progress.eval(ev)

    def _last_step(self) -> str:
        steps = [e.step for e in self.events if isinstance(e, StepEvent)]
        return f"{steps[-1] + 1}/{self.req.budget.iterations}" if steps else f"0/{self.req.budget.iterations}"

    def _outcome(self, status: str, error: str | None, rc: int | None, wall: float,
                 samples: list[Sample]) -> ProcessOutcome:
        tail = log_tail(self.log_path)
        if not status:
            status, error = judge_exit(rc, tail)
        if self.parse_error and status == "ok":
            status, error = "failed", f"could not parse the arm's output: {self.parse_error}"
        failed = self._failed_write()
        if failed is not None and status == "ok":   # it ended before the wait loop saw the failed write
            status, error = "failed", f"{failed}: the run's files are incomplete"
        trainer, helper = self.sampler.tree.peaks()
        return ProcessOutcome(status=status, error=error, returncode=rc, wall_time_s=wall, events=list(self.events),
                              samples=samples, eval_memory=self.eval_memory, log_tail=tail,
                              first_step_s=self.first_step_s, trainer_hwm_bytes=trainer, helper_hwm_bytes=helper,
                              disk_full=isinstance(failed, DiskFull))


def judge_exit(rc: int | None, tail: str) -> tuple[str, str | None]:
    """(status, error) of a process that ended by itself."""
    if rc == 0:
        return "ok", None
    if rc is not None and rc < 0:
        return "failed", f"killed by {signal.Signals(-rc).name}: {last_error_line(tail)}"
    return "failed", f"exit code {rc}: {last_error_line(tail)}"


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def last_error_line(tail: str) -> str:
    """The line most likely to say what went wrong: the last one naming an error, else the last line."""
    lines = [line.strip() for line in tail.splitlines() if line.strip() and not line.startswith("# ")]
    for line in reversed(lines):
        if "error" in line.lower() or "exception" in line.lower() or "killed" in line.lower():
            return line[:300]
    return lines[-1][:300] if lines else "no output"
