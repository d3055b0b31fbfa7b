"""The verdict and the metric tables, from ``campaign.comparison`` (shape: harness/compare.py) and the runs.

One table per section of harness/metrics.py, one row per metric of that section, in registry order.

Per-arm values (mean ± std over ok runs) are computed here from the RunResults with harness.stats.describe, so
every table has them even for a metric the comparison does not cover; the ratio ours ÷ upstream, its 95 % CI
and the verdict ("faster", "slower", "better", "worse", or "~" when not significant) come from the comparison.
"""
from __future__ import annotations

from harness import metrics as metric_registry
from harness.adapters import registry as arms_registry
from harness.metrics import Metric
from harness.report import fmt
from harness.report.identity import campaign_facts
from harness.report.load import CampaignData, need
from harness.stats import describe

WHERE = "campaign.json comparison"
def possessive(name: str) -> str:
    return f"{name}'" if name.endswith("s") else f"{name}'s"


def arms(comparison: dict | None, data: CampaignData | None = None) -> tuple[str, str]:
    """(baseline, candidate): the comparison's; without one, the two roles (else the arms in run order)."""
    if comparison:
        return comparison.get("baseline") or arms_registry.BASELINE, comparison.get("candidate") or "(none)"
    impls = list(dict.fromkeys(r.result.implementation for r in (data.runs if data else [])))
    base = arms_registry.BASELINE if arms_registry.BASELINE in impls or not impls else impls[0]
    others = [i for i in impls if i != base]
    return base, arms_registry.CANDIDATE if arms_registry.CANDIDATE in others or not others else others[0]


def metric_tables(comparison: dict | None, data: CampaignData) -> dict:
    """``{"throughput": table, "memory": table, "energy": table, "quality": table, "findings": {...}}``."""
    base, cand = arms(comparison, data)
    header = ["metric", f"{base} (baseline)", f"{cand} (candidate)", f"{cand} ÷ {base} [95 % CI]", "verdict"]
    out = {}
    for section in metric_registry.SECTIONS:
        rows = [_row(comparison, data, m, base, cand) for m in metric_registry.in_section(section)]
        out[section] = {"header": header, "rows": rows, "notes": _notes(section, comparison, data)}
    out["findings"] = findings(comparison, data)
    return out


def _values(data: CampaignData, impl: str, metric: Metric) -> list:
    return [metric.value(r.result) for r in data.runs if r.result.ok and r.result.implementation == impl]


def _arm_cell(data: CampaignData, impl: str, metric: Metric) -> str:
    s = describe(_values(data, impl, metric))
    return fmt.NA if s.mean is None else f"{fmt.mean_std(s.mean, s.std, metric.shown_unit, metric.kind)} (n={s.n})"


def _row(comparison, data, metric: Metric, base, cand) -> list[str]:
    m = _metric(comparison, metric.name)
    ratio = fmt.ratio(m.get("ratio"), m.get("ci95")) if m else fmt.NA
    return [metric.row_title, _arm_cell(data, base, metric), _arm_cell(data, cand, metric), ratio, _verdict_word(m)]


def _metric(comparison: dict | None, name: str) -> dict | None:
    if not comparison:
        return None
    return need(comparison, "metrics", WHERE).get(name)


def _verdict_word(m: dict | None) -> str:
    if not m:
        return "not compared"
    if m.get("verdict") is None:
        return f"no verdict: {m.get('reason') or 'not enough data'}"
    return m["verdict"]


def _notes(section: str, comparison: dict | None, data: CampaignData) -> list[str]:
    notes = []
    if section == "energy":
        bases = sorted({r.result.summary.mfu_basis for r in data.runs if r.result.summary.mfu_basis})
        notes += [f"MFU basis: {b}" for b in bases] or ["MFU: no peak FLOP/s known for this device, so not reported"]
    if section == "quality" and comparison and comparison.get("bpb_parity"):
        notes.append(_parity_sentence(comparison["bpb_parity"]))
    if section == "throughput" and comparison:
        notes.append(f"CI: bootstrap ({_ci_method(comparison)}) over repeats; \"~\" = not significant or "
                     f"within the practical threshold")
    return notes


def _ci_method(comparison: dict) -> str:
    methods = {m.get("ci_method") for m in (comparison.get("metrics") or {}).values() if m.get("ci_method")}
    return ", ".join(sorted(methods)) or "n/a"


def _parity_sentence(p: dict) -> str:
    tol = p.get("tolerance_rel")
    within = p.get("within")
    diff = p.get("rel_diff")
    if within is None:
        return f"BPB parity: no verdict ({p.get('reason') or 'not measured'})"
    state = "within" if within else "OUTSIDE"
    return (f"BPB parity ({p.get('metric', 'final_val_bpb')}): {state} the {fmt.percent(tol * 100 if tol else None)} "
            f"tolerance (relative difference {fmt.percent(diff * 100 if diff is not None else None, 2)})")


