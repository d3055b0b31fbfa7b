"""compare_campaign: the documented dict shape, verdicts from repeats, BPB parity, failed runs, no NaN.

Runs are hand-made (tests/fixtures/results/builders.py: real RunResult objects, events written through EventWriter);
each test sets the summary figures it is about.
"""
from __future__ import annotations

import json

import pytest
import torch

from harness import metrics
from harness.compare import compare_campaign, compare_campaign_dir, pick_arms
from harness.comparison import json_safe
from harness.results import Campaign, CampaignRun, Interference
from tests.fixtures.results.builders import BUDGET, make_run

TOP_KEYS = {"schema_version", "baseline", "candidate", "ratio", "statistics", "arms", "metrics", "bpb_parity", "audit",
            "failed_runs", "headline", "notes", "disturbed_runs", "noise_floor", "targets"}
METRIC_KEYS = {"label", "unit", "better", "words", "baseline", "candidate", "ratio", "ci95", "ci_method", "verdict",
               "reason", "interval", "range", "n_pairs", "significant", "beyond_threshold", "threshold"}



def compare_json(*args, **kwargs) -> dict:
    """The comparison as campaign.json stores it (Comparison.to_dict)."""
    return compare_campaign(*args, **kwargs).to_dict()


def compare_dir_json(*args, **kwargs) -> dict:
    return compare_campaign_dir(*args, **kwargs).to_dict()


def _summary(tps: float, bpb: float = 2.3, **kw) -> dict:
    base = {"tokens_per_s": tps, "steps_per_s": tps / 256, "train_time_s": 2560 / tps, "peak_rss_bytes": 9e8,
            "final_val_bpb": bpb, "min_val_bpb": bpb, "peak_gpu_mem_bytes": None, "energy_per_token_j": None,
            "mfu_percent": 30.0}
    return {**base, **kw}


def _campaign(tmp_path, specs, device="cpu"):
    """specs: (run_id, impl, summary dict, extra make_run kwargs)."""
    runs = [make_run(tmp_path, rid, impl, summary=s, repeat=i, **kw) for i, (rid, impl, s, kw) in enumerate(specs)]
    camp = Campaign(campaign_id="c1", preset="tiny", budget={**BUDGET, "device": device},
                    runs=[CampaignRun(r.run_id, r.implementation, r.seed, r.repeat, r.status,
                                      f"runs/{r.run_id}/result.json") for r, _ in runs])
    return camp, [r for r, _ in runs], {r.run_id: ev for r, ev in runs}


def _two_by_two(tmp_path, up_tps=(1000.0, 1010.0), ours_tps=(1200.0, 1190.0), device="cpu", **ours_kw):
    specs = [("upstream-r0", "upstream", _summary(up_tps[0]), {}), ("ours-r0", "ours", _summary(ours_tps[0]), ours_kw),
             ("ours-r1", "ours", _summary(ours_tps[1]), ours_kw), ("upstream-r1", "upstream", _summary(up_tps[1]), {})]
    return _campaign(tmp_path, specs, device)


def test_comparison_has_the_documented_shape_and_is_strict_json(tmp_path):
    cmp = compare_json(*_two_by_two(tmp_path, device="cuda"))
    assert set(cmp) == TOP_KEYS
    assert list(cmp["metrics"]) == [m.name for m in metrics.compared()]
    assert all(set(m) == METRIC_KEYS for m in cmp["metrics"].values())
    assert (cmp["baseline"], cmp["candidate"], cmp["ratio"]) == ("upstream", "ours", "ours/upstream")
    assert cmp["arms"] == {"upstream": {"ok": ["upstream-r0", "upstream-r1"], "not_ok": [], "warmup": []},
                           "ours": {"ok": ["ours-r0", "ours-r1"], "not_ok": [], "warmup": []}}
    json.dumps(cmp, allow_nan=False)


