"""Number formatting shared by every report format: one place decides how a value reads.

The context holds strings made here, so the HTML page and the Markdown file say exactly the same thing.
A value that was not measured is ``None`` and reads "n/a", never 0.
"""
from __future__ import annotations

import math

NA = "n/a"


def num(x: float | int | None, digits: int = 4) -> str:
    """A float with ``digits`` significant digits, thousands separated when large."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return NA
    if isinstance(x, int) or (abs(x) >= 10 ** digits and float(x).is_integer()):
        return f"{int(x):,}"
    if abs(x) >= 10 ** (digits - 1):
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def fixed(x: float | None, places: int = 4) -> str:
    return NA if x is None else f"{x:.{places}f}"


def nbytes(x: float | int | None) -> str:
    """Bytes in binary units (GiB/MiB/KiB): memory figures in the report."""
    if x is None:
        return NA
    for unit, size in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if abs(x) >= size:
            return f"{x / size:.2f} {unit}"
    return f"{int(x)} B"


def seconds(x: float | None) -> str:
    if x is None:
        return NA
    if x >= 120:
        return f"{x / 60:.1f} min"
    return f"{x:.2f} s"


def percent(x: float | None, places: int = 1) -> str:
    return NA if x is None else f"{x:.{places}f} %"


def ratio(r: float | None, ci: list | tuple | None = None) -> str:
    """``1.032× [0.998, 1.065]``: a ratio with its 95 % confidence interval when there is one."""
    if r is None:
        return NA
    text = f"{r:.3f}×"
    if ci and ci[0] is not None and ci[1] is not None:
        text += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    return text


def ratio_interval(r: float | None, ci: list | None = None, rng: list | None = None, n: int | None = None) -> str:
    """``1.032× [0.998, 1.065]`` with a 95 % CI, ``1.032× [0.990, 1.070] (range, n=2)`` with too few repeats for
    one: a range of observed ratios is never shown as a CI."""
    if r is None:
        return NA
    if ci:
        return ratio(r, ci)
    if rng and rng[0] is not None and rng[1] is not None:
        return f"{r:.3f}× [{rng[0]:.3f}, {rng[1]:.3f}] (range, n={n or 2})"
    return ratio(r)


def mean_std(mean: float | None, std: float | None, unit: str = "", kind: str = "num") -> str:
    """``5,123 ± 42 tok/s``; memory values use binary units."""
    if mean is None:
        return NA
    show = nbytes if kind == "bytes" else num
    text = show(mean)
    if std is not None and std > 0:
        text += f" ± {show(std)}"
    return f"{text} {unit}".rstrip()


def possessive(name: str) -> str:
    return f"{name}'" if name.endswith("s") else f"{name}'s"


def by_kind(x, kind: str) -> str:
    """One value of a metric of ``kind`` (harness/metrics.py): how a runs-table or history cell reads."""
    return {"num": num, "seconds": seconds, "bpb": fixed, "bytes": nbytes, "percent": percent}[kind](x)


def short_sha(sha: str | None, dirty: bool | None = None) -> str:
    if not sha:
        return NA
    return sha[:10] + ("-dirty" if dirty else "")
