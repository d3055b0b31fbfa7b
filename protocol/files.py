"""Atomic file writes and JSON reads: readers see the old file or the whole new one, never a part.

Every layer writes through ``write_atomic`` (results, reports, events, checkpoints, tokenizer files, workspace
markers): a temp file in the same directory, flushed and fsynced, then renamed over the target.

Paths read from a file (a result's ``events_path``, a campaign's ``result_path``) and identifiers used as folder
names (a campaign id, a run id) go through ``inside`` and ``check_name``: no absolute path, no ``..``, no symlink
that leads out of the folder the file belongs to.
"""
from __future__ import annotations

import errno
import json
import os
import re
import tempfile
from pathlib import Path
from typing import IO, Any, Callable


def _umask() -> int:
    """The process umask (read once; setting it back at once is the only portable way to read it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()   # what open() would give: 0644 under the usual umask 022, not mkstemp's 0600


class DiskFull(OSError):
    """No space left (ENOSPC, EDQUOT) while writing a file: one line, "disk full writing <path>"."""

    def __init__(self, path: str | Path, errno_: int = errno.ENOSPC):
        super().__init__(f"disk full writing {path}")
        self.errno, self.path = errno_, str(path)


def write_failure(path: str | Path, e: OSError) -> OSError:
    """The error to raise (or report) for an OSError while writing ``path``: DiskFull when the disk is full."""
    if isinstance(e, DiskFull) or e.errno not in (errno.ENOSPC, errno.EDQUOT):
        return e
    return DiskFull(path, e.errno)


def write_atomic(path: str | Path, write: Callable[[IO], None], binary: bool = False) -> None:
    """Call ``write(fh)`` on a temp file beside ``path``, then rename it over ``path`` (parents created).
    The file gets the mode a plain open() would give (0644 under umask 022), so a web server can serve it.
    A full disk raises DiskFull naming ``path``; the old file is left as it was."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, FILE_MODE)
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="")) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        failure = write_failure(path, e) if isinstance(e, OSError) else e
        if failure is e:
            raise
        raise failure from e


def write_text_atomic(path: str | Path, text: str) -> None:
    """``text`` to ``path`` atomically; line endings are kept as given."""
    write_atomic(path, lambda fh: fh.write(text))


def write_json_atomic(path: str | Path, data: Any) -> None:
    """``data`` as indented JSON (no NaN or infinity) plus a newline, atomically."""
    def dump(fh: IO) -> None:
        json.dump(data, fh, indent=2, allow_nan=False)
        fh.write("\n")
    write_atomic(path, dump)


def read_json(path: str | Path) -> Any:
    """The parsed JSON of ``path`` (FileNotFoundError and json.JSONDecodeError pass through for the caller to word)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")


class UnsafePath(ValueError):
    """A name or a recorded path that would reach outside the folder it belongs to."""


def check_name(value: object, what: str) -> str:
    """``value`` if it can be one folder or file name (letters, digits, ``_ . + -``; not ``.``/``..``), else UnsafePath."""
    if not isinstance(value, str) or not _NAME.match(value) or value in (".", ".."):
        raise UnsafePath(f"{what} {value!r}: use one name of letters, digits, '_', '.', '+' or '-' "
                         f"(no '/', no '..', not absolute)")
    return value


def inside(folder: str | Path, rel: object, what: str = "path") -> Path:
    """``folder/rel`` when ``rel`` is a relative path that stays inside ``folder`` (symlinks resolved), else
    UnsafePath naming ``what``. Nothing needs to exist."""
    if not isinstance(rel, str) or not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise UnsafePath(f"{what} {rel!r} is not a relative path inside {folder}; the file that names it is "
                         f"damaged or was edited by hand")
    root = Path(folder).resolve()
    target = (root / rel).resolve()
    if target != root and root not in target.parents:
        raise UnsafePath(f"{what} {rel!r} leads out of {folder} (through a symlink to {target}); "
                         f"remove the link or copy the file into the folder")
    return root / rel
