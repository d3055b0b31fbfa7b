"""Time-to-target, compute-to-target and the compute multiplier: reading one run's eval curve at a target BPB.

Owns the arithmetic of "matched quality" (docs/measurement.md, "Matched quality"); pure functions of a run's
events and summary, nothing is run. harness/compare.py calls it and stores what it returns in the comparison.

- **Curve** (``curve``): the run's evals (step k = before step k's update, so k steps of training are done), each
  with the training tokens (k x tokens per step), the FLOPs (tokens x flops_per_token) and the training time at
  that point: the steady-state step times of steps 0..k-1 summed, the start-up/compile steps before
  ``steady_state_skip`` (and any step an eval shares, as in the throughput figures) counted at the run's steady
  median instead of their measured time (harness/summarize.py's steady steps).
- **Reach** (``reach``): the first eval at or below the target; between it and the eval before, the crossing is
  interpolated linearly in log-BPB (fraction ``w``; within ``BPB_RESOLUTION`` of the target counts as reached), and time, tokens and FLOPs are taken at the same fraction
  between the two evals' values. An eval already at or below the target at step 0 reaches it at 0. A curve that
  never gets to the target is "not reached" (no value, never an extrapolation).
- **Compute multiplier** (``compute_multiplier``), as upstream's experiment branch defines it (scripts/compare.py
  there; our own code): CM = baseline FLOPs to reach the candidate's final BPB / the candidate's total FLOPs, the
  baseline's curve read piecewise-linearly in (log FLOPs, log BPB); beyond the measured range the boundary segment
  is extrapolated and the result flagged ``extrapolated``. CM > 1: the candidate needs less compute.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

from protocol.events import EvalEvent, Event, StepEvent
from protocol.upstream_output import LOSS_DECIMALS

# A BPB within one unit of upstream's printed last digit (6 decimals) of the target counts as reaching it: upstream's
# val BPB is known only to +-0.5e-6 (rounded when printed), and so is a mean of such values; two such errors add up
# to 1e-6. Without it, the default target (the baseline's mean) is "not reached" by a baseline repeat that printed
# 2.350596 against a mean of 2.3505953.
BPB_RESOLUTION = 10.0 ** -LOSS_DECIMALS


@dataclass
class Point:
    """One eval of a run: how far training had got, and the BPB there."""
    step: int
    bpb: float
    time_s: float
    tokens: int
    flops: float | None


@dataclass
class Reach:
    """Where a run's curve reaches the target (all None when not reached)."""
    reached: bool
    step: float | None = None
    time_s: float | None = None
    tokens: float | None = None
    flops: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def curve(events: list[Event], *, tokens_per_step: int, steady_state_skip: int,
          flops_per_token: float | None) -> list[Point]:
    """The run's eval curve with cumulative training time, tokens and FLOPs at each eval step."""
    steps = {e.step: e.dt_s for e in events if isinstance(e, StepEvent) and e.dt_s is not None}
    evals = [e for e in events if isinstance(e, EvalEvent) and e.val_bpb is not None]
    eval_steps = {e.step for e in evals}
    steady = [dt for s, dt in steps.items() if s >= steady_state_skip and s not in eval_steps and dt > 0]
    typical = statistics.median(steady) if steady else None
    out = []
    for e in sorted(evals, key=lambda e: e.step):
        out.append(Point(step=e.step, bpb=e.val_bpb, time_s=_time_before(e.step, steps, eval_steps, steady_state_skip, typical),
                         tokens=e.step * tokens_per_step,
                         flops=e.step * tokens_per_step * flops_per_token if flops_per_token else None))
    return out


def _time_before(k: int, steps: dict[int, float], eval_steps: set[int], skip: int, typical: float | None) -> float:
    """Training time of steps 0..k-1: measured where steady, the steady median where start-up/compile/eval."""
    total = 0.0
    for s in range(k):
        steady = s >= skip and s not in eval_steps and steps.get(s, 0) > 0
        if steady:
            total += steps[s]
        elif typical is not None:
            total += typical
        else:
            return math.nan
    return total


def reach(points: list[Point], target_bpb: float) -> Reach:
    """The first crossing of ``target_bpb`` (interpolated linearly in log-BPB), or not reached."""
    # The slack (a millionth of the resolution) absorbs float summation error in a mean target: six prints that
    # average 2.627726 sum to a mean of 2.6277259999999996, and a run that printed 2.627727 is within one unit.
    limit = target_bpb + BPB_RESOLUTION * (1 + 1e-6)
    for i, p in enumerate(points):
        if p.bpb > limit:
            continue
        if i == 0 or p.bpb >= target_bpb:
            return _at(p, p, 0.0)
        prev = points[i - 1]
        w = (math.log(prev.bpb) - math.log(target_bpb)) / (math.log(prev.bpb) - math.log(p.bpb))
        return _at(prev, p, w)
    return Reach(False)


def _at(a: Point, b: Point, w: float) -> Reach:
    lerp = (lambda x, y: None if x is None or y is None or math.isnan(x) or math.isnan(y) else x + w * (y - x))
    return Reach(True, step=lerp(a.step, b.step), time_s=lerp(a.time_s, b.time_s), tokens=lerp(a.tokens, b.tokens),
                 flops=lerp(a.flops, b.flops))


@dataclass
class Multiplier:
    """Upstream's compute multiplier of one (baseline, candidate) pair."""
    anchor_bpb: float                 # the candidate's final BPB
    baseline_flops: float             # baseline FLOPs to reach the anchor (interpolated or extrapolated)
    candidate_flops: float            # the candidate's total training FLOPs
    cm: float                         # baseline_flops / candidate_flops
    extrapolated: bool                # the anchor lies outside the baseline's measured curve

    def to_dict(self) -> dict:
        return asdict(self)


