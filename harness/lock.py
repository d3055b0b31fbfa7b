"""Exclusive locks on a file (flock): one nightly at a time, one process per campaign (run, --resume).

The kernel frees the lock when its holder exits, even on a crash or SIGKILL, so no stale lock needs cleaning up.
The file holds the holder's pid, for the message of whoever finds it taken.
"""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path


class Locked(RuntimeError):
    """The lock is held by another process; the message names the pid and the file."""


@contextmanager
def exclusive(path: str | Path, busy: str):
    """Hold an exclusive, non-blocking flock on ``path``; Locked("<busy> (pid P holds PATH) ...") when taken."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            raise Locked(f"{busy} (pid {holder} holds {path}); wait for it to finish: the lock frees itself when "
                         f"that process exits") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield path
    finally:
        fh.close()  # closing the file releases the lock
