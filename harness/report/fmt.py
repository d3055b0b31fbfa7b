"""Number formatting shared by every report format: one place decides how a value reads.

The context holds strings made here, so the HTML page and the Markdown file say exactly the same thing.
A value that was not measured is ``None`` and reads "n/a", never 0.

The one rule for repeated measurements (stated once in the report as ``MEAN_SD_RULE``): "mean ± SD (n)", the
SD to 2 significant figures in the mean's unit and the mean to the same decimal place (never more digits than
the metric's own precision). A table column or row has one unit, picked by ``unit_for`` from its largest value
(bytes: GiB, MiB or KiB; durations: always seconds; step times: ms/step), and its cells are plain numbers in it.
"""
from __future__ import annotations

import math

NA = "n/a"
MEAN_SD_RULE = ("Cells read mean ± SD (n): the mean over n measured runs (warm-up runs left out) ± one sample "
                "standard deviation, to 2 significant figures, in the row's unit.")
BYTE_UNITS = (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10))


def _finite(x) -> bool:
    return x is not None and not (isinstance(x, float) and not math.isfinite(x))


def num(x: float | int | None, digits: int = 4) -> str:
    """A float with ``digits`` significant digits, thousands separated when large."""
    if not _finite(x):
        return NA
    if isinstance(x, int) or (abs(x) >= 10 ** digits and float(x).is_integer()):
        return f"{int(x):,}"
    if abs(x) >= 10 ** (digits - 1):
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def fixed(x: float | None, places: int = 4) -> str:
    return NA if not _finite(x) else f"{x:.{places}f}"


def nbytes(x: float | int | None) -> str:
    """Bytes in binary units (GiB/MiB/KiB), for a lone figure; a column uses ``unit_for``."""
    if x is None:
        return NA
    for unit, size in BYTE_UNITS:
        if abs(x) >= size:
            return f"{x / size:.2f} {unit}"
    return f"{int(x)} B"


def seconds(x: float | None) -> str:
    """Seconds, always in seconds (a column never mixes minutes and seconds)."""
    return NA if not _finite(x) else f"{num(x)} s"


def percent(x: float | None, places: int = 1) -> str:
    return NA if x is None else f"{x:.{places}f} %"


def rel(x: float | None) -> str:
    """A relative difference that may be tiny: ``0`` only when exactly 0, else 2 significant figures
    (``3.1e-07``, ``0.0043``), so "0.00 %" never hides a real difference."""
    if x is None:
        return NA
    if x == 0:
        return "0"
    return f"{x:.2g}" if abs(x) >= 1e-3 else f"{x:.1e}"


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


# ---- one unit per column, mean ± SD (n) -------------------------------------------------------------------

def unit_for(kind: str, unit: str, values) -> tuple[str, float]:
    """(unit text, divisor) for a column or row of ``kind`` holding ``values``: bytes in the binary unit of the
    largest value, seconds in s, percent in %, everything else in the metric's own ``unit``."""
    if kind == "bytes":
        top = max((abs(v) for v in values if _finite(v)), default=0)
        return next(((name, size) for name, size in BYTE_UNITS if top >= size), ("B", 1))
    return {"seconds": ("s", 1), "percent": ("%", 1), "bpb": ("bits/byte", 1)}.get(kind, (unit, 1))


def _default_places(x: float, kind: str) -> int:
    """Decimal places a lone value of ``kind`` gets: 4 for BPB, else 4 significant figures."""
    if kind == "bpb":
        return 4
    if x == 0:
        return 0
    return max(0, 3 - math.floor(math.log10(abs(x))))


def plain(x: float | int | None, kind: str = "num", divisor: float = 1) -> str:
    """One value in a column's unit (``unit_for``): a plain number, thousands separated."""
    if not _finite(x):
        return NA
    v = x / divisor
    if isinstance(x, int) and divisor == 1:
        return f"{x:,}"
    return f"{v:,.{_default_places(v, kind)}f}"


def mean_sd(mean: float | None, sd: float | None, n: int | None = None, kind: str = "num",
            divisor: float = 1) -> str:
    """``5,217 ± 26 (3)``: mean ± SD (n) in the unit ``divisor`` gives, SD to 2 significant figures and the mean
    to the same place (at most the metric's own precision); a lone value reads ``5,217 (1)``, an SD of exactly 0 ``2.6083 ± 0 (3)``."""
    if not _finite(mean):
        return NA
    m = mean / divisor
    places = _default_places(m, kind)
    text = ""
    if _finite(sd) and sd > 0:
        s = sd / divisor
        sd_places = 1 - math.floor(math.log10(s))        # 2 significant figures
        places = min(places, max(0, sd_places))
        s_text = f"{s:.1e}" if sd_places > 6 else f"{round(s, sd_places):,.{max(0, sd_places)}f}"
        text = f" ± {s_text}"
    elif _finite(sd) and n is not None and n >= 2:
        text = " ± 0"   # measured repeats that agree exactly: say so, do not drop the SD
    shown = f"{m:,.{places}f}"
    return f"{shown}{text}" + (f" ({n})" if n is not None else "")


def mean_std(mean: float | None, std: float | None, unit: str = "", kind: str = "num") -> str:
    """``5,642 ± 0.53 tok/s``: ``mean_sd`` with its unit (bytes in binary units) and no n."""
    if mean is None:
        return NA
    name, divisor = unit_for(kind, unit, [mean])
    return f"{mean_sd(mean, std, None, kind, divisor)} {name}".rstrip()


def possessive(name: str) -> str:
    return f"{name}'" if name.endswith("s") else f"{name}'s"


def by_kind(x, kind: str) -> str:
    """One value of a metric of ``kind`` (harness/metrics.py) with its unit: a history or compare cell."""
    return {"num": num, "seconds": seconds, "bpb": fixed, "bytes": nbytes, "percent": percent}[kind](x)


def short_sha(sha: str | None, dirty: bool | None = None) -> str:
    if not sha:
        return NA
    return sha[:10] + ("-dirty" if dirty else "")
