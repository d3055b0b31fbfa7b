"""Rendering: the Jinja2 environment (StrictUndefined, HTML autoescaped), one render function per format, and
``write_report`` which reads a campaign, builds the one context and writes every format atomically.

Writing to an ``out_dir`` other than the campaign dir publishes the campaign there: the small raw files
(campaign.json, each run's result, log, events, telemetry; never checkpoints) are copied beside the report so
the published folder is itself a campaign dir and its raw-data links work wherever it is committed or served.
Copies name no private local path: a local upstream source (the --upstream path or $NANOCHAT_UPSTREAM) becomes
``<upstream source>`` and the home directory ``~``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import jinja2

from harness.report.context import build_context
from harness.report.load import load_campaign
from harness.report.markdown import md_block, md_cell, md_fence, md_text
from harness.results import HIDDEN_SOURCE, Campaign, result_file, run_file
from protocol.files import write_json_atomic, write_text_atomic

HTML_NAME, MD_NAME, JSON_NAME = "report.html", "report.md", "report.json"


@dataclass
class ReportFiles:
    html: Path
    markdown: Path
    summary: Path
    charts: list[Path]


def environment() -> jinja2.Environment:
    """Templates from harness/templates; a name ending in .html.j2 is autoescaped, an undefined name raises."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("harness", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=lambda name: bool(name) and name.endswith(".html.j2"),
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(md=md_text, md_block=md_block, md_cell=md_cell, md_fence=md_fence)
    return env


def render_html(context: dict) -> str:
    return environment().get_template("report.html.j2").render(context)


def render_markdown(context: dict) -> str:
    return environment().get_template("report.md.j2").render(context)


def write_report(campaign_dir: str | Path, out_dir: str | Path | None = None) -> ReportFiles:
    """Render the campaign's report into ``out_dir`` (default: the campaign dir) and return the paths written."""
    campaign_dir = Path(campaign_dir)
    out = Path(out_dir) if out_dir else campaign_dir
    if out.resolve() != campaign_dir.resolve():
        publish_raw(campaign_dir, out)
    context = build_context(load_campaign(out), out)
    charts = [_write_chart(out, c) for c in _all_charts(context)]
    for stale in set((out / "charts").glob("*.svg")) - set(charts):   # a chart this version no longer draws
        stale.unlink()
    write_text_atomic(out / MD_NAME, render_markdown(context))
    write_text_atomic(out / HTML_NAME, render_html(context))
    write_json_atomic(out / JSON_NAME, {**context["findings"], "report": HTML_NAME})
    return ReportFiles(out / HTML_NAME, out / MD_NAME, out / JSON_NAME, charts)


def _all_charts(context: dict) -> list[dict]:
    parity_chart = (context["parity"] or {}).get("chart")
    return context["charts"] + ([parity_chart] if parity_chart else [])


def _write_chart(out: Path, chart: dict) -> Path:
    path = out / chart["file"]
    write_text_atomic(path, chart["svg"])
    return path


RAW_FIELDS = ("log_path", "events_path", "telemetry_path")


def publish_raw(campaign_dir: Path, out: Path) -> None:
    """Copy campaign.json and each run's small raw files into ``out``, keeping their relative paths."""
    campaign = Campaign.load(campaign_dir)
    sources = [campaign_dir / "campaign.json"]
    for ref, result in zip([r for r in campaign.runs if r.result_path], campaign.results(campaign_dir)):
        sources.append(result_file(campaign_dir, ref))
        sources += [p for p in (run_file(campaign_dir, result, f) for f in RAW_FIELDS) if p is not None]
    hide = private_paths(campaign)
    root = campaign_dir.resolve()
    for src in sources:   # each checked to lie inside the campaign dir, so out / rel stays inside out
        if src.is_file():
            rel = src.resolve().relative_to(root)
            write_text_atomic(out / rel, scrub(src.read_text(encoding="utf-8", errors="replace"), hide))


def private_paths(campaign: Campaign) -> dict[str, str]:
    """Local paths a published copy must not show, longest first, with what replaces each."""
    sources = [cfg.get("source") for cfg in (getattr(campaign, "arms", None) or {}).values()]
    sources.append(os.environ.get("NANOCHAT_UPSTREAM"))
    hide = {str(Path(s).resolve()): HIDDEN_SOURCE for s in sources if s and "://" not in s and Path(s).exists()}
    hide.update({s: HIDDEN_SOURCE for s in sources if s and "://" not in s and s != HIDDEN_SOURCE})
    hide[str(Path.home())] = "~"
    return dict(sorted(hide.items(), key=lambda kv: -len(kv[0])))


def scrub(text: str, hide: dict[str, str]) -> str:
    for path, placeholder in hide.items():
        if len(path) > 1:  # never replace "/" itself
            text = text.replace(path, placeholder)
    return text
