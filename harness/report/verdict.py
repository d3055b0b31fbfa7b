"""The verdict block: the report's first screen, answering "faster?" and "same model?" from the stored
Comparison (harness/comparison.py) and the runs' provenance.

``verdict_section`` returns a headline, an overall status and a list of items, each ``{"key", "title",
"status", "text", "lines"}``; the templates loop over the items, so a new item shows without template surgery.
Items, in order: speed, same model, matched quality (issue 14's slot, see ``MATCHED_QUALITY``), memory, budget
audit, noise and disturbance, source tree. A parity campaign (made by the `parity` verb: preset "<name>-parity")
leads with the same-model item and its headline with the exact-parity verdict. Status per item: "ok", "info" (no claim either way), "warn", "bad"; the block takes the
worst of ok/warn/bad.
"""
from __future__ import annotations

from harness import metrics as metric_registry
from harness.comparison import Comparison, MetricComparison
from harness.report import findings as findings_record
from harness.report import fmt
from harness.report.compare_view import arms, verdict_word
from harness.report.load import CampaignData
from harness.stats import describe

# THE MATCHED-QUALITY SLOT (issue 14): metrics of the comparison that answer "how much faster to the same
# quality" (time to a target BPB, compute multiplier). Any of these names present in comparison.metrics becomes a
# line of the "Matched quality" item, with its ratio, interval and verdict; register the metric in
# harness/metrics.py and add its name here (or call ``MATCHED_QUALITY.append``).
MATCHED_QUALITY: list[str] = ["time_to_target_s", "tokens_to_target", "flops_to_target", "compute_multiplier"]
PARITY_SUFFIX = "-parity"   # the preset name the `parity` verb records (harness/commands/parity.py)
RANK = {"ok": 0, "info": 0, "warn": 1, "bad": 2}


def verdict_section(comparison: Comparison | None, data: CampaignData) -> dict:
    """``{"headline", "status", "items", "parity_first", "baseline", "candidate"}`` for the verdict block."""
    if not comparison:
        base, cand = arms(None, data)
        return {"headline": findings_record.NO_COMPARISON, "status": "warn", "parity_first": False,
                "baseline": base, "candidate": cand,
                "items": [item for item in (_source(data),) if item]}
    base, cand = arms(comparison)
    parity_first = bool(comparison.parity) and data.campaign.preset.endswith(PARITY_SUFFIX)
    same = _same_model(comparison, base, cand)
    builders = [_speed(comparison, data, base, cand), same]
    if parity_first:
        builders.reverse()
    builders += [_matched_quality(comparison, base, cand), _memory(comparison, base, cand),
                 _audit(comparison), _noise(comparison), _source(data)]
    items = [b for b in builders if b]
    status = max((i["status"] for i in items), key=lambda s: RANK[s], default="ok")
    return {"headline": _headline(comparison, data, base, cand, same), "status": "ok" if status == "info" else status,
            "items": items, "parity_first": parity_first, "baseline": base, "candidate": cand}


def _item(key: str, title: str, status: str, text: str, lines: list[str] | None = None) -> dict:
    return {"key": key, "title": title, "status": status, "text": text, "lines": lines or []}


def _metric(comparison: Comparison, name: str) -> MetricComparison | None:
    return comparison.metric(name)


# ---- speed ------------------------------------------------------------------------------------------------

def _speed(comparison: Comparison, data: CampaignData, base: str, cand: str) -> dict:
    m = _metric(comparison, "tokens_per_s")
    if not m or m.ratio is None:
        return _item("speed", "Faster?", "info", f"no tokens/s ratio ({(m.reason if m else None) or 'not measured'})")
    text = (f"{cand} runs at {fmt.ratio_interval(m.ratio, m.ci95, m.range, m.n_pairs)} {fmt.possessive(base)} "
            f"tokens/s: {verdict_word(m)}")
    lines = [_interval_meaning(m, comparison)]
    step = _step_times(data, base, cand)
    if step:
        lines.append(step)
    return _item("speed", "Faster?", _speed_status(m), text, lines)


