"""Campaign reports: a self-contained HTML page and a GitHub-flavoured Markdown file rendered from one context.

load.py reads a finished campaign, context.py (with compare_view.py, parity_view.py, curves.py) computes the one
context dict, charts.py draws SVG with matplotlib, render.py fills the Jinja2 templates and writes the files,
verb.py is the `report` CLI verb. Nothing here re-runs a training run.

Names are imported lazily: the history and nightly modules use small parts of this package (identity, fmt)
without loading Jinja2 and matplotlib.
"""
from __future__ import annotations

__all__ = ["ReportFiles", "write_report", "VERB"]


def __getattr__(name: str):
    if name in ("ReportFiles", "write_report"):
        from harness.report import render
        return getattr(render, name)
    if name == "VERB":
        from harness.report.verb import VERB
        return VERB
    raise AttributeError(f"module 'harness.report' has no attribute {name!r}")