def _rounds(tmp_path, up_tps, ours_tps, warmup: bool = False, disturbed: set[str] = frozenset()):
    """Interleaved rounds (A B, B A, ...) with the pairs' seed and repeat, optionally a warm-up run per arm first."""
    specs = []
    if warmup:
        specs += [("ours-warmup", "ours", _summary(50.0), -1), ("upstream-warmup", "upstream", _summary(5000.0), -1)]
    for k, (u, o) in enumerate(zip(up_tps, ours_tps)):
        pair = [("ours", o), ("upstream", u)] if k % 2 == 0 else [("upstream", u), ("ours", o)]
        specs += [(f"{impl}-r{k}", impl, _summary(tps), k) for impl, tps in pair]
    runs = [make_run(tmp_path, rid, impl, summary=s, repeat=rep) for rid, impl, s, rep in specs]
    for r, _ in runs:
        if r.repeat < 0:
            r.phase = "warmup"
        if r.run_id in disturbed:
            r.interference = Interference(others_cores_mean=1.0, threshold_cores=0.25, disturbed=True, why="busy")
    camp = Campaign(campaign_id="c1", preset="tiny", budget=dict(BUDGET),
                    runs=[CampaignRun(r.run_id, r.implementation, r.seed, r.repeat, r.status,
                                      f"runs/{r.run_id}/result.json", phase=r.phase) for r, _ in runs])
    return camp, [r for r, _ in runs], {r.run_id: ev for r, ev in runs}


def test_faster_candidate_gets_faster_with_a_paired_ci_and_headline(tmp_path):
    cmp = compare_json(*_rounds(tmp_path, (1000.0, 1010.0, 1005.0), (1200.0, 1190.0, 1202.0)))
    tps = cmp["metrics"]["tokens_per_s"]
    assert tps["verdict"] == "faster" and tps["interval"] == "ci" and tps["n_pairs"] == 3
    assert tps["ci_method"] == "paired-t-log" and tps["ci95"][0] > 1.0 and tps["baseline"]["n"] == 3
    assert tps["ratio"] == pytest.approx((1200 / 1000 * 1190 / 1010 * 1202 / 1005) ** (1 / 3))   # geometric mean
    assert cmp["metrics"]["steps_per_s"]["verdict"] == "faster" and "train_time_s" not in cmp["metrics"]
    assert cmp["headline"].startswith("ours/upstream tokens/s 1.191x [")
    assert "(95 % CI) faster: statistically significant, beyond the 2 % practical threshold" in cmp["headline"]
    assert "final val BPB within 1% (0.00%); budgets matched" in cmp["headline"]


def test_two_repeats_per_arm_show_a_range_and_no_verdict(tmp_path):
    cmp = compare_json(*_two_by_two(tmp_path))
    tps = cmp["metrics"]["tokens_per_s"]
    assert tps["interval"] == "range" and tps["ci95"] is None and tps["verdict"] is None
    assert "(range, n=2) inconclusive" in cmp["headline"]


def test_warmup_runs_are_recorded_but_never_compared(tmp_path):
    cmp = compare_json(*_rounds(tmp_path, (1000.0, 1010.0, 1005.0), (1200.0, 1190.0, 1202.0), warmup=True))
    tps = cmp["metrics"]["tokens_per_s"]
    assert tps["baseline"]["values"] == [1000.0, 1010.0, 1005.0] and tps["candidate"]["n"] == 3
    assert cmp["arms"]["ours"]["warmup"] == ["ours-warmup"] and "ours-warmup" not in cmp["arms"]["ours"]["ok"]


def test_disturbed_runs_are_named_in_the_comparison_and_headline(tmp_path):
    cmp = compare_json(*_rounds(tmp_path, (1000.0, 1010.0, 1005.0), (1200.0, 1190.0, 1202.0),
                                disturbed={"upstream-r1"}))
    assert cmp["disturbed_runs"] == ["upstream-r1"]
    assert cmp["headline"].endswith("DISTURBED runs (machine busy): upstream-r1")
    clean = compare_json(*_rounds(tmp_path, (1000.0, 1010.0, 1005.0), (1200.0, 1190.0, 1202.0)))
    assert clean["disturbed_runs"] == [] and "DISTURBED" not in clean["headline"]


def test_unmeasured_metrics_have_a_reason_and_no_nan(tmp_path):
    camp, results, events = _two_by_two(tmp_path)
    results[1].summary.mfu_percent = float("nan")
    cmp = compare_json(camp, results, events)
    gpu = cmp["metrics"]["peak_gpu_mem_bytes"]
    assert gpu["ratio"] is None and gpu["verdict"] is None and "not measured" in gpu["reason"]
    assert cmp["metrics"]["mfu_percent"]["candidate"]["n"] == 1  # the NaN value is left out, not averaged
    json.dumps(cmp, allow_nan=False)


def test_one_repeat_per_arm_gives_ratios_but_no_verdicts(tmp_path):
    camp, results, events = _campaign(tmp_path, [("upstream-r0", "upstream", _summary(1000.0), {}),
                                                 ("ours-r0", "ours", _summary(1300.0), {})])
    tps = compare_json(camp, results, events)["metrics"]["tokens_per_s"]
    assert tps["ratio"] == pytest.approx(1.3) and tps["verdict"] is None
    assert "fewer than 2 ok repeats" in tps["reason"]