def _speed_status(m: MetricComparison) -> str:
    if m.interval is None and m.ci95 and m.verdict:   # an older comparison (bootstrap CI, verdict word or "~")
        return "info" if m.verdict == "~" else ("bad" if m.verdict in ("slower", "worse") else "ok")
    if m.interval != "ci" or not m.significant or not m.beyond_threshold:
        return "ok" if m.interval == "ci" and m.significant else "info"
    return "bad" if m.verdict in ("slower", "worse") else "ok"


def _interval_meaning(m: MetricComparison, comparison: Comparison) -> str:
    thr = (comparison.statistics or {}).get("practical_threshold", m.threshold)
    thr_text = fmt.percent(thr * 100 if thr is not None else None, 0)
    if m.interval == "ci":
        lo, hi = m.ci95
        pairs = f"{m.n_pairs} pairs of adjacent runs" if m.n_pairs else "the runs of each arm (unpaired)"
        where = ("it includes 1, so these runs show no speed difference" if lo <= 1 <= hi else
                 f"it excludes 1, so the difference is statistically significant; it matters only beyond "
                 f"the {thr_text} practical threshold")
        what = {"paired-t-log": "the geometric mean of the per-pair tokens/s ratios",
                "welch-t-log": "the ratio of the arms' geometric mean tokens/s"}.get(m.ci_method or "",
                                                                                   "the ratio of mean tokens/s")
        return (f"The interval [{lo:.3f}, {hi:.3f}] is a 95 % confidence interval for {what} "
                f"({m.ci_method or 't'} over {pairs}): {where}.")
    if m.interval == "range":
        return (f"Too few repeats for a confidence interval: [{m.range[0]:.3f}, {m.range[1]:.3f}] is the range of "
                f"the observed ratios over {m.n_pairs or 2} pairs, not an interval estimate.")
    if m.ci95:
        return (f"The interval [{m.ci95[0]:.3f}, {m.ci95[1]:.3f}] is a bootstrap 95 % confidence interval for the "
                f"ratio of mean tokens/s (a comparison made before the paired t-interval; \"~\" = not significant).")
    return f"No interval: {m.reason or 'a single run per arm'}; the ratio is one observation, not a verdict."


def _step_times(data: CampaignData, base: str, cand: str) -> str | None:
    metric = metric_registry.get("step_ms_median")
    parts = []
    for impl in (base, cand):
        s = describe([metric.value(r.result) for r in data.runs
                      if r.result.ok and r.result.measured and r.result.implementation == impl])
        if s.mean is not None:
            parts.append(f"{impl} {fmt.mean_sd(s.mean, s.std, s.n)}")
    return ("Median step time per run, steady state (ms/step, mean ± SD (n) over runs): " + "; ".join(parts)
            ) if parts else None


# ---- same model -------------------------------------------------------------------------------------------

def _same_model(comparison: Comparison, base: str, cand: str) -> dict:
    p = comparison.bpb_parity
    lines, status = [], "info"
    if p and p.within is not None:
        tol = fmt.percent(p.tolerance_rel * 100 if p.tolerance_rel is not None else None)
        lines.append(f"Final val BPB {cand} {fmt.fixed(p.candidate_mean)} vs {base} {fmt.fixed(p.baseline_mean)} "
                     f"(means over measured runs): relative difference {fmt.rel(p.rel_diff)}, "
                     f"{'within' if p.within else 'OUTSIDE'} the {tol} tolerance "
                     f"(rule: |{cand} − {base}| / {base} ≤ {tol}).")
        status = "ok" if p.within else "bad"
        text = f"BPB at parity (within {tol})" if p.within else f"BPB NOT at parity (beyond {tol})"
    else:
        text = f"BPB parity: no verdict ({(p.reason if p else None) or 'not computed'})"
    if comparison.parity:
        ptext, pstatus, plines = _exact_parity(comparison.parity)
        text = f"{ptext}; {text}"
        lines = plines + lines
        status = max(status, pstatus, key=lambda s: RANK[s])
    return _item("same_model", "Same model?", status, text, lines)


