"""A campaign's findings: the few numbers every listing of it shows, stored as report.json beside the report.

``build`` takes them from the Comparison and the runs (numbers, booleans, ids; nothing formatted), ``read``
loads a published report.json, and ``cells`` formats them for the README's findings table and the site's index:
the report layer is the only place they become text. ``schema_version`` 2 holds numbers; version 1 files
(pre-formatted strings) are refused with the command that rewrites them.
"""
from __future__ import annotations

import json
from pathlib import Path

from harness import metrics as metric_registry
from harness.comparison import Comparison, MetricComparison
from harness.report import fmt
from harness.report.identity import host_provenance, machine_label, preset_label
from harness.results import Provenance
from harness.stats import describe, judgement

SCHEMA_VERSION = 2
NO_COMPARISON = "No comparison: this campaign has no baseline/candidate pair to compare."
# the first one the comparison has a ratio for: torch's own peak where both arms report it (CUDA), else the
# trainer's kernel high-water mark (CPU), else the older sampled figures
MEMORY_METRICS = ("torch_peak_mem_bytes", "trainer_hwm_bytes", "peak_gpu_mem_bytes", "peak_rss_bytes")


class FindingsError(ValueError):
    """A report.json this version cannot read; the message says how to rewrite it."""


def build(comparison: Comparison | None, data, base: str, cand: str) -> dict:
    """The findings of a campaign (``data``: harness.report.load.CampaignData) as plain JSON values."""
    c = data.campaign
    results = [r.result for r in data.runs]
    ours = next((r.provenance for r in results if r.provenance.ours_sha), Provenance())
    mem = next(((name, m) for name in MEMORY_METRICS if (m := _metric(comparison, name)) and m.ratio is not None),
               None)
    parity = comparison.bpb_parity if comparison else None
    return {
        "schema_version": SCHEMA_VERSION, "campaign_id": c.campaign_id, "preset": preset_label(c.preset, c.budget),
        "created": c.created_utc, "machine": machine_label(host_provenance(results)),
        "ours_sha": ours.ours_sha, "ours_dirty": ours.ours_dirty,
        "upstream_sha": next((r.provenance.upstream_sha for r in results if r.provenance.upstream_sha), None),
        "baseline": base, "candidate": cand, "compared": comparison is not None,
        "tokens_per_s": ratio_record(_metric(comparison, "tokens_per_s")),
        "peak_memory": dict(metric=mem[0], **ratio_record(mem[1])) if mem else None,
        "final_val_bpb": {"baseline": _mean(data, base), "candidate": _mean(data, cand)},
        "bpb_parity": {"within": parity.within if parity else None,
                       "tolerance_rel": parity.tolerance_rel if parity else None},
    }


def _metric(comparison: Comparison | None, name: str) -> MetricComparison | None:
    return comparison.metric(name) if comparison else None


def ratio_record(m: MetricComparison | None) -> dict | None:
    if m is None or m.ratio is None:
        return None
    return {"ratio": m.ratio, "ci95": m.ci95, "verdict": m.verdict, "interval": m.interval, "range": m.range,
            "n_pairs": m.n_pairs, "significant": m.significant, "beyond_threshold": m.beyond_threshold,
            "threshold": m.threshold}


def _mean(data, impl: str) -> float | None:
    metric = metric_registry.get("final_val_bpb")
    return describe([metric.value(r.result) for r in data.runs
                     if r.result.ok and r.result.measured and r.result.implementation == impl]).mean


