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

# one colour, line style and marker per implementation, so overlapping arms stay apart; repeats of an arm share
# them (the legend names the arm once, with its number of runs)
COLOURS = {"ours": "#1f77b4", "upstream": "#d62728"}
OTHER_COLOURS = ["#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
LINESTYLES = {"ours": "-", "upstream": "--"}
OTHER_LINESTYLES = [":", "-.", "-", "--"]
MARKERS = {"ours": "o", "upstream": "s"}
OTHER_MARKERS = ["^", "D", "v", "x", "+"]
MARKS_PER_LINE = 10   # markers on a long line: enough to tell the arms apart, few enough to see the line


@dataclass
class Series:
    """One line: ``group`` picks colour, line style and marker (the implementation), ``label`` the legend text."""
    label: str
    group: str
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)


def line_chart(name: str, title: str, xlabel: str, ylabel: str, series: list[Series], logy: bool = False,
               hlines: dict[str, float] | None = None, xticklabels: list[str] | None = None,
               ylim: tuple[float, float] | None = None, size: tuple[float, float] = (7.0, 3.6)) -> str | None:
    """An SVG line chart of ``series``; None when no series has a point (the caller says "no data").
    ``xticklabels``: x values are 0, 1, 2… and these are their labels (dates, commits): no fractional ticks."""
    drawn = [s for s in series if s.x and len(s.x) == len(s.y)]
    if not drawn:
        return None
    fig = Figure(figsize=size, dpi=100)
    ax = fig.add_subplot()
    _plot_series(ax, drawn, logy)
    if xticklabels is not None:
        ax.set_xticks(range(len(xticklabels)), xticklabels, rotation=20, ha="right", fontsize="small")
        ax.set_xlim(-0.5, len(xticklabels) - 0.5)
    if ylim is not None:
        ax.set_ylim(*ylim)
    for text, value in (hlines or {}).items():
        ax.axhline(value, color="#555555", linewidth=0.8, linestyle=":", label=_plain(text))
    ax.set(title=_plain(title), xlabel=_plain(xlabel), ylabel=_plain(ylabel))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    fig.tight_layout()
    return _to_svg(fig, name)


def panels_chart(name: str, title: str, xlabel: str, panels: list[tuple[str, list[Series]]],
                 size: tuple[float, float] = (7.0, 4.2)) -> str | None:
    """Stacked panels sharing the x axis, one y axis (with its own unit) per panel, a zero line in each: the
    difference panel. None when no panel has a point."""
    panels = [(ylabel, [s for s in series if s.x and len(s.x) == len(s.y)]) for ylabel, series in panels]
    panels = [(ylabel, series) for ylabel, series in panels if series]
    if not panels:
        return None
    fig = Figure(figsize=size, dpi=100)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (ylabel, series) in zip(axes, panels):
        ax.axhline(0, color="#555555", linewidth=0.8, linestyle=":")
        _plot_series(ax, series, logy=False)
        ax.set_ylabel(ylabel, fontsize="small")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4), useOffset=False)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", loc="best")
    axes[0].set_title(title, fontsize="medium")
    axes[-1].set_xlabel(xlabel)
    fig.tight_layout()
    return _to_svg(fig, name)


def box_chart(name: str, title: str, ylabel: str, groups: dict[str, list[float]],
              size: tuple[float, float] = (7.0, 3.6)) -> str | None:
    """Box plots side by side, one per group (median, quartiles, whiskers at 1.5 IQR, outliers as points), each
    labelled with its number of values; None when no group has a value."""
    shown = {g: v for g, v in groups.items() if v}
    if not shown:
        return None
    fig = Figure(figsize=size, dpi=100)
    ax = fig.add_subplot()
    order = list(shown)
    box = ax.boxplot(list(shown.values()), orientation="horizontal", widths=0.5, patch_artist=True,
                     flierprops={"marker": ".", "markersize": 4})
    ax.set_yticks(range(1, len(order) + 1), [f"{g}\n(n={len(shown[g])})" for g in order])
    for patch, group in zip(box["boxes"], order):
        colour = _colour(group, order)
        patch.set(facecolor=colour + "40", edgecolor=colour, hatch="//" if group == "upstream" else None)
    ax.set(title=title, xlabel=ylabel)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return _to_svg(fig, name)


def _plot_series(ax, series: list[Series], logy: bool) -> None:
    order = list(dict.fromkeys(s.group for s in series))
    count = {g: sum(s.group == g for s in series) for g in order}
    labelled: set[str] = set()
    for s in series:
        few = len(s.x) <= 12   # few points (evals): mark each one
        label = s.label if count[s.group] == 1 else (None if s.group in labelled else f"{s.group} ({count[s.group]} runs)")
        labelled.add(s.group)
        ax.plot(s.x, s.y, color=_colour(s.group, order), linestyle=_style(s.group, order, LINESTYLES, OTHER_LINESTYLES),
                linewidth=1.3, marker=_style(s.group, order, MARKERS, OTHER_MARKERS), markersize=4 if few else 3.5,
                markevery=None if few else max(1, len(s.x) // MARKS_PER_LINE), fillstyle="none",
                alpha=0.9, label=_plain(label) if label else None)
    if logy:
        ax.set_yscale("log")
    else:
        ax.ticklabel_format(axis="y", useOffset=False)  # "+2.608" offsets hide the values people read


def _style(group: str, order: list[str], known: dict, others: list):
    if group in known:
        return known[group]
    rest = [g for g in order if g not in known]
    return others[rest.index(group) % len(others)]


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
