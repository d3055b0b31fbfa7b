"""No arm process outlives the harness: what ends an arm's processes when the harness itself dies (SIGKILL, OOM
killer, a crash), where its own cleanup (timeout, Ctrl-C: ``process.kill_tree``) never runs.

Two parts, both Linux-only (elsewhere they do nothing):

- ``die_with_parent``: run in the arm's child between fork and exec (``Popen(preexec_fn=...)``), it asks the
  kernel (``prctl(PR_SET_PDEATHSIG)``) to signal the child when the harness thread that started it exits: SIGKILL
  for a trainer, SIGTERM for torchrun, whose agent then stops its workers (they run in sessions of their own).
- ``Reaper``: a small watcher process per run, outside the arm's process group, holding a pipe from the harness.
  When the pipe closes without a "done" line (the harness died), it TERMs the arm's process group, then KILLs
  what is left after a grace period: the grandchildren a PDEATHSIG on the child alone does not reach (a shell's
  children, compile workers, anything the arm started in its group). ``python -m harness.reaper`` is that process.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1
GRACE_S = 3.0
_LIBC = None
if sys.platform == "linux":
    try:
        _LIBC = ctypes.CDLL(None, use_errno=True)   # loaded here, not after fork: the child only calls into it
    except OSError:
        _LIBC = None


def is_launcher(command: list[str]) -> bool:
    """torchrun (or ``python -m torch.distributed.run``): it must get SIGTERM to stop its workers."""
    return bool(command) and (os.path.basename(command[0]) == "torchrun" or "torch.distributed.run" in command[:3])


def die_with_parent(sig: int):
    """A preexec_fn: the child gets ``sig`` when the harness thread that forked it exits (and at once if the
    harness died before the call took effect). None where prctl is not available."""
    if _LIBC is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        _LIBC.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:       # the harness died between fork and prctl: nobody is left to signal us
            os.kill(os.getpid(), sig)
    return preexec


class Reaper:
    """The watcher of one arm's process group (see the module docstring). ``watch(pgid)`` once the arm started,
    ``done()`` once it has ended and been waited for."""

    def __init__(self):
        self.proc = None
        if sys.platform != "linux":
            return
        self.proc = subprocess.Popen([sys.executable, "-m", "harness.reaper"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, start_new_session=True,
                                     env={**os.environ, "PYTHONPATH": _import_root()})
        self.proc.stdout.readline()       # "ready": started before the arm, so its start-up is not the arm's time

    def watch(self, pgid: int) -> None:
        if self.proc:
            self.proc.stdin.write(f"{pgid}\n")
            self.proc.stdin.flush()

    def done(self) -> None:
        if self.proc:
            try:
                self.proc.stdin.write("done\n")
                self.proc.stdin.close()
            except OSError:
                pass
            self.proc.wait()
            self.proc = None


def _import_root() -> str:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _end_group(pgid: int, grace_s: float = GRACE_S) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and _alive(pgid):
            time.sleep(0.05)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the harness's to handle; we wait for the pipe
    print("ready", flush=True)
    pgid = None
    for line in sys.stdin:
        word = line.strip()
        if word == "done":
            return
        if word.isdigit():
            pgid = int(word)
    if pgid is not None:                           # the pipe closed without "done": the harness is gone
        _end_group(pgid)


if __name__ == "__main__":
    main()
