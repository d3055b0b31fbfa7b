"""Campaign reports: a self-contained HTML page and a GitHub-flavoured Markdown file rendered from one context.

load.py reads a finished campaign, context.py (with compare_view.py, parity_view.py, curves.py) computes the one
context dict, charts.py draws SVG with matplotlib, render.py fills the Jinja2 templates and writes the files.
Nothing here re-runs a training run.
"""
from harness.report.render import ReportFiles, write_report

__all__ = ["ReportFiles", "write_report"]
