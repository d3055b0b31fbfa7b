"""The metric tables, from the campaign's Comparison (harness/comparison.py) and the runs (the verdict block
that reads them is harness/report/verdict.py).

One table per section of harness/metrics.py, one row per metric of that section, in registry order, each row in
one unit (its own column). Per-arm values ("mean ± SD (n)" over measured ok runs: harness/report/fmt.py) are
computed here from the RunResults with harness.stats.describe, so every table has them even for a metric the comparison does not cover; the ratio ours ÷ upstream, its 95 % CI (or
the range of observed ratios, marked so, below three repeats) and the verdict in words ("statistically
significant", "beyond/within the practical threshold", "inconclusive") come from the comparison.
"""
from __future__ import annotations

from harness import metrics as metric_registry
from harness.adapters import registry as arms_registry
from harness.metrics import Metric
from harness.report import findings as findings_record
from harness.report import fmt
from harness.comparison import Comparison, MetricComparison
from harness.report.load import CampaignData
from harness.stats import describe, judgement


def arms(comparison: Comparison | None, data: CampaignData | None = None) -> tuple[str, str]:
    """(baseline, candidate): the comparison's; without one, the two roles (else the arms in run order)."""
    if comparison:
        return comparison.baseline or arms_registry.BASELINE, comparison.candidate or "(none)"
    impls = list(dict.fromkeys(r.result.implementation for r in (data.runs if data else [])))
    base = arms_registry.BASELINE if arms_registry.BASELINE in impls or not impls else impls[0]
    others = [i for i in impls if i != base]
    return base, arms_registry.CANDIDATE if arms_registry.CANDIDATE in others or not others else others[0]


def metric_tables(comparison: Comparison | None, data: CampaignData) -> dict:
    """``{"throughput": table, "memory": table, "energy": table, "quality": table, "findings": {...}}``."""
    base, cand = arms(comparison, data)
    header = ["metric", "unit", f"{base} (baseline)", f"{cand} (candidate)",
              f"{cand} ÷ {base} [95 % CI or range]", "verdict"]
    out = {}
    for section in metric_registry.SECTIONS:
        rows = [_row(comparison, data, m, base, cand) for m in metric_registry.in_section(section)
                if not (m.per_target and not (comparison and comparison.targets))]   # no target: no such rows
        unmeasured = [r[0] for r in rows if r[2] == r[3] == fmt.NA]   # neither arm measured it on this machine
        notes = _notes(section, comparison, data)
        if unmeasured:
            notes.append(f"Not measured on this machine by either arm: {', '.join(unmeasured)}.")
            rows = [r for r in rows if r[0] not in unmeasured]
        reasons = sorted({m.reason for m in (_metric(comparison, r.name) for r in metric_registry.in_section(section))
                          if m and m.verdict is None and m.interval is None and m.reason} -
                         {None})
        notes += [f"no verdict: {reason}" for reason in reasons if not reason.startswith("not measured")]
        out[section] = {"header": header, "rows": rows, "notes": notes}
    out["findings"] = findings(comparison, data)
    return out


def _values(data: CampaignData, impl: str, metric: Metric, targets: dict | None = None) -> list:
    # measured repeats only: a warm-up run is recorded but is not a measurement
    return [metric.value(r.result, targets) for r in data.runs
            if r.result.ok and r.result.measured and r.result.implementation == impl]


def _row(comparison: Comparison | None, data, metric: Metric, base, cand) -> list[str]:
    m = _metric(comparison, metric.name)
    ratio = fmt.ratio_interval(m.ratio, m.ci95, m.range, m.n_pairs) if m else fmt.NA
    targets = ((comparison.targets if comparison else None) or {}).get("runs")
    stats = [describe(_values(data, impl, metric, targets)) for impl in (base, cand)]
    unit, divisor = fmt.unit_for(metric.kind, metric.shown_unit or metric.unit, [s.mean for s in stats])
    cells = [fmt.mean_sd(s.mean, s.std, s.n, metric.kind, divisor) for s in stats]
    return [metric.row_title, unit, *cells, ratio, short_verdict(m)]


def _metric(comparison: Comparison | None, name: str) -> MetricComparison | None:
    return comparison.metric(name) if comparison else None


def verdict_word(m: MetricComparison | None) -> str:
    if not m:
        return "not compared"
    if m.interval:
        return judgement(m.verdict, m.interval, m.significant, m.beyond_threshold, m.threshold)
    if m.verdict is None:
        return f"no verdict: {m.reason or 'not enough data'}"
    return m.verdict


def short_verdict(m: MetricComparison | None) -> str:
    """The verdict as a table cell: the same rule as ``verdict_word`` in fewer words (the verdict block and the
    interval note say them in full)."""
    if not m:
        return "not compared"
    if m.interval == "range":
        return "inconclusive (range)"
    if m.interval == "ci" and m.significant is not None:
        thr = f"{m.threshold:.0%}".replace("%", " %") if m.threshold is not None else "threshold"
        if not m.significant:
            return "inconclusive"
        return f"{m.verdict} (beyond {thr})" if m.beyond_threshold else f"significant, within {thr}"
    return "no verdict" if m.verdict is None else m.verdict   # the reason is a note under the table


def _notes(section: str, comparison: Comparison | None, data: CampaignData) -> list[str]:
    notes = []
    if section == "energy":
        bases = sorted({r.result.summary.mfu_basis for r in data.runs if r.result.summary.mfu_basis})
        notes += [f"MFU basis: {b}" for b in bases] or ["MFU: no peak FLOP/s known for this device, so not reported"]
    if section == "throughput" and comparison:
        stat = comparison.statistics or {}
        thr = stat.get("practical_threshold")
        notes.append(f"Interval: {stat.get('ci') or 'bootstrap over repeats'} [{_ci_method(comparison)}]; "
                     f"below {stat.get('min_repeats_for_ci', 3)} repeats per arm the range of observed ratios is "
                     f"shown instead of a CI. Verdict: \"inconclusive\" when the 95 % CI includes 1; a word "
                     f"(faster, better, …) only when it excludes 1 and the change is beyond the practical threshold "
                     f"of {fmt.percent(thr * 100 if thr is not None else None)}.")
    return notes


def _ci_method(comparison: Comparison) -> str:
    methods = {m.ci_method for m in comparison.metrics.values() if m.ci_method}
    return ", ".join(sorted(methods)) or "n/a"


def findings(comparison: Comparison | None, data: CampaignData) -> dict:
    """The campaign's findings (numbers; harness/report/findings.py): written to report.json, read by the README
    and the index."""
    base, cand = arms(comparison, data)
    return findings_record.build(comparison, data, base, cand)
