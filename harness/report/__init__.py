"""Campaign reports: a self-contained HTML page and a GitHub-flavoured Markdown file rendered from one context.

load.py reads a finished campaign, context.py (with compare_view.py, parity_view.py, curves.py) computes the one
context dict, charts.py draws SVG with matplotlib, render.py fills the Jinja2 templates and writes the files.
Nothing here re-runs a training run. The `report` verb is harness/commands/report.py.

This package file imports nothing, so history and nightly can use small parts of it (identity, fmt) without
loading Jinja2 and matplotlib; import ``write_report`` from ``harness.report.render``.
"""
