"""The cross-arm budget audit catches each kind of mismatch, one line each, and passes matched runs.

Runs are hand-made (tests/fixtures/results/builders.py) with real events files; each test changes one fact.
"""
from __future__ import annotations

import pytest

from tests.fixtures.results.builders import BUDGET, DATA, PARAMS, default_lrm, make_run
from harness.audit import audit_runs


def _audit(*runs):
    results = [r for r, _ in runs]
    return audit_runs(results, {r.run_id: ev for r, ev in runs})


def _pair(tmp_path, **ours_overrides):
    return make_run(tmp_path, "upstream-r0", "upstream"), make_run(tmp_path, "ours-r0", "ours", **ours_overrides)


def test_identical_budgets_are_matched(tmp_path):
    a = _audit(*_pair(tmp_path))
    assert a["matched"] is True and a["mismatches"] == []
    assert a["reference_run"] == "upstream-r0"


def test_total_parameter_count_mismatch_is_one_line(tmp_path):
    a = _audit(*_pair(tmp_path, params={**PARAMS, "total": PARAMS["total"] + 1}))
    assert a["matched"] is False
    assert a["mismatches"] == ["param_counts.total: upstream-r0 7,130 vs ours-r0 7,131"]


def test_parameter_group_mismatch_names_the_group(tmp_path):
    a = _audit(*_pair(tmp_path, params={**PARAMS, "lm_head": 2048}))
    assert [m.split(":")[0] for m in a["mismatches"]] == ["param_counts.lm_head"]


def test_tokens_and_step_count_mismatches(tmp_path):
    a = _audit(*_pair(tmp_path, n_steps=9))
    keys = {m.split(":")[0] for m in a["mismatches"]}
    assert {"tokens", "steps", "lrm trace"} <= keys


def test_lrm_within_upstreams_two_decimal_print_is_matched(tmp_path):
    exact = [default_lrm(i) for i in range(10)]
    up = make_run(tmp_path, "upstream-r0", "upstream", lrms=[round(x, 2) for x in exact])
    ours = make_run(tmp_path, "ours-r0", "ours", lrms=[x + 0.004 for x in exact])
    assert _audit(up, ours)["matched"] is True


def test_lrm_difference_beyond_print_is_caught_with_first_step(tmp_path):
    lrms = [default_lrm(i) for i in range(10)]
    lrms[7] += 0.02
    a = _audit(*_pair(tmp_path, lrms=lrms))
    assert len(a["mismatches"]) == 1
    assert "lrm trace" in a["mismatches"][0] and "first at step 7" in a["mismatches"][0]


def test_lrm_between_two_exact_arms_has_no_print_slack(tmp_path):
    lrms = [default_lrm(i) for i in range(10)]
    lrms[3] += 0.001
    a = _audit(make_run(tmp_path, "ours-r0", "ours"), make_run(tmp_path, "ours-r1", "ours", lrms=lrms))
    assert a["matched"] is False and "step 3" in a["mismatches"][0]


def test_eval_steps_and_eval_tokens_mismatches(tmp_path):
    a = _audit(*_pair(tmp_path, evals=[(0, 3.2, 1024), (4, 2.6, 1024), (10, 2.3, 1024)]))
    keys = sorted(m.split(":")[0] for m in a["mismatches"])
    assert keys == ["eval steps", "eval tokens", "ours-r0"]   # ours-r0 also broke the budget's cadence (0, 5, 10)
    assert any("cadence plans [0, 5, 10]" in m for m in a["mismatches"])


def test_evals_off_the_budgets_cadence_are_a_mismatch_even_when_both_arms_agree(tmp_path):
    evals = [(0, 3.2, 1024), (4, 2.6, 1024), (10, 2.3, 1024)]
    a = _audit(make_run(tmp_path, "ours-r0", "ours", evals=evals), make_run(tmp_path, "ours-r1", "ours", evals=evals))
    assert a["matched"] is False and "eval_cadence" in a["checks"]
    assert sorted(m.split(":")[0] for m in a["mismatches"]) == ["ours-r0", "ours-r1"]


def test_a_denser_warmdown_cadence_is_audited_against_the_budget(tmp_path):
    evals = [(s, 3.0 - 0.1 * s, 1024) for s in (0, 5, 7, 9, 10)]   # 10 steps, warmdown from step 5, every 2 there
    budget = dict(BUDGET, warmdown_ratio=0.5, warmdown_eval_every=2)
    runs = [make_run(tmp_path, f"ours-r{i}", "ours", evals=evals, budget=budget) for i in (0, 1)]
    assert _audit(*runs)["matched"] is True
    plain = [make_run(tmp_path, f"ours-p{i}", "ours", evals=evals) for i in (0, 1)]   # cadence 5 only: 7 and 9 extra
    assert _audit(*plain)["matched"] is False


def test_eval_tokens_not_reported_is_unverified_not_a_mismatch(tmp_path):
    a = _audit(*_pair(tmp_path, evals=[(0, 3.2, None), (5, 2.6, None), (10, 2.3, None)]))
    assert a["matched"] is True
    assert a["unverified"] == ["eval tokens: not reported by ours-r0"]


@pytest.mark.parametrize("field", ["shards_sha256", "tokenizer_sha256", "vocab_size", "dataset"])
def test_data_and_tokenizer_identity_mismatch(tmp_path, field):
    a = _audit(*_pair(tmp_path, data={**DATA, field: "0" * 64 if "sha" in field else 4096}))
    assert [m.split(":")[0] for m in a["mismatches"]] == [f"data.{field}"]


def test_budget_dict_difference_is_caught(tmp_path):
    from tests.fixtures.results.builders import BUDGET
    a = _audit(*_pair(tmp_path, budget={**BUDGET, "eval_tokens": 1024}))
    assert a["mismatches"] == ["budget.eval_tokens: upstream-r0 512 vs ours-r0 1,024"]


def test_a_runs_own_audit_lines_are_carried_over(tmp_path):
    a = _audit(*_pair(tmp_path, audit=["lrm trace is not 1-sqrt at step 3"]))
    assert a["mismatches"] == ["ours-r0: lrm trace is not 1-sqrt at step 3"]
    assert a["runs"]["ours-r0"]["audit"] == ["lrm trace is not 1-sqrt at step 3"]


def test_step_records_disagreeing_with_the_step_count(tmp_path):
    run, events = make_run(tmp_path, "ours-r0", "ours")
    run.summary.steps = 11
    a = audit_runs([run], {run.run_id: events})
    assert a["mismatches"] == ["ours-r0: 10 step records but 11 steps reported"]


def test_an_arm_with_only_failed_runs_is_not_matched(tmp_path):
    up, ours = _pair(tmp_path, status="failed")
    a = _audit(up, ours)
    assert a["matched"] is False
    assert a["excluded"] == ["ours-r0 (failed)"]
    assert a["mismatches"] == ["ours: no run finished ok, so its budget cannot be audited"]
