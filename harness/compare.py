"""A campaign's comparison: per-metric ratios with bootstrap CIs and verdicts, BPB parity, the audit, parity.

``compare_campaign`` reads only RunResults and events (it never runs anything) and returns a
``harness.comparison.Comparison`` (the typed record, serialised once by its ``to_dict`` into
``campaign.comparison``); the report, README findings and the parity verb read it back. Ratios are
candidate/baseline (``ours/upstream`` by default) over the ok measured runs (warm-up runs are recorded, never
compared); the two arms' runs of one round (same seed and repeat, adjacent in the interleaved order) are analysed
as a pair (harness/stats.py). Failed runs are listed, not averaged.
What it returns holds no NaN or infinity (unmeasurable = None), exactly as campaign.json will.
"""
from __future__ import annotations

import math
from pathlib import Path

from harness import audit as audit_mod
from harness import noise
from harness import metrics as metric_registry
from harness import parity as parity_mod
from harness import stats
from harness import targets as targets_mod
from harness.adapters import registry as arms
from harness.comparison import BpbParity, Comparison, FailedRun, MetricComparison
from protocol.events import Event, EventFormatError, read_events
from protocol.upstream_output import SEED as UPSTREAM_SEED
from harness.results import Campaign, RunResult, run_file

BPB_TOLERANCE = 0.01  # relative: "our BPB is within 1 % of upstream's"


def compare_campaign(campaign: Campaign, results: list[RunResult], events_by_run: dict[str, list[Event]], *,
                     campaign_dir: str | Path | None = None, baseline: str | None = None,
                     candidate: str | None = None, bpb_tolerance: float = BPB_TOLERANCE,
                     threshold: float = stats.PRACTICAL_THRESHOLD, ci_method: str = stats.CI_METHOD,
                     parity: bool | None = None, target_bpb: float | None = None) -> Comparison:
    """The campaign's Comparison. ``parity``: None = on CPU campaigns, True/False = force. ``target_bpb``: the
    matched-quality target (default: the baseline's mean final val BPB; harness/targets.py)."""
    _check_options(bpb_tolerance, threshold, target_bpb)
    baseline, candidate = pick_arms(results, baseline, candidate)
    ok = {impl: [r for r in results if r.ok and r.measured and r.implementation == impl]
          for impl in (baseline, candidate) if impl}
    base_runs, cand_runs = ok.get(baseline, []), ok.get(candidate, [])
    targets = (targets_mod.campaign_targets(base_runs, cand_runs, round_pairs(base_runs, cand_runs), events_by_run,
                                            target_bpb) if candidate else None)
    cmp = Comparison(
        baseline=baseline, candidate=candidate, ratio=f"{candidate}/{baseline}" if candidate else None,
        statistics=_statistics(ci_method, threshold), arms=_arms(results),
        metrics={m.name: metric_entry(m.name, base_runs, cand_runs, candidate is not None, threshold=threshold,
                                      ci_method=ci_method, targets=targets, arm_names=(baseline, candidate))
                 for m in metric_registry.compared()},
        bpb_parity=bpb_parity(base_runs, cand_runs, bpb_tolerance),
        audit=audit_mod.audit_runs([r for r in results if r.measured], events_by_run),
        failed_runs=[FailedRun(r.run_id, r.implementation, r.seed, r.repeat, r.status, r.error)
                     for r in results if not r.ok],
        disturbed_runs=[r.run_id for r in results if r.measured and r.disturbed], targets=targets)
    if candidate is None:
        cmp.notes.append(f"only one implementation ({baseline}) ran ok or was planned: no ratios")
    cmp.parity = _campaign_parity(campaign, results, events_by_run, campaign_dir, parity, cmp.notes)
    if cmp.parity is not None:
        cmp.parity = parity_mod.unmatched(cmp.parity, cmp.audit["mismatches"])
    cmp.headline = headline(cmp)
    return Comparison.from_dict(cmp.to_dict())   # normalised as stored: no NaN, no numpy scalars


def _statistics(ci_method: str, threshold: float) -> dict:
    if ci_method in stats.BOOTSTRAP_METHODS:
        how = f"bootstrap ({ci_method}) of the ratio of means over independent repeats (scipy.stats.bootstrap)"
    else:
        how = ("t-interval on the mean log-ratio over adjacent (candidate, baseline) pairs of the same round "
               f"({stats.PAIRED}); Welch t on log values where pairing is impossible ({stats.UNPAIRED})")
    return {"ci": how, "ci_method": ci_method, "confidence": stats.CONFIDENCE, "n_resamples": stats.N_RESAMPLES,
            "seed": stats.SEED, "practical_threshold": threshold, "min_repeats": stats.MIN_REPEATS,
            "min_repeats_for_ci": stats.MIN_CI_REPEATS}


