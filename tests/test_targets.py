"""harness/targets.py: reading an eval curve at a target BPB (time, tokens, FLOPs), upstream's compute multiplier,
and the matched-quality figures of the committed exact-parity smoke campaign."""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from harness import targets
from harness.compare import compare_campaign_dir
from protocol.events import EvalEvent, StepEvent

REPO = Path(__file__).resolve().parents[1]
PARITY_SMOKE = REPO / "reports" / "20261202-162713-smoke"   # exact parity, 3 measured repeats per arm


def events(bpbs: dict[int, float], n_steps: int, dt=lambda s: 0.5):
    """Step records 0..n-1 with dt(step) seconds each, and evals at the given steps."""
    out = []
    for s in range(n_steps + 1):
        if s in bpbs:
            out.append(EvalEvent(step=s, val_bpb=bpbs[s]))
        if s < n_steps:
            out.append(StepEvent(step=s, loss=1.0, lrm=1.0, dt_s=dt(s), tokens_per_s=1.0))
    return out


def test_the_curve_counts_start_up_steps_at_the_steady_median_and_eval_steps_alike():
    ev = events({0: 3.0, 4: 2.5, 8: 2.0}, 8, dt=lambda s: 60.0 if s == 0 else 0.5)   # step 0: a 60 s compile
    pts = targets.curve(ev, tokens_per_step=100, steady_state_skip=1, flops_per_token=10.0)
    assert [(p.step, p.time_s, p.tokens, p.flops) for p in pts] == [(0, 0.0, 0, 0.0), (4, 2.0, 400, 4000.0),
                                                                   (8, 4.0, 800, 8000.0)]


def test_the_crossing_is_interpolated_linearly_in_log_bpb_between_the_bracketing_evals():
    pts = targets.curve(events({0: 4.0, 10: 1.0}, 10), tokens_per_step=10, steady_state_skip=0, flops_per_token=None)
    got = targets.reach(pts, 2.0)                 # log-halfway from 4 to 1
    assert got.reached and got.step == pytest.approx(5.0) and got.time_s == pytest.approx(2.5)
    assert got.tokens == pytest.approx(50.0) and got.flops is None   # no FLOPs per token: no FLOPs, not 0


def test_a_target_never_reached_is_not_reached_and_never_extrapolated():
    pts = targets.curve(events({0: 3.0, 5: 2.6, 10: 2.4}, 10), tokens_per_step=1, steady_state_skip=0,
                        flops_per_token=1.0)
    assert targets.reach(pts, 2.3) == targets.Reach(False)
    assert targets.reach(pts, 3.5).step == 0      # already there before training: reached at 0


def test_a_bpb_within_upstreams_printed_resolution_of_the_target_reaches_it():
    pts = targets.curve(events({0: 3.0, 10: 2.350596}, 10), tokens_per_step=1, steady_state_skip=0,
                        flops_per_token=1.0)
    assert targets.reach(pts, 2.3505953).step == 10              # 0.7e-6 above: rounding, reached at the eval
    assert not targets.reach(pts, 2.350594).reached              # 2e-6 above: a real difference
    # exactly one unit above a mean target whose float sum fell just below its printed value (a measured case)
    printed = [2.627726, 2.627725, 2.627727, 2.627726, 2.627726, 2.627726]
    mean_target = sum(printed) / len(printed)
    assert mean_target < 2.627726
    one_unit = targets.curve(events({0: 3.0, 10: 2.627727}, 10), tokens_per_step=1, steady_state_skip=0,
                             flops_per_token=1.0)
    assert targets.reach(one_unit, mean_target).step == 10


def test_compute_multiplier_reads_the_baseline_in_log_flops_log_bpb_as_upstream_defines_it():
    base = targets.curve(events({0: 4.0, 10: 2.0, 40: 1.0}, 40), tokens_per_step=1, steady_state_skip=0,
                         flops_per_token=1.0)
    cand = targets.curve(events({0: 4.0, 20: 1.0 * 2 ** 0.5}, 20), tokens_per_step=1, steady_state_skip=0,
                         flops_per_token=1.0)
    cm = targets.compute_multiplier(base, cand)
    # the baseline reaches sqrt(2) log-halfway between 10 and 40 FLOPs: 20; the candidate spent 20
    assert cm.baseline_flops == pytest.approx(20.0) and cm.candidate_flops == 20 and cm.cm == pytest.approx(1.0)
    assert not cm.extrapolated