def _exact_parity(parity: dict) -> tuple[str, str, list[str]]:
    within = parity.get("within_rel") or 1e-4
    loss, bpb, lrm, w = parity.get("loss") or {}, parity.get("val_bpb") or {}, parity.get("lrm") or {}, \
        parity.get("weights")
    diverged = parity.get("status") == "diverged"
    lines = [f"Rule: training loss at every step and final val BPB within {within:g} relative, lr multiplier "
             f"within {fmt.rel(lrm.get('tolerance'))} at every step"
             + (f", compared as upstream prints them ({parity['decimals']} decimals)" if parity.get("decimals")
                else "") + "; final weights are reported beside it, not judged.",
             f"Training loss: max relative difference {fmt.rel(loss.get('max_rel'))} (worst step "
             f"{loss.get('max_rel_step') if loss.get('max_rel_step') is not None else fmt.NA}); first step past "
             f"{within:g}: {_first(loss, within)}.",
             f"Val BPB at every eval: max relative difference {fmt.rel(bpb.get('max_rel'))}."]
    status = "bad" if diverged else "ok"
    if w is None:
        lines.append("Final weights: not compared (checkpoints were not kept).")
    elif w.get("worst"):
        worst = w["worst"]
        n = len(w.get("tensors") or [])
        same = sum(bool(t.get("identical")) for t in w.get("tensors") or [])
        lines.append(f"Final weights: worst tensor {worst['name']} ({worst['group']}), max relative difference "
                     f"{fmt.rel(worst.get('max_rel'))} (max |Δ| / the tensor's largest |value|); {same} of {n} "
                     f"tensors identical.")
        if not diverged and (worst.get("max_rel") is None or worst["max_rel"] > within):
            status = "warn"
    else:
        lines.append("Final weights: identical.")
    return f"Exact parity: {parity.get('verdict', fmt.NA)}", status, lines


def _first(loss: dict, within: float) -> str:
    first = (loss.get("first_step_over") or {})
    key = next((k for k in first if float(k) == within), None)
    step = first.get(key) if key else None
    return "never" if step is None else f"step {step}"


# ---- matched quality (issue 14) ---------------------------------------------------------------------------

def _matched_quality(comparison: Comparison, base: str, cand: str) -> dict | None:
    """The target, who did not reach it, which arm gets there first, and the multipliers (harness/targets.py)."""
    t = comparison.targets
    lines = []
    missing = (t or {}).get("not_reached") or {}
    for role, name in (("baseline", base), ("candidate", cand)):
        if missing.get(role):
            lines.append(f"{name} did not reach the target in {', '.join(missing[role])}: no ratio to the target")
    for name in MATCHED_QUALITY:
        m = _metric(comparison, name)
        if m and m.ratio is not None:
            line = (f"{m.label}: {cand} ÷ {base} {fmt.ratio_interval(m.ratio, m.ci95, m.range, m.n_pairs)} "
                    f"({verdict_word(m)})")
            if name == "time_to_target_s":
                line += f"; {cand if m.ratio < 1 else base} gets there first on average"
            if name == "compute_multiplier":
                extrapolated = sorted(r for r, v in ((t or {}).get("multipliers") or {}).items()
                                      if v.get("extrapolated"))
                line += " (upstream's definition)" + (f"; extrapolated past the baseline's curve for "
                                                      f"{', '.join(extrapolated)}" if extrapolated else "")
            lines.append(line)
    if not t and not lines:
        return None
    head = (f"target val BPB {fmt.fixed(t.get('target_bpb'))} ({t.get('source')})" if t else lines.pop(0))
    return _item("matched_quality", "Faster to the same quality?", "info", head, lines)


# ---- memory, audit, noise, source ----------------------------------------------------------------------------