def flops_at_bpb(points: list[Point], target_bpb: float) -> tuple[float, bool] | None:
    """(FLOPs, extrapolated) where the curve (log FLOPs, log BPB) reaches ``target_bpb``; evals at 0 FLOPs
    (step 0) have no logarithm and are left out. None: fewer than 2 usable evals or a flat boundary segment."""
    pts = [(p.flops, p.bpb) for p in points if p.flops and p.flops > 0 and p.bpb > 0]
    if len(pts) < 2:
        return None
    for p0, p1 in zip(pts, pts[1:]):
        if p1[1] <= target_bpb <= p0[1] and p0[1] != p1[1]:
            return _solve(p0, p1, target_bpb), False
    p0, p1 = (pts[0], pts[1]) if target_bpb > pts[0][1] else (pts[-2], pts[-1])
    if p0[1] == p1[1]:
        return None
    return _solve(p0, p1, target_bpb), True


def _solve(p0: tuple[float, float], p1: tuple[float, float], target_bpb: float) -> float:
    (f0, b0), (f1, b1) = p0, p1
    w = (math.log(b0) - math.log(target_bpb)) / (math.log(b0) - math.log(b1))
    return math.exp((1 - w) * math.log(f0) + w * math.log(f1))


def compute_multiplier(baseline: list[Point], candidate: list[Point]) -> Multiplier | None:
    """CM of one pair: None when either curve has no FLOPs or the baseline's cannot be read at the anchor."""
    if not candidate or candidate[-1].flops is None or candidate[-1].flops <= 0:
        return None
    anchor, total = candidate[-1].bpb, candidate[-1].flops
    found = flops_at_bpb(baseline, anchor)
    if found is None:
        return None
    flops, extrapolated = found
    return Multiplier(anchor_bpb=anchor, baseline_flops=flops, candidate_flops=total, cm=flops / total,
                      extrapolated=extrapolated)


# ---------------------------------------------------------------- one campaign

INTERPOLATION = ("first eval at or below the target; linear in log-BPB between it and the eval before; time, "
                 "tokens and FLOPs at the same fraction between the two evals' values; training time = steady-state "
                 "step times, start-up/compile steps counted at the run's steady median")
CM_DEFINITION = ("upstream's (experiment_refactor scripts/compare.py): baseline FLOPs to reach the candidate's final "
                 "BPB ÷ the candidate's total FLOPs, per round pair; the baseline curve read piecewise-linearly in "
                 "(log FLOPs, log BPB), extrapolated past its range and then flagged")


def run_curve(run, events: list[Event]) -> list[Point]:
    """The eval curve of one RunResult (its budget's tokens per step, its summary's skip and FLOPs per token)."""
    return curve(events, tokens_per_step=int(run.budget["total_batch_size"]),
                 steady_state_skip=run.summary.steady_state_skip or 0, flops_per_token=run.summary.flops_per_token)


def default_target(base_runs) -> float | None:
    """The baseline arm's final val BPB, mean over its measured ok repeats."""
    vals = [r.summary.final_val_bpb for r in base_runs if r.summary.final_val_bpb is not None]
    return sum(vals) / len(vals) if vals else None


def campaign_targets(base_runs, cand_runs, pairs, events_by_run: dict, target_bpb: float | None = None) -> dict | None:
    """The comparison's ``targets`` block: the target, how it was chosen, each run's reach and compute multiplier,
    and which runs did not reach the target. None when there is no target (no baseline BPB and none given)."""
    source = "given (--target-bpb)" if target_bpb is not None else f"the baseline's final val BPB, mean of {len(base_runs)} measured run(s)"
    target = target_bpb if target_bpb is not None else default_target(base_runs)
    if target is None:
        return None
    curves = {r.run_id: run_curve(r, events_by_run.get(r.run_id, [])) for r in list(base_runs) + list(cand_runs)}
    runs = {}
    for r in list(base_runs) + list(cand_runs):
        got = reach(curves[r.run_id], target)
        runs[r.run_id] = {"reached": got.reached, "step_to_target": got.step, "time_to_target_s": got.time_s,
                          "tokens_to_target": got.tokens, "flops_to_target": got.flops, "compute_multiplier": None}
    multipliers = {}
    for b, c in pairs:
        cm = compute_multiplier(curves[b.run_id], curves[c.run_id])
        if cm is not None:
            multipliers[c.run_id] = cm.to_dict() | {"baseline_run": b.run_id}
            runs[c.run_id]["compute_multiplier"] = cm.cm
            runs[b.run_id]["compute_multiplier"] = 1.0   # the baseline against itself, by definition
    arms = {"baseline": base_runs, "candidate": cand_runs}
    return {"target_bpb": target, "source": source, "interpolation": INTERPOLATION,
            "compute_multiplier_definition": CM_DEFINITION, "runs": runs, "multipliers": multipliers,
            "not_reached": {role: [r.run_id for r in rs if not runs[r.run_id]["reached"]] for role, rs in arms.items()}}


def not_reached_reason(targets: dict, baseline: str, candidate: str) -> str | None:
    """Why a to-target ratio is not given: which arm's runs did not reach the target; None when all did."""
    missing = targets.get("not_reached") or {}
    parts = [f"{name} did not reach it in {', '.join(missing[role])}" for role, name in
             (("baseline", baseline), ("candidate", candidate)) if missing.get(role)]
    return f"target BPB {targets['target_bpb']:.4f} not reached: {'; '.join(parts)}" if parts else None
