"""Atomic file writes and JSON reads: readers see the old file or the whole new one, never a part.

Every layer writes through ``write_atomic`` (results, reports, events, checkpoints, tokenizer files, workspace
markers): a temp file in the same directory, flushed and fsynced, then renamed over the target.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable


def write_atomic(path: str | Path, write: Callable[[IO], None], binary: bool = False) -> None:
    """Call ``write(fh)`` on a temp file beside ``path``, then rename it over ``path`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="")) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