def test_failed_runs_are_listed_and_left_out_of_the_means(tmp_path):
    specs = [("upstream-r0", "upstream", _summary(1000.0), {}), ("ours-r0", "ours", _summary(1200.0), {}),
             ("ours-r1", "ours", _summary(5.0), {"status": "failed"}),
             ("upstream-r1", "upstream", _summary(1000.0), {}),
             ("ours-r2", "ours", _summary(1210.0), {})]
    camp, results, events = _campaign(tmp_path, specs)
    results[2].error = "exit code 1: CUDA out of memory"
    cmp = compare_json(camp, results, events)
    assert cmp["failed_runs"] == [{"run_id": "ours-r1", "implementation": "ours", "seed": 42, "repeat": 2,
                                   "status": "failed", "error": "exit code 1: CUDA out of memory"}]
    assert cmp["metrics"]["tokens_per_s"]["candidate"]["values"] == [1200.0, 1210.0]
    assert cmp["audit"]["excluded"] == ["ours-r1 (failed)"]


def test_bpb_parity_within_and_outside_the_tolerance(tmp_path):
    specs = [("upstream-r0", "upstream", _summary(1000.0, bpb=2.30), {}),
             ("ours-r0", "ours", _summary(1000.0, bpb=2.32), {})]
    camp, results, events = _campaign(tmp_path, specs)
    bp = compare_json(camp, results, events)["bpb_parity"]
    assert bp["within"] is True and bp["rel_diff"] == pytest.approx(0.02 / 2.30)
    assert compare_json(camp, results, events, bpb_tolerance=0.005)["bpb_parity"]["within"] is False


def test_a_budget_mismatch_reaches_the_headline(tmp_path):
    cmp = compare_json(*_two_by_two(tmp_path, tokens=9999))
    assert cmp["audit"]["matched"] is False
    assert "budget audit:" in cmp["headline"] and "mismatch" in cmp["headline"]


def test_cpu_campaign_carries_parity_with_checkpoints_relative_to_the_campaign(tmp_path):
    state = {"lm_head.weight": torch.ones(4, 4), "transformer.h.0.mlp.c_fc.weight": torch.zeros(8, 4)}
    for rid in ("upstream-r0", "ours-r0"):
        (tmp_path / "runs" / rid / "ck").mkdir(parents=True)
        torch.save(state, tmp_path / "runs" / rid / "ck" / "model_000010.pt")
    camp, results, events = _two_by_two(tmp_path)
    for r in results:
        r.checkpoint_dir = f"runs/{r.run_id}/ck" if r.run_id in ("upstream-r0", "ours-r0") else None
    cmp = compare_json(camp, results, events, campaign_dir=tmp_path)
    assert cmp["parity"]["verdict"] == "exact"
    assert (cmp["parity"]["ours_run"], cmp["parity"]["upstream_run"]) == ("ours-r0", "upstream-r0")
    assert cmp["parity"]["weights"]["groups"]["mlp"]["tensors"] == 1


def test_parity_is_skipped_on_gpu_and_explained_without_a_same_seed_pair(tmp_path):
    assert "parity" not in compare_json(*_two_by_two(tmp_path, device="cuda"))
    cmp = compare_json(*_two_by_two(tmp_path / "b", seed=7))
    assert "parity" not in cmp
    assert "parity not computed: no ok ours run with upstream's fixed seed 42" in cmp["notes"]


def test_exact_parity_is_judged_only_when_ours_ran_upstreams_order_of_operations(tmp_path):
    camp, results, events = _two_by_two(tmp_path)
    camp.budget = {**camp.budget, "kernels": "fast"}
    cmp = compare_json(camp, results, events)
    assert "parity" not in cmp
    assert any(n.startswith("exact parity not judged: ours ran its 'fast' kernels") for n in cmp["notes"])
    camp.budget["kernels"] = "parity"
    assert compare_json(camp, results, events)["parity"]["verdict"] == "exact"


def test_compare_campaign_dir_round_trips_through_campaign_json(tmp_path):
    camp, results, _ = _two_by_two(tmp_path)
    for r in results:
        r.save(tmp_path / "runs" / r.run_id / "result.json")
    camp.save(tmp_path)
    cmp = compare_dir_json(tmp_path)
    assert Campaign.load(tmp_path).comparison == cmp
    assert cmp["metrics"]["tokens_per_s"]["interval"] == "range" and cmp["parity"]["verdict"] == "exact"