def _arms(results: list[RunResult]) -> dict:
    impls = dict.fromkeys(r.implementation for r in results)
    return {impl: {"ok": [r.run_id for r in results if r.implementation == impl and r.ok and r.measured],
                   "not_ok": [r.run_id for r in results if r.implementation == impl and not r.ok],
                   "warmup": [r.run_id for r in results if r.implementation == impl and not r.measured]}
            for impl in impls}


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
                 threshold: float = stats.PRACTICAL_THRESHOLD, ci_method: str = stats.CI_METHOD,
                 targets: dict | None = None, arm_names: tuple[str, str | None] = ("baseline", "candidate")
                 ) -> MetricComparison:
    """One metric's means, std, ratio, CI and verdict over the ok runs of each arm. ``targets``: the comparison's
    target block (harness/targets.py), which per-target metrics read; a to-target ratio is given only when every
    run of both arms reached the target."""
    metric = metric_registry.get(name)
    direction = metric.direction
    per_run = (targets or {}).get("runs")
    b_vals = [metric.value(r, per_run) for r in base_runs]
    c_vals = [metric.value(r, per_run) for r in cand_runs]
    pairs = [(metric.value(b, per_run), metric.value(c, per_run)) for b, c in round_pairs(base_runs, cand_runs)]
    res = stats.compare_samples(b_vals, c_vals, direction, pairs=pairs, threshold=threshold, method=ci_method)
    if not two_arms:
        res = stats.RatioResult(None, None, ci_method, None, "only one implementation: nothing to compare")
    elif metric.per_target and targets is None:
        res = stats.RatioResult(None, None, ci_method, None, "no target BPB: no baseline BPB measured and none given")
    elif metric.per_target and name != "compute_multiplier":
        why = targets_mod.not_reached_reason(targets, *arm_names)
        if why:
            res = stats.RatioResult(None, None, ci_method, None, why, threshold=threshold)
    return MetricComparison(label=metric.label, unit=metric.unit,
                            better="higher" if direction.higher_is_better else "lower",
                            words=[direction.up_word, direction.down_word], baseline=stats.describe(b_vals),
                            candidate=stats.describe(c_vals), **res.to_dict())


def round_pairs(base_runs: list[RunResult], cand_runs: list[RunResult]) -> list[tuple[RunResult, RunResult]]:
    """(baseline, candidate) runs of the same round (seed, repeat): adjacent in the interleaved plan."""
    cand = {(r.seed, r.repeat): r for r in cand_runs}
    return [(b, cand[(b.seed, b.repeat)]) for b in base_runs if (b.seed, b.repeat) in cand]


def bpb_parity(base_runs: list[RunResult], cand_runs: list[RunResult], tolerance: float = BPB_TOLERANCE) -> BpbParity:
    """Is the candidate's mean final val BPB within ``tolerance`` (relative) of the baseline's?"""
    b = stats.describe([r.summary.final_val_bpb for r in base_runs]).mean
    c = stats.describe([r.summary.final_val_bpb for r in cand_runs]).mean
    out = BpbParity(metric="final_val_bpb", tolerance_rel=tolerance, baseline_mean=b, candidate_mean=c)
    if b is None or c is None or b == 0:
        out.reason = "final val BPB not measured in an ok run of both arms"
        return out
    out.rel_diff = abs(c - b) / abs(b)
    out.within = out.rel_diff <= tolerance
    return out


def headline(cmp: Comparison) -> str:
    """One line for terminals and READMEs: speed, quality, budget."""
    tps = cmp.metrics["tokens_per_s"]
    if tps.ratio is None:
        speed = f"tokens/s ratio n/a ({tps.reason})"
    else:
        if tps.ci95:
            ci = f" [{tps.ci95[0]:.3f}, {tps.ci95[1]:.3f}] (95 % CI)"
        elif tps.range:
            ci = f" [{tps.range[0]:.3f}, {tps.range[1]:.3f}] (range, n={tps.n_pairs or 2})"
        else:
            ci = ""
        words = stats.judgement(tps.verdict, tps.interval, tps.significant, tps.beyond_threshold, tps.threshold)
        speed = f"{cmp.ratio} tokens/s {tps.ratio:.3f}x{ci} {words if tps.interval else (tps.verdict or 'no verdict')}"
    bp = cmp.bpb_parity
    within = "within" if bp.within else "NOT within"
    bpb = ("final val BPB n/a" if bp.within is None else
           f"final val BPB {within} {bp.tolerance_rel:.0%} ({bp.rel_diff:.2%})")
    n_bad = len(cmp.audit["mismatches"])
    audit = "budgets matched" if cmp.audit["matched"] else f"budget audit: {n_bad} mismatch(es)"
    disturbed = (f"; DISTURBED runs (machine busy): {', '.join(cmp.disturbed_runs)}" if cmp.disturbed_runs
                 else "")
    return f"{speed}; {bpb}; {audit}{disturbed}"


