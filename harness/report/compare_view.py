"""The verdict and the metric tables, from the campaign's Comparison (harness/comparison.py) and the runs.

One table per section of harness/metrics.py, one row per metric of that section, in registry order.

Per-arm values (mean ± std over ok runs) are computed here from the RunResults with harness.stats.describe, so
every table has them even for a metric the comparison does not cover; the ratio ours ÷ upstream, its 95 % CI (or
the range of observed ratios, marked so, below three repeats) and the verdict in words ("statistically
significant", "beyond/within the practical threshold", "inconclusive") come from the comparison.
"""
from __future__ import annotations

from harness import metrics as metric_registry
from harness.adapters import registry as arms_registry
from harness.metrics import Metric
from harness.report import findings as findings_record
from harness.report import fmt
from harness.comparison import BpbParity, Comparison, MetricComparison
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
    header = ["metric", f"{base} (baseline)", f"{cand} (candidate)", f"{cand} ÷ {base} [95 % CI or range]",
              "verdict"]
    out = {}
    for section in metric_registry.SECTIONS:
        rows = [_row(comparison, data, m, base, cand) for m in metric_registry.in_section(section)
                if not (m.per_target and not (comparison and comparison.targets))]   # no target: no such rows
        out[section] = {"header": header, "rows": rows, "notes": _notes(section, comparison, data)}
    out["findings"] = findings(comparison, data)
    return out


def _values(data: CampaignData, impl: str, metric: Metric, targets: dict | None = None) -> list:
    # measured repeats only: a warm-up run is recorded but is not a measurement
    return [metric.value(r.result, targets) for r in data.runs
            if r.result.ok and r.result.measured and r.result.implementation == impl]


def _arm_cell(data: CampaignData, impl: str, metric: Metric, targets: dict | None = None) -> str:
    s = describe(_values(data, impl, metric, targets))
    return fmt.NA if s.mean is None else f"{fmt.mean_std(s.mean, s.std, metric.shown_unit, metric.kind)} (n={s.n})"


def _row(comparison: Comparison | None, data, metric: Metric, base, cand) -> list[str]:
    m = _metric(comparison, metric.name)
    ratio = fmt.ratio_interval(m.ratio, m.ci95, m.range, m.n_pairs) if m else fmt.NA
    targets = ((comparison.targets if comparison else None) or {}).get("runs")
    return [metric.row_title, _arm_cell(data, base, metric, targets), _arm_cell(data, cand, metric, targets), ratio,
            _verdict_word(m)]


def _metric(comparison: Comparison | None, name: str) -> MetricComparison | None:
    return comparison.metric(name) if comparison else None


def _verdict_word(m: MetricComparison | None) -> str:
    if not m:
        return "not compared"
    if m.interval:
        return judgement(m.verdict, m.interval, m.significant, m.beyond_threshold, m.threshold)
    if m.verdict is None:
        return f"no verdict: {m.reason or 'not enough data'}"
    return m.verdict


def _notes(section: str, comparison: Comparison | None, data: CampaignData) -> list[str]:
    notes = []
    if section == "energy":
        bases = sorted({r.result.summary.mfu_basis for r in data.runs if r.result.summary.mfu_basis})
        notes += [f"MFU basis: {b}" for b in bases] or ["MFU: no peak FLOP/s known for this device, so not reported"]
    if section == "quality" and comparison and comparison.bpb_parity:
        notes.append(_parity_sentence(comparison.bpb_parity))
    if section == "throughput" and comparison:
        stat = comparison.statistics or {}
        thr = stat.get("practical_threshold")
        notes.append(f"Interval: {stat.get('ci') or 'bootstrap over repeats'} [{_ci_method(comparison)}]; "
                     f"below {stat.get('min_repeats_for_ci', 3)} repeats per arm the range of observed ratios is "
                     f"shown instead of a CI. Practical threshold: "
                     f"{fmt.percent(thr * 100 if thr is not None else None)}.")
    return notes


def _ci_method(comparison: Comparison) -> str:
    methods = {m.ci_method for m in comparison.metrics.values() if m.ci_method}
    return ", ".join(sorted(methods)) or "n/a"


def _parity_sentence(p: BpbParity) -> str:
    tol, within, diff = p.tolerance_rel, p.within, p.rel_diff
    if within is None:
        return f"BPB parity: no verdict ({p.reason or 'not measured'})"
    state = "within" if within else "OUTSIDE"
    return (f"BPB parity ({p.metric or 'final_val_bpb'}): {state} the {fmt.percent(tol * 100 if tol else None)} "
            f"tolerance (relative difference {fmt.percent(diff * 100 if diff is not None else None, 2)})")


def verdict_section(comparison: Comparison | None) -> dict:
    """The headline and its supporting lines: speed ratio with CI, BPB parity, audit, failed runs."""
    if not comparison:
        return {"headline": findings_record.NO_COMPARISON, "lines": [], "status": "warn"}
    base, cand = arms(comparison)
    speed = _speed_sentence(comparison, base, cand)
    parity = comparison.bpb_parity
    lines = [speed, _parity_sentence(parity) if parity else "BPB parity: not computed"]
    lines += matched_quality_lines(comparison, base, cand)
    lines += _disturbed_lines(comparison)
    lines += _memory_lines(comparison, base, cand) + _audit_lines(comparison) + _failed_lines(comparison)
    lines += [f"note: {n}" for n in comparison.notes]
    within = parity.within if parity else None
    return {"headline": _headline(comparison, within), "lines": lines, "status": _status(comparison, within)}


