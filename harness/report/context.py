"""The report context: ONE dict computed in Python from a campaign's results; every template only lays it out.

All numbers are formatted here (harness.report.fmt), so the HTML page and the Markdown file read the same.
Tables are ``{"header": [...], "rows": [[...], ...]}``. Every key is always present (None or [] when there
is nothing to show) because the templates use StrictUndefined: a key missing here fails the render loudly.
"""
from __future__ import annotations

import os
from pathlib import Path

from harness import metrics as metric_registry
from harness.comparison import Comparison, ComparisonFormatError
from harness.report import fmt
from harness.report.compare_view import metric_tables
from harness.report.curves import curves, run_label
from harness.report.load import CampaignData, ReportInputError, RunData, need
from harness.report.markdown import href
from harness.report.identity import campaign_facts, preset_label
from harness.report.parity_view import parity_section
from harness.report.verdict import verdict_section

LOG_TAIL_LINES = 40


def build_context(data: CampaignData, out_dir: str | Path | None = None) -> dict:
    """Everything the report shows; links are relative to ``out_dir`` (default: the campaign dir)."""
    out_dir = Path(out_dir or data.campaign_dir)
    charts, missing = curves(data)
    comparison = stored_comparison(data)
    return {
        "title": f"nanochat-bench: {preset_label(data.campaign.preset, data.campaign.budget)} campaign "
                 f"{data.campaign.campaign_id}",
        "campaign": _campaign(data),
        "verdict": verdict_section(comparison, data),
        "mean_sd_rule": fmt.MEAN_SD_RULE,
        "budget": _budget(data),
        "audit": _audit(data),
        "environment": _environment(data),
        "runs": _runs_table(data),
        **metric_tables(comparison, data),
        "eval_memory": _eval_memory(data),
        "charts": charts,
        "charts_missing": missing,
        "parity": parity_section(comparison.parity if comparison else None),
        "failed": _failed(data),
        "links": _links(data, out_dir),
    }


def stored_comparison(data: CampaignData) -> Comparison | None:
    """The campaign's Comparison as campaign.json holds it (None: not compared); a one-line error if unreadable."""
    if not data.campaign.comparison:
        return None
    try:
        return Comparison.from_dict(data.campaign.comparison)
    except ComparisonFormatError as e:
        raise ReportInputError(str(e)) from None


def _campaign(data: CampaignData) -> dict:
    c = data.campaign
    results = [r.result for r in data.runs]
    return {
        **campaign_facts(c, results), "finished": c.finished_utc or fmt.NA,
        "planned": len(c.runs), "ok": sum(r.ok for r in results),
        "not_ok": sum(not r.ok for r in results), "notes": list(c.notes),
    }


def _budget(data: CampaignData) -> dict:
    rows = [[key, _plain(value)] for key, value in sorted(data.campaign.budget.items())]
    return {"header": ["setting", "value"], "rows": rows}


