"""The one exception type of upstream/: a single line that says what is wrong and which option fixes it."""
from __future__ import annotations


class UpstreamError(Exception):
    """A problem with the upstream source, its dependencies, its data or its run that the user can fix."""

    def __init__(self, message: str):
        super().__init__(one_line(message))


def one_line(text: str, limit: int = 400) -> str:
    """Collapse tool output (git's stderr, a traceback tail) into one line a person can read."""
    flat = " ".join(part.strip() for part in str(text).splitlines() if part.strip())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def last_line(text: str) -> str:
    """The last non-empty line of a tool's output: usually the one that names the failure."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