def _speed_sentence(comparison: Comparison, base: str, cand: str) -> str:
    m = _metric(comparison, "tokens_per_s")
    if not m or m.ratio is None:
        return f"Speed: no tokens/s ratio ({(m.reason if m else None) or 'not measured'})"
    judged = _verdict_word(m) if m.interval or m.verdict else f"no verdict: {m.reason}"
    nf = comparison.noise_floor
    floor = (f"; A/A noise floor on this machine: {fmt.ratio_interval(nf['ratio'], nf.get('ci95'), nf.get('range'), nf.get('n_pairs'))}"
             f" ({nf.get('campaign_id')})" if nf else "; A/A noise floor: none measured for this preset and machine")
    return (f"Speed: {cand} runs at {fmt.ratio_interval(m.ratio, m.ci95, m.range, m.n_pairs)} "
            f"{fmt.possessive(base)} tokens/s: {judged}{floor}")


def matched_quality_lines(comparison: Comparison, base: str, cand: str) -> list[str]:
    """The "matched quality" paragraph: the target, which arm reaches it first, and the multipliers."""
    t = comparison.targets
    if not t:
        return []
    lines = [f"Matched quality: target val BPB {fmt.fixed(t.get('target_bpb'))} ({t.get('source')})."]
    missing = t.get("not_reached") or {}
    for role, name in (("baseline", base), ("candidate", cand)):
        if missing.get(role):
            lines.append(f"Matched quality: {name} did not reach the target in {', '.join(missing[role])}: no "
                         f"time-to-target ratio")
    tt = _metric(comparison, "time_to_target_s")
    if tt and tt.ratio is not None:
        first = cand if tt.ratio < 1 else base
        lines.append(f"Matched quality: {cand} needs {fmt.ratio_interval(tt.ratio, tt.ci95, tt.range, tt.n_pairs)} "
                     f"{fmt.possessive(base)} training time to reach it ({_verdict_word(tt)}); {first} gets there "
                     f"first on average")
    for name in ("tokens_to_target", "flops_to_target"):
        m = _metric(comparison, name)
        if m and m.ratio is not None:
            lines.append(f"Matched quality: {metric_registry.get(name).label} {cand} ÷ {base} "
                         f"{fmt.ratio_interval(m.ratio, m.ci95, m.range, m.n_pairs)} ({_verdict_word(m)})")
    cm = _metric(comparison, "compute_multiplier")
    if cm and cm.ratio is not None:
        extrapolated = sorted(r for r, v in (t.get("multipliers") or {}).items() if v.get("extrapolated"))
        lines.append(f"Matched quality: compute multiplier of {cand} over {base} (upstream's definition) "
                     f"{fmt.ratio_interval(cm.ratio, cm.ci95, cm.range, cm.n_pairs)} ({_verdict_word(cm)})"
                     + (f"; extrapolated past the baseline's curve for {', '.join(extrapolated)}" if extrapolated
                        else ""))
    return lines


def _memory_lines(comparison: Comparison, base: str, cand: str) -> list[str]:
    lines = []
    for metric in findings_record.MEMORY_METRICS:
        m = _metric(comparison, metric)
        if m and m.ratio is not None:
            label = metric_registry.get(metric).row_title
            lines.append(f"Memory: {fmt.possessive(cand)} {label} is "
                         f"{fmt.ratio_interval(m.ratio, m.ci95, m.range, m.n_pairs)} {fmt.possessive(base)} "
                         f"({_verdict_word(m)})")
            break   # the most meaningful figure the device has; the others are in the memory table
    return lines


def _disturbed_lines(comparison: Comparison) -> list[str]:
    runs = comparison.disturbed_runs
    return [f"DISTURBED: the machine was busy with other work during {', '.join(runs)} (see each run's "
            f"interference); their timings are suspect"] if runs else []


def _audit_lines(comparison: Comparison) -> list[str]:
    audit = comparison.audit
    if audit is None:
        return ["Budget audit: not made"]
    if audit.get("matched"):
        return ["Budget audit: matched (same parameters, tokens, lrm trace, evals, data and tokenizer)"]
    return [f"Budget audit: NOT matched ({len(audit.get('mismatches') or [])} mismatch(es), listed below)"]


def _failed_lines(comparison: Comparison) -> list[str]:
    failed = comparison.failed_runs
    return [f"{len(failed)} run(s) did not finish ok (see Failed runs)"] if failed else []


def _headline(comparison: Comparison, within: bool | None) -> str:
    m = _metric(comparison, "tokens_per_s")
    base, cand = arms(comparison)
    speed = findings_record.ratio_record(m)
    head = findings_record.headline(base, cand, speed, within)
    return head + (f"; DISTURBED runs: {', '.join(comparison.disturbed_runs)}" if comparison.disturbed_runs else "")


def _status(comparison: Comparison, within: bool | None) -> str:
    audit = comparison.audit or {}
    if within is False or audit.get("matched") is False:
        return "bad"
    if within is None or comparison.failed_runs or comparison.disturbed_runs:
        return "warn"
    return "ok"


def findings(comparison: Comparison | None, data: CampaignData) -> dict:
    """The campaign's findings (numbers; harness/report/findings.py): written to report.json, read by the README
    and the index."""
    base, cand = arms(comparison, data)
    return findings_record.build(comparison, data, base, cand)