def test_compute_multiplier_past_the_baselines_curve_is_extrapolated_and_flagged():
    base = targets.curve(events({0: 4.0, 10: 2.0, 20: 1.6}, 20), tokens_per_step=1, steady_state_skip=0,
                         flops_per_token=1.0)
    cand = targets.curve(events({0: 4.0, 20: 1.2}, 20), tokens_per_step=1, steady_state_skip=0, flops_per_token=1.0)
    cm = targets.compute_multiplier(base, cand)
    assert cm.extrapolated and cm.cm > 1.0        # the baseline would need more than 20 FLOPs for 1.2
    slope = math.log(1.6 / 2.0) / math.log(20 / 10)
    assert cm.baseline_flops == pytest.approx(10 * (1.2 / 2.0) ** (1 / slope))


def test_no_multiplier_without_flops_or_with_a_single_usable_eval():
    no_flops = targets.curve(events({0: 4.0, 10: 2.0}, 10), tokens_per_step=1, steady_state_skip=0,
                             flops_per_token=None)
    one = targets.curve(events({0: 4.0, 10: 2.0}, 10), tokens_per_step=1, steady_state_skip=0, flops_per_token=1.0)
    assert targets.compute_multiplier(one, no_flops) is None
    assert targets.compute_multiplier(one, one) is None   # step 0 has no log FLOPs: one point left, no segment


@pytest.fixture(scope="module")
def parity_smoke(tmp_path_factory):
    copy = tmp_path_factory.mktemp("smoke") / PARITY_SMOKE.name
    shutil.copytree(PARITY_SMOKE, copy)
    return copy


def test_on_the_exact_parity_smoke_campaign_every_multiplier_is_1_00_within_its_interval(parity_smoke):
    cmp = compare_campaign_dir(parity_smoke, save=False)
    assert cmp.targets["target_bpb"] == pytest.approx(2.3505953, abs=1e-6)
    assert cmp.targets["not_reached"] == {"baseline": [], "candidate": []}
    for name in ("tokens_to_target", "flops_to_target", "compute_multiplier"):
        m = cmp.metrics[name]
        assert m.interval == "ci" and m.n_pairs == 3, name
        assert round(m.ratio, 2) == 1.0 and 0.995 < m.ci95[0] <= m.ci95[1] < 1.005, (name, m.ratio, m.ci95)
    t = cmp.metrics["time_to_target_s"]
    assert t.ci95[0] < 1 < t.ci95[1] and t.verdict == "~"   # speed at parity: the interval holds 1


def test_a_target_no_arm_reaches_gives_no_ratio_and_names_both_arms(parity_smoke):
    cmp = compare_campaign_dir(parity_smoke, save=False, target_bpb=2.0)
    m = cmp.metrics["time_to_target_s"]
    assert m.ratio is None and "upstream did not reach it in" in m.reason and "ours did not reach it in" in m.reason
    assert cmp.targets["source"].startswith("given")
    assert cmp.metrics["compute_multiplier"].ratio is not None   # anchored at the candidate's own final BPB


def test_a_given_target_stays_with_the_stored_comparison_until_baseline_is_asked(parity_smoke):
    compare_campaign_dir(parity_smoke, target_bpb=2.5)
    assert compare_campaign_dir(parity_smoke, save=False).targets["target_bpb"] == 2.5
    again = compare_campaign_dir(parity_smoke, target_bpb="baseline")
    assert again.targets["target_bpb"] == pytest.approx(2.3505953, abs=1e-6)


def test_a_bad_target_is_refused_with_the_fix(parity_smoke):
    with pytest.raises(ValueError, match="target_bpb=-1.0: must be a positive finite val BPB"):
        compare_campaign_dir(parity_smoke, save=False, target_bpb=-1.0)