def test_a_missing_events_file_is_noted_not_fatal(tmp_path):
    camp, results, _ = _two_by_two(tmp_path)
    for r in results:
        r.save(tmp_path / "runs" / r.run_id / "result.json")
    camp.save(tmp_path)
    (tmp_path / "runs" / "ours-r1" / "events.jsonl").unlink()
    cmp = compare_dir_json(tmp_path, save=False)
    assert any(n.startswith("ours-r1: no events file") for n in cmp["notes"])
    assert any("lrm trace: not reported by ours-r1" in u for u in cmp["audit"]["unverified"])


def test_a_single_arm_campaign_has_no_ratios(tmp_path):
    camp, results, events = _campaign(tmp_path, [("ours-r0", "ours", _summary(1000.0), {}),
                                                 ("ours-r1", "ours", _summary(1010.0), {})])
    cmp = compare_json(camp, results, events)
    assert (cmp["baseline"], cmp["candidate"]) == ("ours", None)
    assert cmp["metrics"]["tokens_per_s"]["ratio"] is None
    assert "only one implementation" in cmp["metrics"]["tokens_per_s"]["reason"]
    assert "parity" not in cmp and not any("parity" in n for n in cmp["notes"])  # nothing to pair: no noise


def test_arm_choice_and_bad_options_fail_with_one_line(tmp_path):
    camp, results, events = _two_by_two(tmp_path)
    assert pick_arms(results, "ours", None) == ("ours", "upstream")
    with pytest.raises(ValueError, match=r"baseline='jax': no such implementation"):
        compare_json(camp, results, events, baseline="jax")
    with pytest.raises(ValueError, match="bpb_tolerance=5: must be a relative tolerance"):
        compare_json(camp, results, events, bpb_tolerance=5)


def test_json_safe_replaces_nonfinite_numbers():
    import numpy as np
    assert json_safe({"a": [float("inf"), np.float64(2.5), (1, float("nan"))]}) == {"a": [None, 2.5, [1, None]]}


def test_a_real_campaign_record_compares_with_the_documented_shape(tmp_path):
    """tests/fixtures/results/parity_tiny_wdoff is a real tiny parity campaign (see its README)."""
    import shutil
    from pathlib import Path
    shutil.copytree(Path(__file__).parent / "fixtures" / "results" / "parity_tiny_wdoff", tmp_path / "c")
    cmp = compare_dir_json(tmp_path / "c", save=False)
    assert set(cmp) == TOP_KEYS | {"parity"}
    assert cmp["audit"]["matched"] is True, cmp["audit"]["mismatches"]
    assert cmp["bpb_parity"]["within"] is True and cmp["parity"]["status"] == "within tolerance"
    assert any("checkpoint dir" in n and "weights not compared" in n for n in cmp["notes"])
    json.dumps(cmp, allow_nan=False)


def test_the_latest_aa_campaign_beside_a_campaign_is_its_noise_floor(tmp_path):
    from harness import noise
    machine = {"cpu_model": "X", "cpu_count": 2, "gpus": [], "aten_cpu_capability": "avx2", "torch": "2.13.0"}

    def write(cid, created, candidate, ratio, preset="smoke", mach=machine):
        d = tmp_path / cid
        d.mkdir()
        cmp = {"candidate": candidate, "metrics": {"tokens_per_s": {"ratio": ratio, "ci95": [ratio - 0.01,
                                                                                            ratio + 0.01]}}}
        (d / "campaign.json").write_text(json.dumps({"campaign_id": cid, "preset": preset, "created_utc": created,
                                                     "machine": mach, "comparison": cmp}))
    write("old-aa", "2026-01-01", "ours:aa", 1.02)
    write("new-aa", "2026-02-01", "ours:aa", 1.001)
    write("other-preset-aa", "2026-03-01", "ours:aa", 1.5, preset="tiny")
    write("other-cpu-aa", "2026-03-01", "ours:aa", 1.5, mach={**machine, "aten_cpu_capability": "avx512"})
    write("ab", "2026-03-02", "ours", 1.2)
    floor = noise.find(tmp_path / "ab", "smoke", machine)
    assert floor["campaign_id"] == "new-aa" and floor["half_width"] == pytest.approx(0.01)
    assert noise.find(tmp_path / "ab", "d12", machine) is None