def load_events(campaign_dir: str | Path, results: list[RunResult]) -> tuple[dict[str, list[Event]], list[str]]:
    """Each run's events from its events_path (relative to the campaign dir), and notes on what is missing."""
    events, notes = {}, []
    for r in results:
        path = run_file(campaign_dir, r, "events_path")
        if path is None or not path.is_file():
            notes.append(f"{r.run_id}: no events file{f' at {path}' if path else ''}")
            continue
        try:
            events[r.run_id] = read_events(path)
        except EventFormatError as e:
            notes.append(f"{r.run_id}: events unreadable: {e}")
    return events, notes


def compare_campaign_dir(campaign_dir: str | Path, *, save: bool = True, campaign: Campaign | None = None,
                         **kwargs) -> Comparison:
    """Compare a campaign dir (``campaign``: its state already in memory, else read from campaign.json) and, by
    default, store the result in its campaign.json atomically."""
    campaign = campaign or Campaign.load(campaign_dir)
    kwargs["target_bpb"] = kept_target(campaign, kwargs.get("target_bpb"))
    results = campaign.results(campaign_dir)
    events, notes = load_events(campaign_dir, results)
    cmp = compare_campaign(campaign, results, events, campaign_dir=campaign_dir, **kwargs)
    cmp.notes = notes + cmp.notes
    if not noise.is_aa({"candidate": cmp.candidate}):
        cmp.noise_floor = noise.find(campaign_dir, campaign.preset, campaign.machine)
    if save:
        campaign.comparison = cmp.to_dict()
        campaign.save(campaign_dir)
    return cmp


def kept_target(campaign: Campaign, target_bpb: float | str | None) -> float | None:
    """The target BPB to compare with: the one given (``"baseline"`` = the default again), else one given
    before and stored in the campaign's comparison, else None (the baseline's mean final BPB)."""
    if target_bpb == "baseline":
        return None
    if target_bpb is not None:
        return target_bpb
    stored = ((campaign.comparison or {}).get("targets") or {})
    return stored.get("target_bpb") if str(stored.get("source", "")).startswith("given") else None


def _campaign_parity(campaign: Campaign, results: list[RunResult], events_by_run: dict, campaign_dir,
                     want: bool | None, notes: list[str]) -> dict | None:
    impls = {r.implementation for r in results}
    both_arms_on_cpu = campaign.budget.get("device") == "cpu" and {arms.CANDIDATE, arms.BASELINE} <= impls
    if want is False or (want is None and not both_arms_on_cpu):
        return None   # automatic parity: only CPU campaigns that planned both arms
    kernels = campaign.budget.get("kernels", "parity")  # campaigns from before the key ran upstream's order
    if want is None and kernels != "parity":
        notes.append(f"exact parity not judged: ours ran its {kernels!r} kernels (the same maths in another order, "
                     f"so other rounding, which the smoke budget amplifies); the parity verb (nanochat-bench parity) "
                     f"runs the exact-parity check with upstream's order")
        return None
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
    ups = [r for r in results if r.ok and r.measured and r.implementation == arms.BASELINE and r.valid_for_parity]
    ours = [r for r in results if r.ok and r.measured and r.implementation == arms.CANDIDATE and r.valid_for_parity]
    if not ups or not ours:
        return f"needs an ok, parity-valid run of both ours and upstream (have {len(ours)} and {len(ups)})"
    same = [o for o in ours if o.seed == UPSTREAM_SEED]
    if not same:
        return f"no ok ours run with upstream's fixed seed {UPSTREAM_SEED}"
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


def _check_options(bpb_tolerance: float, threshold: float, target_bpb: float | None = None) -> None:
    if target_bpb is not None and (isinstance(target_bpb, bool) or not isinstance(target_bpb, (int, float))
                                   or not math.isfinite(target_bpb) or target_bpb <= 0):
        raise ValueError(f"target_bpb={target_bpb!r}: must be a positive finite val BPB, e.g. --target-bpb 2.4")
    if not (isinstance(bpb_tolerance, (int, float)) and 0 < bpb_tolerance < 1):
        raise ValueError(f"bpb_tolerance={bpb_tolerance!r}: must be a relative tolerance in (0, 1), e.g. 0.01 for 1 %")
    if not (isinstance(threshold, (int, float)) and 0 <= threshold < 1):
        raise ValueError(f"threshold={threshold!r}: must be a relative change in [0, 1), e.g. 0.02 for 2 %")
