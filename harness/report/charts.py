"""Charts as SVG text, drawn by matplotlib (Agg, no display): the report inlines them so it works offline.

Each chart is a pure function of its series. Output is deterministic (no date stamp, element ids salted by the
chart's name) so re-rendering the same results gives the same bytes, and two charts on one page never share ids.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")  # before any figure: no display on servers and CI
from matplotlib.backends.backend_svg import FigureCanvasSVG  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

# one colour per implementation; repeats of an arm share its colour and differ in line style
COLOURS = {"ours": "#1f77b4", "upstream": "#d62728"}
OTHER_COLOURS = ["#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
LINESTYLES = ["-", "--", ":", "-."]


@dataclass
class Series:
    """One line: ``group`` picks the colour (the implementation), ``label`` goes in the legend."""
    label: str
    group: str
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)


def line_chart(name: str, title: str, xlabel: str, ylabel: str, series: list[Series], logy: bool = False,
               hlines: dict[str, float] | None = None, integer_x: bool = False,
               size: tuple[float, float] = (7.0, 3.6)) -> str | None:
    """An SVG line chart of ``series``; None when no series has a point (the caller says "no data")."""
    drawn = [s for s in series if s.x and len(s.x) == len(s.y)]
    if not drawn:
        return None
    fig = Figure(figsize=size, dpi=100)
    ax = fig.add_subplot()
    _plot_series(ax, drawn, logy)
    if integer_x:  # campaign ordinals: whole numbers, with room around a lone point
        xs = [x for s in drawn for x in s.x]
        ax.set_xlim(min(xs) - 0.5, max(xs) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for text, value in (hlines or {}).items():
        ax.axhline(value, color="#555555", linewidth=0.8, linestyle=":", label=_plain(text))
    ax.set(title=_plain(title), xlabel=_plain(xlabel), ylabel=_plain(ylabel))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    fig.tight_layout()
    return _to_svg(fig, name)


def _plot_series(ax, series: list[Series], logy: bool) -> None:
    seen: dict[str, int] = {}
    for s in series:
        n = seen.get(s.group, 0)
        seen[s.group] = n + 1
        marker = "o" if len(s.x) <= 12 else None  # few points (evals): show them
        ax.plot(s.x, s.y, color=_colour(s.group, list(seen)), linestyle=LINESTYLES[n % len(LINESTYLES)],
                linewidth=1.4, marker=marker, markersize=3.5, label=_plain(s.label))
    if logy:
        ax.set_yscale("log")
    else:
        ax.ticklabel_format(axis="y", useOffset=False)  # "+2.608" offsets hide the values people read


def _colour(group: str, order: list[str]) -> str:
    if group in COLOURS:
        return COLOURS[group]
    others = [g for g in order if g not in COLOURS]
    return OTHER_COLOURS[others.index(group) % len(OTHER_COLOURS)]


def _plain(text: str) -> str:
    """Text as written: a ``$`` in an arm's name must not start matplotlib's mathtext (or fail to parse as it)."""
    return str(text).replace("$", r"\$")


def _to_svg(fig: Figure, name: str) -> str:
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": name, "svg.fonttype": "none"}):
        FigureCanvasSVG(fig).print_svg(buf, metadata={"Date": None})
    return _inline(buf.getvalue(), name)


def _inline(svg: str, name: str) -> str:
    """Drop the XML prolog and DOCTYPE (not allowed inside HTML) and prefix every element id with the chart's
    name: matplotlib numbers its groups figure_1, axes_1… in every figure, and ids must be unique on a page."""
    svg = re.sub(r"<\?xml[^>]*\?>\s*", "", svg)
    svg = re.sub(r"<!DOCTYPE[^>]*>\s*", "", svg, flags=re.S)
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{name}-\1"', svg)
    svg = re.sub(r'href="#([^"]+)"', rf'href="#{name}-\1"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", rf"url(#{name}-\1)", svg)
    return svg.strip() + "\n"
