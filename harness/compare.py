"""A campaign's comparison: per-metric ratios with bootstrap CIs and verdicts, BPB parity, the audit, parity.

``compare_campaign`` reads only RunResults and events (it never runs anything) and returns the dict the
runner stores as ``campaign.comparison``; the report, README findings and history read it. Ratios are
candidate/baseline (``ours/upstream`` by default) over the ok runs; failed runs are listed, not averaged.
The dict holds no NaN or infinity (unmeasurable = ``null``), so it is valid JSON.

Shape (``schema_version`` 1)::

    {"schema_version": 1,
     "baseline": str, "candidate": str | None,    # implementations; candidate None: only one arm ran
     "ratio": "candidate/baseline",                # e.g. "ours/upstream"
     "statistics": {"ci": "bootstrap of the ratio of means (scipy.stats.bootstrap, paired=False)",
                    "ci_method": "percentile", "confidence": 0.95, "n_resamples": 9999, "seed": int,
                    "practical_threshold": 0.02, "min_repeats": 2},
     "arms": {impl: {"ok": [run_id], "not_ok": [run_id]}},
     "metrics": {name: {                            # every compared metric of harness/metrics.py, in order
         "label": str, "unit": str, "better": "higher" | "lower", "words": [up_word, down_word],
         "baseline": {"n": int, "mean": float|None, "std": float|None, "values": [float]},
         "candidate": {same},
         "ratio": float|None, "ci95": [low, high] | None, "ci_method": str,
         "verdict": "faster"|"slower"|"better"|"worse"|"~"|None, "reason": str|None}},  # None: see reason
     "bpb_parity": {"metric": "final_val_bpb", "tolerance_rel": float, "baseline_mean": float|None,
                    "candidate_mean": float|None, "rel_diff": float|None, "within": bool|None, "reason": str|None},
     "audit": {...},                               # harness.audit.audit_runs, shape in its docstring
     "failed_runs": [{"run_id", "implementation", "seed", "repeat", "status", "error"}],
     "headline": str,                              # one line: speed ratio+CI+verdict, BPB parity, audit
     "notes": [str],                               # what could not be done and why (e.g. parity skipped)
     "parity": {...}}                              # only for CPU campaigns with a same-seed ours/upstream
                                                   # pair: harness.parity.compare_runs, shape in its docstring
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from harness import audit as audit_mod
from harness import metrics as metric_registry
from harness import parity as parity_mod
from harness import stats
from harness.adapters import registry as arms
from protocol.events import Event, EventFormatError, read_events
from harness.results import Campaign, RunResult

SCHEMA_VERSION = 1
BPB_TOLERANCE = 0.01  # relative: "our BPB is within 1 % of upstream's"

def compare_campaign(campaign: Campaign, results: list[RunResult], events_by_run: dict[str, list[Event]], *,
                     campaign_dir: str | Path | None = None, baseline: str | None = None,
                     candidate: str | None = None, bpb_tolerance: float = BPB_TOLERANCE,
                     threshold: float = stats.PRACTICAL_THRESHOLD, ci_method: str = stats.CI_METHOD,
                     parity: bool | None = None) -> dict:
    """The comparison dict (module docstring). ``parity``: None = on CPU campaigns, True/False = force."""
    _check_options(bpb_tolerance, threshold)
    baseline, candidate = pick_arms(results, baseline, candidate)
    ok = {impl: [r for r in results if r.ok and r.implementation == impl] for impl in (baseline, candidate) if impl}
    notes: list[str] = []
    out: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "baseline": baseline, "candidate": candidate,
        "ratio": f"{candidate}/{baseline}" if candidate else None,
        "statistics": _statistics(ci_method, threshold), "arms": _arms(results),
        "metrics": {m.name: metric_entry(m.name, ok.get(baseline, []), ok.get(candidate, []), candidate is not None,
                                         threshold=threshold, ci_method=ci_method)
                    for m in metric_registry.compared()},
        "bpb_parity": bpb_parity(ok.get(baseline, []), ok.get(candidate, []), bpb_tolerance),
        "audit": audit_mod.audit_runs(results, events_by_run),
        "failed_runs": [{"run_id": r.run_id, "implementation": r.implementation, "seed": r.seed, "repeat": r.repeat,
                         "status": r.status, "error": r.error} for r in results if not r.ok],
        "notes": notes,
    }
    if candidate is None:
        notes.append(f"only one implementation ({baseline}) ran ok or was planned: no ratios")
    p = _campaign_parity(campaign, results, events_by_run, campaign_dir, parity, notes)
    if p is not None:
        out["parity"] = p
    out["headline"] = headline(out)
    return json_safe(out)


def _statistics(ci_method: str, threshold: float) -> dict:
    return {"ci": "bootstrap of the ratio of means (scipy.stats.bootstrap, paired=False)", "ci_method": ci_method,
            "confidence": stats.CONFIDENCE, "n_resamples": stats.N_RESAMPLES, "seed": stats.SEED,
            "practical_threshold": threshold, "min_repeats": stats.MIN_REPEATS}


def _arms(results: list[RunResult]) -> dict:
    impls = dict.fromkeys(r.implementation for r in results)
    return {impl: {"ok": [r.run_id for r in results if r.implementation == impl and r.ok],
                   "not_ok": [r.run_id for r in results if r.implementation == impl and not r.ok]} for impl in impls}


def pick_arms(results: list[RunResult], baseline: str | None, candidate: str | None) -> tuple[str, str | None]:
    """Default: the baseline and candidate roles (upstream, ours; harness/adapters/registry.py), otherwise the
    first two arms in run order."""
    impls = list(dict.fromkeys(r.implementation for r in results))
    if not impls:
        raise ValueError("compare_campaign: the campaign has no run results to compare; run it first")
    for name, value in (("baseline", baseline), ("candidate", candidate)):
        if value is not None and value not in impls:
            raise ValueError(f"compare {name}={value!r}: no such implementation in the campaign; use one of {impls}")
    baseline = baseline or (arms.BASELINE if arms.BASELINE in impls else impls[0])
    others = [i for i in impls if i != baseline]
    candidate = candidate or (arms.CANDIDATE if arms.CANDIDATE in others else (others[0] if others else None))
    return baseline, candidate


def metric_entry(name: str, base_runs: list[RunResult], cand_runs: list[RunResult], two_arms: bool = True, *,
                 threshold: float = stats.PRACTICAL_THRESHOLD, ci_method: str = stats.CI_METHOD) -> dict:
    """One metric's means, std, ratio, CI and verdict over the ok runs of each arm."""
    metric = metric_registry.get(name)
    direction = metric.direction
    b_vals = [metric.value(r) for r in base_runs]
    c_vals = [metric.value(r) for r in cand_runs]
    res = stats.compare_samples(b_vals, c_vals, direction, threshold=threshold, method=ci_method)
    if not two_arms:
        res = stats.RatioResult(None, None, ci_method, None, "only one implementation: nothing to compare")
    return {"label": metric.label, "unit": metric.unit, "better": "higher" if direction.higher_is_better else "lower",
            "words": [direction.up_word, direction.down_word],
            "baseline": vars(stats.describe(b_vals)), "candidate": vars(stats.describe(c_vals)), **res.to_dict()}