def _memory(comparison: Comparison, base: str, cand: str) -> dict | None:
    for name in findings_record.MEMORY_METRICS:
        m = _metric(comparison, name)
        if m and m.ratio is not None:
            label = metric_registry.get(name).row_title
            text = (f"{fmt.possessive(cand)} {label} is {fmt.ratio_interval(m.ratio, m.ci95, m.range, m.n_pairs)} "
                    f"{fmt.possessive(base)} ({verdict_word(m)})")
            return _item("memory", "Memory", _speed_status(m), text)
    return None


def _audit(comparison: Comparison) -> dict:
    audit = comparison.audit
    if audit is None:
        return _item("audit", "Budget audit", "warn", "not made: the arms were not checked against each other")
    unverified = list(audit.get("unverified") or [])
    extra = [f"not verifiable: {u}" for u in unverified]
    if audit.get("matched"):
        return _item("audit", "Budget audit", "ok", "matched: same parameters, tokens, lrm trace, evals, data and "
                     "tokenizer", extra)
    mismatches = list(audit.get("mismatches") or [])
    return _item("audit", "Budget audit", "bad", f"NOT matched ({len(mismatches)} mismatch(es)): the figures do not "
                 f"compare like for like", mismatches + extra)


def _noise(comparison: Comparison) -> dict:
    nf = comparison.noise_floor
    lines = []
    if nf:
        text = (f"A/A noise floor on this machine: "
                f"{fmt.ratio_interval(nf['ratio'], nf.get('ci95'), nf.get('range'), nf.get('n_pairs'))} "
                f"({nf.get('campaign_id')}): the same arm against itself")
    else:
        text = "A/A noise floor: none measured for this preset and machine"
    status = "ok"
    if comparison.disturbed_runs:
        lines.append(f"DISTURBED: the machine was busy with other work during {', '.join(comparison.disturbed_runs)}"
                     f"; their timings are suspect")
        status = "warn"
    if comparison.failed_runs:
        lines.append(f"{len(comparison.failed_runs)} run(s) did not finish ok (see Failed runs)")
        status = "warn"
    lines += [f"note: {n}" for n in comparison.notes]
    return _item("noise", "Noise and disturbance", status, text, lines)


def _source(data: CampaignData) -> dict | None:
    """Our and upstream's commits; a run from a tree with uncommitted changes is a warning."""
    provs = [r.result.provenance for r in data.runs]
    ours = sorted({fmt.short_sha(p.ours_sha, p.ours_dirty) for p in provs if p.ours_sha})
    ups = sorted({fmt.short_sha(p.upstream_sha, None if p.upstream_clean is None else not p.upstream_clean)
                  for p in provs if p.upstream_sha})
    if not ours and not ups:
        return None
    dirty = any(p.ours_dirty for p in provs) or any(p.upstream_clean is False for p in provs)
    text = f"ours {', '.join(ours) or fmt.NA}; upstream {', '.join(ups) or fmt.NA}"
    lines = [dirty_warning()] if dirty else []
    return _item("source", "Source tree", "warn" if dirty else "ok",
                 ("DIRTY: " if dirty else "clean: ") + text, lines)


def dirty_warning() -> str:
    return ("Run from a tree with uncommitted changes: the figures may not reproduce from the named commit; "
            "`nanochat-bench readme` publishes them only with --allow-dirty.")


# ---- headline -----------------------------------------------------------------------------------------------

def _headline(comparison: Comparison, data: CampaignData, base: str, cand: str, same: dict) -> str:
    speed = findings_record.ratio_record(_metric(comparison, "tokens_per_s"))
    within = comparison.bpb_parity.within if comparison.bpb_parity else None
    head = findings_record.headline(base, cand, speed, within)
    if comparison.parity and data.campaign.preset.endswith(PARITY_SUFFIX):
        head = f"{same['text'].split(';')[0]}; {head}"
    return head + (f"; DISTURBED runs: {', '.join(comparison.disturbed_runs)}" if comparison.disturbed_runs else "")