def read(path: str | Path) -> dict:
    """A published report.json, checked for the version this code formats and for the shape ``cells`` reads;
    a damaged file is a FindingsError naming it."""
    fix = f"re-render it with `nanochat-bench report CAMPAIGN_DIR --out {Path(path).parent}`"
    try:
        f = json.loads(Path(path).read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FindingsError(f"{path}: unreadable ({type(e).__name__}: {e}); {fix}") from None
    if not isinstance(f, dict):
        raise FindingsError(f"{path}: not a JSON object; {fix}")
    if f.get("schema_version") != SCHEMA_VERSION:
        raise FindingsError(f"{path}: findings schema_version {f.get('schema_version')!r}, this nanochat-bench "
                            f"reads {SCHEMA_VERSION}: re-render it with `nanochat-bench report CAMPAIGN_DIR --out "
                            f"{Path(path).parent}`")
    for key in ("campaign_id", "preset", "machine"):
        if not isinstance(f.get(key), str):
            raise FindingsError(f"{path}: {key!r} is missing or not a string; {fix}")
    for key in ("tokens_per_s", "peak_memory", "final_val_bpb", "bpb_parity"):
        if f.get(key) is not None and not isinstance(f[key], dict):
            raise FindingsError(f"{path}: {key!r} is not an object; {fix}")
    return f


def cells(f: dict) -> dict[str, str]:
    """The findings as the README table and the site index show them."""
    parity = f.get("bpb_parity") or {}
    bpb = f.get("final_val_bpb") or {}
    tol = parity.get("tolerance_rel")
    return {
        "campaign_id": f["campaign_id"], "preset": f["preset"], "created": f.get("created") or fmt.NA,
        "machine": f["machine"], "ours_sha": fmt.short_sha(f.get("ours_sha"), f.get("ours_dirty")),
        "upstream_sha": fmt.short_sha(f.get("upstream_sha")), "verdict": verdict(f),
        "tokens_per_s": _ratio_text(f.get("tokens_per_s")), "peak_memory": _ratio_text(f.get("peak_memory")),
        "final_bpb_ours": fmt.fixed(bpb.get("candidate")), "final_bpb_upstream": fmt.fixed(bpb.get("baseline")),
        "bpb_parity": {True: "within", False: "outside", None: fmt.NA}[parity.get("within")]
        + (f" {fmt.percent(tol * 100)}" if tol is not None else ""),
        "report": f["report"],
    }


def verdict(f: dict) -> str:
    """The report's headline, from the findings' numbers."""
    if not f.get("compared"):
        return NO_COMPARISON
    return headline(f["baseline"], f["candidate"], f.get("tokens_per_s"), (f.get("bpb_parity") or {}).get("within"))


def headline(base: str, cand: str, speed: dict | None, within: bool | None) -> str:
    """One sentence: the tokens/s ratio ({ratio, ci95, verdict, interval, ...} or None) and whether BPB is at
    parity. Files from before the interval fields (bootstrap CIs) keep their old wording."""
    if speed is not None and speed.get("interval"):
        head = f"{cand} vs {base} tokens/s: {_ratio_text(speed)}"
    elif speed is None:
        head = "No speed verdict"
    elif speed.get("verdict") == "~":
        head = f"{cand} ≈ {base} in speed ({fmt.ratio(speed['ratio'], speed.get('ci95'))}, ~ not significant)"
    elif speed.get("verdict") is None:
        head = f"{cand} at {fmt.ratio(speed['ratio'])} {fmt.possessive(base)} tokens/s (no verdict)"
    else:
        head = (f"{cand} is {speed['verdict']}: {fmt.ratio(speed['ratio'], speed.get('ci95'))} "
                f"{fmt.possessive(base)} tokens/s")
    if within is True:
        return head + "; BPB at parity"
    if within is False:
        return head + "; BPB NOT at parity"
    return head


def _ratio_text(r: dict | None) -> str:
    if not r:
        return fmt.NA
    if r.get("interval"):
        words = judgement(r.get("verdict"), r.get("interval"), r.get("significant"), r.get("beyond_threshold"),
                          r.get("threshold"))
        return f"{fmt.ratio_interval(r['ratio'], r.get('ci95'), r.get('range'), r.get('n_pairs'))}, {words}"
    return f"{fmt.ratio(r['ratio'], r.get('ci95'))} {r.get('verdict') or ''}".rstrip()