def bpb_parity(base_runs: list[RunResult], cand_runs: list[RunResult], tolerance: float = BPB_TOLERANCE) -> dict:
    """Is the candidate's mean final val BPB within ``tolerance`` (relative) of the baseline's?"""
    b = stats.describe([r.summary.final_val_bpb for r in base_runs]).mean
    c = stats.describe([r.summary.final_val_bpb for r in cand_runs]).mean
    out = {"metric": "final_val_bpb", "tolerance_rel": tolerance, "baseline_mean": b, "candidate_mean": c,
           "rel_diff": None, "within": None, "reason": None}
    if b is None or c is None or b == 0:
        out["reason"] = "final val BPB not measured in an ok run of both arms"
        return out
    out["rel_diff"] = abs(c - b) / abs(b)
    out["within"] = out["rel_diff"] <= tolerance
    return out


def headline(cmp: dict) -> str:
    """One line for terminals and READMEs: speed, quality, budget."""
    tps = cmp["metrics"]["tokens_per_s"]
    if tps["ratio"] is None:
        speed = f"tokens/s ratio n/a ({tps['reason']})"
    else:
        ci = f" [{tps['ci95'][0]:.3f}, {tps['ci95'][1]:.3f}]" if tps["ci95"] else ""
        speed = f"{cmp['ratio']} tokens/s {tps['ratio']:.3f}x{ci} {tps['verdict'] or 'no verdict'}"
    bp = cmp["bpb_parity"]
    within = "within" if bp["within"] else "NOT within"
    bpb = ("final val BPB n/a" if bp["within"] is None else
           f"final val BPB {within} {bp['tolerance_rel']:.0%} ({bp['rel_diff']:.2%})")
    n_bad = len(cmp["audit"]["mismatches"])
    audit = "budgets matched" if cmp["audit"]["matched"] else f"budget audit: {n_bad} mismatch(es)"
    return f"{speed}; {bpb}; {audit}"


