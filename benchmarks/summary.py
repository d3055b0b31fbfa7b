"""The side-by-side table printed at the end of ``make microbench``: one row per component, ours next to upstream.

Each cell is the mean time per call and the calls per second (batches/s for the data loader); the last column is
ours/upstream of the mean time, so below 1 means ours is faster. A side that did not run shows "-".
"""
from __future__ import annotations

from dataclasses import dataclass

SIDES = ("ours", "upstream")


@dataclass(frozen=True)
class Timing:
    group: str        # the component (pytest-benchmark group)
    side: str         # "ours" or "upstream"
    mean_s: float
    stddev_s: float
    rounds: int


def format_seconds(s: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"


def _cell(t: Timing | None) -> str:
    if t is None:
        return "-"
    rate = 1.0 / t.mean_s if t.mean_s > 0 else float("inf")
    return f"{format_seconds(t.mean_s)} ±{format_seconds(t.stddev_s)} ({rate:,.1f}/s)"


def _ratio(row: dict[str, Timing]) -> str:
    if not all(side in row for side in SIDES) or row["upstream"].mean_s <= 0:
        return "-"
    return f"{row['ours'].mean_s / row['upstream'].mean_s:.2f}x"


def side_by_side(timings: list[Timing]) -> str:
    """A fixed-width text table, components in the order they first ran."""
    rows: dict[str, dict[str, Timing]] = {}
    for t in timings:
        rows.setdefault(t.group, {})[t.side] = t
    header = ["component", "ours (mean, calls/s)", "upstream (mean, calls/s)", "ours/upstream"]
    body = [[group, _cell(row.get("ours")), _cell(row.get("upstream")), _ratio(row)] for group, row in rows.items()]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