def _plain(value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return fmt.NA if value is None else str(value)


def _audit(data: CampaignData) -> dict:
    """The cross-arm budget audit from the comparison; without one, each run's own audit notes."""
    audit = (data.campaign.comparison or {}).get("audit")  # the raw dict: the audit keeps its own shape
    if audit is None:
        own = [f"{run.result.run_id}: {note}" for run in data.runs for note in run.result.audit]
        return {"matched": None, "mismatches": own, "unverified": [], "checks": []}
    where = "campaign.json comparison.audit"
    return {"matched": need(audit, "matched", where), "mismatches": list(need(audit, "mismatches", where)),
            "unverified": list(audit.get("unverified") or []), "checks": list(audit.get("checks") or [])}


_ENV_FIELDS = [
    ("our commit", lambda p: fmt.short_sha(p.ours_sha, p.ours_dirty)),
    ("upstream commit", lambda p: fmt.short_sha(p.upstream_sha, None if p.upstream_clean is None
                                                else not p.upstream_clean)),
    ("upstream ref", lambda p: fmt.short_sha(p.upstream_ref) if _is_sha(p.upstream_ref) else p.upstream_ref or fmt.NA),
    ("python", lambda p: p.python or fmt.NA), ("torch", lambda p: p.torch or fmt.NA),
    ("CUDA", lambda p: p.cuda or fmt.NA), ("driver", lambda p: p.driver or fmt.NA),
    ("GPU", lambda p: f"{p.gpu_name} ×{p.gpu_count or 1}" if p.gpu_name else fmt.NA),
    ("CPU", lambda p: f"{p.cpu_model or fmt.NA} ({p.cpu_count or '?'} CPUs)"),
    ("host", lambda p: p.hostname or fmt.NA),
    ("started (UTC)", lambda p: p.utc_started or fmt.NA),
    ("packages", lambda p: ", ".join(f"{k} {v}" for k, v in sorted(p.packages.items())) or fmt.NA),
]
_DATA_FIELDS = [("dataset", "dataset"), ("vocab size", "vocab_size"), ("shards sha256", "shards_sha256"),
                ("tokenizer sha256", "tokenizer_sha256")]


def _environment(data: CampaignData) -> dict:
    """Provenance per implementation; runs of one arm that disagree show every distinct value."""
    impls = _implementations(data)
    rows = [[name] + [_distinct(data, impl, lambda r: get(r.provenance)) for impl in impls]
            for name, get in _ENV_FIELDS]
    rows += [[name] + [_distinct(data, impl, lambda r: _short(getattr(r.data, key))) for impl in impls]
             for name, key in _DATA_FIELDS]
    return {"header": ["", *impls], "rows": rows}


def _is_sha(ref: str | None) -> bool:
    return bool(ref) and len(ref) == 40 and all(c in "0123456789abcdef" for c in ref)


def _short(value) -> str:
    if isinstance(value, str) and len(value) == 64:
        return value[:16] + "…"
    return fmt.NA if value is None else str(value)


def _implementations(data: CampaignData) -> list[str]:
    seen: list[str] = []
    for run in data.runs:
        if run.result.implementation not in seen:
            seen.append(run.result.implementation)
    return seen


def _distinct(data: CampaignData, impl: str, get) -> str:
    values: list[str] = []
    for run in data.runs:
        if run.result.implementation == impl and get(run.result) not in values:
            values.append(get(run.result))
    return " / ".join(values) or fmt.NA


RUN_TABLES = (("throughput", "Speed"), ("memory", "Memory"), ("quality", "Quality"), ("energy", "Energy and MFU"))


def _runs_table(data: CampaignData) -> dict:
    """Every run in execution order, split so no table overflows: who each run is (arm, phase, seed, status,
    steps, tokens), then one table per metric section (harness/metrics.py; a metric of no section goes with
    speed), each column in one unit named in its header."""
    identity = {"title": "Identity and status", "header": ["run", "implementation", "phase", "seed", "repeat", "status", "steps",
                                            "tokens"],
                "rows": [[r.result.run_id, r.result.implementation, "measured" if r.result.measured else "warm-up",
                          str(r.result.seed), str(r.result.repeat), r.result.status, fmt.num(r.result.summary.steps),
                          fmt.num(r.result.summary.tokens)] for r in data.runs]}
    tables = [identity]
    for section, title in RUN_TABLES:
        # per-target metrics are relative to the campaign's target BPB: rows of the quality table instead
        metrics = [m for m in metric_registry.all_metrics() if not m.per_target
                   and (m.section == section or (m.section is None and section == "throughput"))]
        if metrics:
            tables.append(_metric_columns(data, title, metrics))
    skips = sorted({r.result.summary.steady_state_skip for r in data.runs} - {None})
    note = (f"steps/s and tokens/s come from the steady-state steps (their mean step time; campaigns before "
            f"lock-step rounds used the median step): the first {' / '.join(map(str, skips))} step(s) of each run "
            f"and any step sharing an eval are left out") if skips else None
    return {"tables": tables, "note": note}


def _metric_columns(data: CampaignData, title: str, metrics: list) -> dict:
    header, columns = ["run"], []
    for m in metrics:
        values = [m.value(r.result) for r in data.runs]
        unit, divisor = fmt.unit_for(m.kind, m.shown_unit or m.unit, values)
        header.append(f"{m.label} ({unit})" if unit else m.label)
        columns.append([fmt.plain(v, m.kind, divisor) for v in values])
    rows = [[run.result.run_id, *cells] for run, cells in zip(data.runs, zip(*columns))]
    return {"title": title, "header": header, "rows": rows}


def _eval_memory(data: CampaignData) -> dict:
    """Memory at each eval, one row per run and one column per eval step (host RSS, then GPU if measured);
    a run whose memory grows from eval to eval is named in ``grows``."""
    steps = sorted({m.step for r in data.runs for m in r.result.summary.eval_memory})
    rows = []
    for run in data.runs:
        at = {m.step: m for m in run.result.summary.eval_memory}
        if at:
            rows.append([run_label(run)] + [_eval_cell(at.get(step)) for step in steps])
    grows = [run_label(r) for r in data.runs if r.result.summary.memory_grows]
    return {"header": ["run"] + [f"step {s}" for s in steps], "rows": rows, "grows": grows,
            "note": "host RSS of the process tree, then GPU memory where measured"}


def _eval_cell(m) -> str:
    if m is None:
        return fmt.NA
    return fmt.nbytes(m.rss_bytes) + (f" / {fmt.nbytes(m.gpu_bytes)}" if m.gpu_bytes is not None else "")


def _failed(data: CampaignData) -> list[dict]:
    out = []
    for run in data.runs:
        r = run.result
        if r.ok:
            continue
        tail = (r.log_tail or "").splitlines()[-LOG_TAIL_LINES:]
        out.append({"run": r.run_id, "label": run_label(run), "status": r.status,
                    "error": r.error or fmt.NA, "log_tail": "\n".join(tail) or "(no log captured)"})
    return out


def _links(data: CampaignData, out_dir: Path) -> dict:
    """Raw data of every run, as paths relative to where the report is written."""
    runs = [{"label": run.result.run_id, "files": _run_files(data, run, out_dir)} for run in data.runs]
    return {"campaign": _rel(data.campaign_dir / "campaign.json", out_dir), "runs": runs}


def _run_files(data: CampaignData, run: RunData, out_dir: Path) -> list[dict]:
    r = run.result
    ref = next(c.result_path for c in data.campaign.runs if c.run_id == r.run_id)
    named = [("result", ref), ("log", r.log_path), ("events", r.events_path), ("telemetry", r.telemetry_path)]
    return [{"label": label, "href": _rel(data.campaign_dir / path, out_dir)}
            for label, path in named if path and (data.campaign_dir / path).is_file()]


def _rel(path: Path, out_dir: Path) -> str:
    """A link target relative to the report, percent-encoded (harness/report/markdown.py ``href``)."""
    return href(Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix())