def load_events(campaign_dir: str | Path, results: list[RunResult]) -> tuple[dict[str, list[Event]], list[str]]:
    """Each run's events from its events_path (relative to the campaign dir), and notes on what is missing."""
    events, notes = {}, []
    for r in results:
        path = Path(campaign_dir) / r.events_path if r.events_path else None
        if path is None or not path.is_file():
            notes.append(f"{r.run_id}: no events file{f' at {path}' if path else ''}")
            continue
        try:
            events[r.run_id] = read_events(path)
        except EventFormatError as e:
            notes.append(f"{r.run_id}: events unreadable: {e}")
    return events, notes


def compare_campaign_dir(campaign_dir: str | Path, *, save: bool = True, **kwargs) -> dict:
    """Load a campaign dir, compare it, and (by default) store the result in its campaign.json atomically."""
    campaign = Campaign.load(campaign_dir)
    results = campaign.results(campaign_dir)
    events, notes = load_events(campaign_dir, results)
    cmp = compare_campaign(campaign, results, events, campaign_dir=campaign_dir, **kwargs)
    cmp["notes"] = notes + cmp["notes"]
    if save:
        campaign.comparison = cmp
        campaign.save(campaign_dir)
    return cmp


def json_safe(value: Any) -> Any:
    """Recursively: non-finite floats -> None, numpy scalars -> Python numbers, tuples -> lists."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _campaign_parity(campaign: Campaign, results: list[RunResult], events_by_run: dict, campaign_dir,
                     want: bool | None, notes: list[str]) -> dict | None:
    impls = {r.implementation for r in results}
    both_arms_on_cpu = campaign.budget.get("device") == "cpu" and {arms.CANDIDATE, arms.BASELINE} <= impls
    if want is False or (want is None and not both_arms_on_cpu):
        return None   # automatic parity: only CPU campaigns that planned both arms
    pair = parity_pair(results)
    if isinstance(pair, str):
        notes.append(f"parity not computed: {pair}")
        return None
    ours, up = pair
    try:
        return parity_mod.compare_runs(
            events_by_run.get(ours.run_id, []), events_by_run.get(up.run_id, []),
            ours_checkpoint=_checkpoint(ours, campaign_dir, notes),
            upstream_checkpoint=_checkpoint(up, campaign_dir, notes),
            ours_run=ours.run_id, upstream_run=up.run_id)
    except parity_mod.ParityError as e:
        notes.append(f"parity not computed: {e}")
        return None


def parity_pair(results: list[RunResult]) -> tuple[RunResult, RunResult] | str:
    """The first ok upstream (baseline) run and the first ok ours (candidate) run seeded like upstream (42, fixed
    in its code)."""
    ups = [r for r in results if r.ok and r.implementation == arms.BASELINE and r.valid_for_parity]
    ours = [r for r in results if r.ok and r.implementation == arms.CANDIDATE and r.valid_for_parity]
    if not ups or not ours:
        return f"needs an ok, parity-valid run of both ours and upstream (have {len(ours)} and {len(ups)})"
    same = [o for o in ours if o.seed == parity_mod.UPSTREAM_SEED]
    if not same:
        return f"no ok ours run with upstream's fixed seed {parity_mod.UPSTREAM_SEED}"
    return same[0], ups[0]


def _checkpoint(run: RunResult, campaign_dir, notes: list[str]) -> Path | None:
    if not run.checkpoint_dir:
        return None
    path = Path(run.checkpoint_dir)
    path = path if path.is_absolute() or campaign_dir is None else Path(campaign_dir) / path
    if not path.is_dir():
        notes.append(f"{run.run_id}: checkpoint dir {path} is missing: weights not compared")
        return None
    return path


def _check_options(bpb_tolerance: float, threshold: float) -> None:
    if not (isinstance(bpb_tolerance, (int, float)) and 0 < bpb_tolerance < 1):
        raise ValueError(f"bpb_tolerance={bpb_tolerance!r}: must be a relative tolerance in (0, 1), e.g. 0.01 for 1 %")
    if not (isinstance(threshold, (int, float)) and 0 <= threshold < 1):
        raise ValueError(f"threshold={threshold!r}: must be a relative change in [0, 1), e.g. 0.02 for 2 %")
