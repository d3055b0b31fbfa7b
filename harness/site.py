"""The static site: ``reports/index.html`` lists every published campaign with its verdict and links, plus trend
charts per preset; ``serve`` previews the folder on localhost.

A published campaign is a folder ``reports/<campaign_id>/`` holding report.html, report.md, report.json and the
raw files (written by ``nanochat-bench report CAMPAIGN --out reports/<campaign_id>``). Trends come from the
history module: the published campaigns are recorded into an in-memory history, together with the campaigns of
a history database when one is given, so the page shows every point either source knows.
"""
from __future__ import annotations

import functools
import hashlib
import http.server
from pathlib import Path

from harness import metrics as metric_registry
from harness.history import History, HistoryError
from harness.metrics import Metric
from harness.report import findings as findings_record
from harness.report import fmt
from harness.report.charts import Series, line_chart
from harness.report.render import environment
from harness.results import SchemaError
from protocol.files import write_text_atomic

INDEX = "index.html"


def published(reports_dir: Path) -> list[dict]:
    """The findings of every published campaign, newest first, each with its folder name."""
    rows = []
    for path in Path(reports_dir).glob("*/report.json"):
        rows.append({**findings_record.cells(findings_record.read(path)), "folder": path.parent.name})
    return sorted(rows, key=lambda f: (f.get("created") or "", f["campaign_id"]), reverse=True)


def trend_history(reports_dir: Path, db_path: Path | None) -> History:
    """An in-memory history of the published campaigns plus, if it exists, the database at ``db_path``."""
    h = History(":memory:")
    for path in sorted(Path(reports_dir).glob("*/campaign.json")):
        try:
            h.record_campaign(path.parent)
        except (HistoryError, SchemaError):
            continue  # a folder without results (or of another schema) has no trend point to give
    if db_path and Path(db_path).is_file():
        _merge(h, Path(db_path))
    return h


def _merge(h: History, db_path: Path) -> None:
    h.db.execute("ATTACH DATABASE ? AS other", (str(db_path),))
    with h.db:
        for table in ("campaigns", "runs", "metrics"):
            h.db.execute(f"INSERT OR IGNORE INTO {table} SELECT * FROM other.{table}")
    h.db.execute("DETACH DATABASE other")


MIN_TREND_CAMPAIGNS = 2   # one campaign is a point, not a trend


def trend_charts(h: History) -> list[dict]:
    """For each preset and machine with at least two campaigns, one chart per trend metric: campaign medians per
    implementation over time."""
    charts = []
    for preset, machine in _series_keys(h, lambda n: n >= MIN_TREND_CAMPAIGNS):
        for metric in metric_registry.tracked("trend"):
            chart = _trend_chart(h, preset, machine, metric)
            if chart:
                charts.append(chart)
    return charts


def lone_series(h: History) -> list[str]:
    """``preset on machine`` for each series with one campaign so far (no trend chart yet)."""
    return [f"{preset} on {machine}" for preset, machine in _series_keys(h, lambda n: n < MIN_TREND_CAMPAIGNS)]


def _series_keys(h: History, keep) -> list[tuple[str, str]]:
    campaigns: dict[tuple[str, str], set[str]] = {}
    for p in h.points():
        campaigns.setdefault((p.preset, p.machine), set()).add(p.campaign_id)
    return sorted(k for k, ids in campaigns.items() if keep(len(ids)))


def _trend_chart(h: History, preset: str, machine: str, metric: Metric) -> dict | None:
    """Campaign medians per implementation, oldest campaign first; the x axis names each campaign by its date and
    our commit (one tick per campaign, never a fractional one)."""
    points = h.points(preset=preset, machine=machine, metric=metric.name)
    order = list(dict.fromkeys(p.campaign_id for p in points))
    ticks = {p.campaign_id: campaign_tick(p.created_utc, p.ours_sha) for p in points}
    unit, scale = fmt.unit_for(metric.kind, metric.shown_unit or metric.unit, [p.value for p in points])
    ylabel = f"{metric.label} ({unit})" if unit else metric.label
    series = {}
    for p in points:
        s = series.setdefault(p.implementation, Series(label=p.implementation, group=p.implementation))
        s.x.append(order.index(p.campaign_id))
        s.y.append(p.value / scale)
    name = "trend-" + hashlib.sha256(f"{preset}|{machine}|{metric.name}".encode()).hexdigest()[:12]
    title = f"{preset}: {metric.label}"
    svg = line_chart(name, title, "campaign (date UTC, our commit)", ylabel, list(series.values()),
                     xticklabels=[ticks[c] for c in order], size=(5.0, 3.4))
    return svg and {"name": name, "title": title, "svg": svg, "preset": preset, "machine": machine}


def campaign_tick(created_utc: str | None, ours_sha: str | None) -> str:
    """``2026-12-02 5cbd2cd``: a campaign as an x tick of a trend chart."""
    return f"{(created_utc or '?')[:10]} {(ours_sha or '')[:7]}".strip()


def build_index(reports_dir: str | Path, db_path: str | Path | None = None) -> Path:
    """Write ``reports_dir/index.html`` and return its path."""
    reports_dir = Path(reports_dir)
    if not reports_dir.is_dir():
        raise FileNotFoundError(f"{reports_dir}: no such reports folder; publish a report first "
                                f"(nanochat-bench report CAMPAIGN --out {reports_dir}/ID)")
    with trend_history(reports_dir, Path(db_path) if db_path else None) as h:
        charts, lone = trend_charts(h), lone_series(h)
    html = environment().get_template("index.html.j2").render(campaigns=published(reports_dir), trends=charts,
                                                             lone=lone)
    write_text_atomic(reports_dir / INDEX, html)
    return reports_dir / INDEX


def serve(reports_dir: str | Path, port: int = 8000, host: str = "127.0.0.1",
          db_path: str | Path | None = None) -> http.server.ThreadingHTTPServer:
    """A local HTTP server for ``reports_dir`` (index rebuilt first); call serve_forever() on it."""
    build_index(reports_dir, db_path)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(reports_dir))
    return http.server.ThreadingHTTPServer((host, port), handler)