def verdict_section(comparison: dict | None) -> dict:
    """The headline and its supporting lines: speed ratio with CI, BPB parity, audit, failed runs."""
    if not comparison:
        return {"headline": "No comparison: this campaign has no baseline/candidate pair to compare.",
                "lines": [], "status": "warn"}
    base, cand = arms(comparison)
    speed = _speed_sentence(comparison, base, cand)
    parity = comparison.get("bpb_parity") or {}
    lines = [speed, _parity_sentence(parity) if parity else "BPB parity: not computed"]
    lines += _memory_lines(comparison, base, cand) + _audit_lines(comparison) + _failed_lines(comparison)
    lines += [f"note: {n}" for n in comparison.get("notes") or []]
    return {"headline": _headline(comparison, speed, parity), "lines": lines, "status": _status(comparison, parity)}


def _speed_sentence(comparison: dict, base: str, cand: str) -> str:
    m = _metric(comparison, "tokens_per_s")
    if not m or m.get("ratio") is None:
        return f"Speed: no tokens/s ratio ({(m or {}).get('reason') or 'not measured'})"
    word = m.get("verdict")
    judged = f"{word}" if word else f"no verdict: {m.get('reason')}"
    return f"Speed: {cand} runs at {fmt.ratio(m['ratio'], m.get('ci95'))} {possessive(base)} tokens/s ({judged})"


def _memory_lines(comparison: dict, base: str, cand: str) -> list[str]:
    lines = []
    for metric, label in (("peak_gpu_mem_bytes", "peak GPU memory"), ("peak_rss_bytes", "peak host RSS")):
        m = _metric(comparison, metric)
        if m and m.get("ratio") is not None:
            lines.append(f"Memory: {possessive(cand)} {label} is {fmt.ratio(m['ratio'], m.get('ci95'))} {possessive(base)} "
                         f"({m.get('verdict') or 'no verdict'})")
    return lines


def _audit_lines(comparison: dict) -> list[str]:
    audit = comparison.get("audit")
    if audit is None:
        return ["Budget audit: not made"]
    if audit.get("matched"):
        return ["Budget audit: matched (same parameters, tokens, lrm trace, evals, data and tokenizer)"]
    return [f"Budget audit: NOT matched ({len(audit.get('mismatches') or [])} mismatch(es), listed below)"]


def _failed_lines(comparison: dict) -> list[str]:
    failed = comparison.get("failed_runs") or []
    return [f"{len(failed)} run(s) did not finish ok (see Failed runs)"] if failed else []


def _headline(comparison: dict, speed: str, parity: dict) -> str:
    m = _metric(comparison, "tokens_per_s") or {}
    base, cand = arms(comparison)
    if m.get("ratio") is None:
        head = "No speed verdict"
    elif m.get("verdict") in (None, "~"):
        head = f"{cand} ≈ {base} in speed ({fmt.ratio(m['ratio'], m.get('ci95'))}, ~ not significant)" \
            if m.get("verdict") == "~" else f"{cand} at {fmt.ratio(m['ratio'])} {possessive(base)} tokens/s (no verdict)"
    else:
        head = f"{cand} is {m['verdict']}: {fmt.ratio(m['ratio'], m.get('ci95'))} {possessive(base)} tokens/s"
    if parity.get("within") is True:
        return head + "; BPB at parity"
    if parity.get("within") is False:
        return head + "; BPB NOT at parity"
    return head


def _status(comparison: dict, parity: dict) -> str:
    audit = comparison.get("audit") or {}
    if parity.get("within") is False or audit.get("matched") is False:
        return "bad"
    if parity.get("within") is None or comparison.get("failed_runs"):
        return "warn"
    return "ok"


def findings(comparison: dict | None, data: CampaignData) -> dict:
    """The campaign's findings in one flat dict: written to report.json, read by the README and the index."""
    base, cand = arms(comparison, data)
    facts = campaign_facts(data.campaign, [r.result for r in data.runs])
    mem = next((m for m in (_metric(comparison, "peak_gpu_mem_bytes"), _metric(comparison, "peak_rss_bytes"))
                if m and m.get("ratio") is not None), {})
    tps = _metric(comparison, "tokens_per_s") or {}
    parity = (comparison or {}).get("bpb_parity") or {}
    return {
        **facts, "verdict": verdict_section(comparison)["headline"],
        "tokens_per_s": _ratio_word(tps), "peak_memory": _ratio_word(mem),
        "final_bpb_ours": _mean(data, cand, "final_val_bpb"), "final_bpb_upstream": _mean(data, base, "final_val_bpb"),
        "bpb_parity": {True: "within", False: "outside", None: fmt.NA}[parity.get("within")]
        + (f" {fmt.percent(parity['tolerance_rel'] * 100)}" if parity.get("tolerance_rel") is not None else ""),
    }


def _ratio_word(m: dict) -> str:
    if m.get("ratio") is None:
        return fmt.NA
    return f"{fmt.ratio(m['ratio'], m.get('ci95'))} {m.get('verdict') or ''}".rstrip()


def _mean(data: CampaignData, impl: str, metric: str) -> str:
    return fmt.fixed(describe(_values(data, impl, metric_registry.get(metric))).mean)
