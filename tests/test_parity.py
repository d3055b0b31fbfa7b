"""Exact-parity comparison: first step past each tolerance, per-tensor weight differences, verdict strings, EMA.

Events are written through protocol.events.EventWriter and read back; checkpoints are real files made with
torch.save of real tensors under upstream's state_dict key names. The numbers are made up per test.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from protocol.events import EventWriter, StepEvent, read_events
from harness.parity import (ParityError, compare_runs, debiased_ema, ema_check, load_model_state, loss_diff,
                            tensor_group, weight_diff)
from tests.fixtures.results.builders import write_run_events

N = 10
UP_LOSS = [8.0 - 0.4 * i + 0.0123456789 for i in range(N)]
LRMS = [1.0] * 5 + [0.8, 0.6, 0.4, 0.2, 0.0]
EVALS = [(0, 3.25, 512), (5, 2.61, 512), (10, 2.31, 512)]


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = {"transformer.wte.weight": (16, 8), "transformer.h.0.attn.c_q.weight": (8, 8),
              "transformer.h.0.attn.c_k.weight": (8, 8), "transformer.h.0.attn.c_v.weight": (8, 8),
              "transformer.h.0.attn.c_proj.weight": (8, 8), "transformer.h.0.attn.ve_gate.weight": (1, 12),
              "transformer.h.0.mlp.c_fc.weight": (32, 8), "transformer.h.0.mlp.c_proj.weight": (8, 32),
              "lm_head.weight": (16, 8), "resid_lambdas": (1,), "x0_lambdas": (1,), "smear_gate.weight": (1, 24),
              "smear_lambda": (1,), "backout_lambda": (1,), "value_embeds.0.weight": (16, 8)}
    return {k: torch.randn(*s, generator=g) for k, s in shapes.items()}


def _save(dir_, state, step=N):
    dir_.mkdir(parents=True, exist_ok=True)
    torch.save(state, dir_ / f"model_{step:06d}.pt")
    (dir_ / f"meta_{step:06d}.json").write_text(json.dumps({"step": step}))
    return dir_


def _events(tmp_path, name, losses, lrms=LRMS, evals=EVALS):
    return write_run_events(tmp_path / f"{name}.jsonl", losses, lrms, evals)


def _run(tmp_path, ours_losses, *, ours_state=None, ours_evals=EVALS, decimals=None, ours_lrms=LRMS):
    up_state = _state()
    up_ck = _save(tmp_path / "up_ck", up_state)
    ours_state = ours_state if ours_state is not None else {k: v.clone() for k, v in up_state.items()}
    ours_ck = _save(tmp_path / "ours_ck", ours_state)
    return compare_runs(_events(tmp_path, "ours", ours_losses, ours_lrms, ours_evals), _events(tmp_path, "up", UP_LOSS),
                        ours_checkpoint=ours_ck, upstream_checkpoint=up_ck, decimals=decimals,
                        ours_run="ours-r0", upstream_run="upstream-r0")


def test_debiased_ema_matches_its_closed_form():
    rng = np.random.default_rng(0)
    losses = list(rng.uniform(2, 9, 50))
    beta = 0.9
    for t, got in enumerate(debiased_ema(losses, beta)):
        w = np.array([beta ** (t - i) * (1 - beta) for i in range(t + 1)])
        closed = float(np.dot(w, losses[: t + 1]) / (1 - beta ** (t + 1)))
        assert got == pytest.approx(closed, rel=1e-12)
    assert debiased_ema([5.0]) == [pytest.approx(5.0)]  # the debiasing undoes the zero start


def test_ema_check_reads_an_arms_loss_against_its_raw_losses(tmp_path):
    raw = [8.0, 7.5, 7.25, 6.0]
    with EventWriter(tmp_path / "e.jsonl") as w:
        for s, (r, l) in enumerate(zip(raw, debiased_ema(raw))):
            w.write(StepEvent(step=s, loss=l, lrm=1.0, dt_s=0.1, tokens_per_s=10.0, loss_raw=r))
    steps = read_events(tmp_path / "e.jsonl")
    assert ema_check(steps) == {"steps": 4, "max_abs": 0.0}
    steps[2].loss += 1e-3
    assert ema_check(steps)["max_abs"] == pytest.approx(1e-3)


def test_first_step_past_each_tolerance():
    rel = [0, 0, 2e-6, 2e-6, 2e-4, 2e-4, 2e-3, 2e-3, 2e-2, 2e-2]
    ours = {s: UP_LOSS[s] * (1 + r) for s, r in enumerate(rel)}
    d = loss_diff(ours, dict(enumerate(UP_LOSS)), decimals=None)
    assert d["first_step_over"] == {"1e-06": 2, "0.0001": 4, "0.001": 6, "0.01": 8}
    assert d["max_rel"] == pytest.approx(2e-2) and d["max_rel_step"] in (8, 9)
    assert d["rel_diff"][3] == pytest.approx(2e-6)


def test_a_nonfinite_loss_counts_past_every_tolerance():
    ours = dict(enumerate(UP_LOSS))
    ours[3] = float("nan")
    d = loss_diff(ours, dict(enumerate(UP_LOSS)), decimals=6)
    assert set(d["first_step_over"].values()) == {3}
    assert d["rel_diff"][3] is None


def test_tensor_groups_follow_upstreams_names():
    groups = {k: tensor_group(k) for k in _state()}
    assert groups["transformer.wte.weight"] == "wte"
    assert groups["value_embeds.0.weight"] == "value_embeds"
    assert groups["lm_head.weight"] == "lm_head"
    assert groups["transformer.h.0.attn.c_q.weight"] == groups["transformer.h.0.attn.c_proj.weight"] == "attention"
    assert groups["transformer.h.0.attn.ve_gate.weight"] == groups["smear_gate.weight"] == "gates"
    assert groups["transformer.h.0.mlp.c_fc.weight"] == "mlp"
    assert {groups[k] for k in ("resid_lambdas", "x0_lambdas", "smear_lambda", "backout_lambda")} == {"scalars"}


def test_per_tensor_differences_from_real_checkpoint_files(tmp_path):
    up = _state()
    ours = {k: v.clone() for k, v in up.items()}
    ours["transformer.h.0.mlp.c_fc.weight"][3, 4] += 1e-3
    ours["lm_head.weight"][0, 0] += 1e-6
    _, sd_o = load_model_state(_save(tmp_path / "o", {f"_orig_mod.{k}": v for k, v in ours.items()}))
    _, sd_u = load_model_state(_save(tmp_path / "u", up))
    w = weight_diff(sd_o, sd_u)
    rows = {t["name"]: t for t in w["tensors"]}
    assert rows["transformer.h.0.mlp.c_fc.weight"]["max_abs"] == pytest.approx(1e-3, rel=1e-4)
    scale = up["transformer.h.0.mlp.c_fc.weight"].abs().max().item()
    assert rows["transformer.h.0.mlp.c_fc.weight"]["max_rel"] == pytest.approx(1e-3 / scale, rel=1e-3)
    assert rows["transformer.wte.weight"]["identical"] and not rows["lm_head.weight"]["identical"]
    assert w["worst"]["group"] == "mlp" and w["groups"]["mlp"]["worst_tensor"] == "transformer.h.0.mlp.c_fc.weight"
    assert w["groups"]["attention"]["max_abs"] == 0.0 and w["identical"] is False


def test_missing_and_reshaped_tensors_are_listed(tmp_path):
    up, ours = _state(), _state()
    del ours["backout_lambda"]
    ours["lm_head.weight"] = torch.zeros(17, 8)
    w = weight_diff(ours, up)
    assert w["missing_in_ours"] == ["backout_lambda"]
    assert w["shape_mismatches"] == ["lm_head.weight: [17, 8] vs [16, 8]"]
    assert w["identical"] is False


def test_latest_checkpoint_is_chosen_and_a_missing_one_is_a_clear_error(tmp_path):
    d = _save(tmp_path / "ck", _state(0), step=5)
    _save(d, _state(1), step=10)
    assert load_model_state(d)[0] == 10 and load_model_state(d, step=5)[0] == 5
    with pytest.raises(ParityError, match="no model_NNNNNN.pt checkpoint"):
        load_model_state(tmp_path)
    with pytest.raises(ParityError, match="no checkpoint for step 7"):
        load_model_state(d, step=7)


def test_identical_runs_are_exact(tmp_path):
    p = _run(tmp_path, list(UP_LOSS))
    assert p["verdict"] == "exact" and p["status"] == "exact" and p["diverged_at_step"] is None
    assert p["differs_most"] is None and p["weights"]["identical"]
    json.dumps(p, allow_nan=False)


def test_differences_below_upstreams_print_are_exact_at_six_decimals(tmp_path):
    ours = [x + 2e-8 for x in UP_LOSS]
    assert _run(tmp_path, ours, decimals=6)["verdict"] == "exact"
    assert _run(tmp_path, ours, decimals=None)["verdict"] == "within tolerance"


def test_small_differences_everywhere_are_within_tolerance(tmp_path):
    state = _state()
    state["transformer.wte.weight"] *= 1 + 1e-6
    p = _run(tmp_path, [x * (1 + 5e-5) for x in UP_LOSS], ours_state=state,
             ours_evals=[(s, b * (1 + 5e-5), t) for s, b, t in EVALS])
    assert p["verdict"] == "within tolerance"
    assert p["loss"]["first_step_over"]["1e-06"] == 0 and p["loss"]["first_step_over"]["0.0001"] is None
    assert p["differs_most"]["quantity"] in ("loss", "val_bpb")


def test_divergence_names_the_step_and_what_differs_most(tmp_path):
    state = _state()
    state["transformer.h.0.mlp.c_proj.weight"] += 0.5
    ours = [x * (1 + (3e-4 if s >= 6 else 0)) for s, x in enumerate(UP_LOSS)]
    p = _run(tmp_path, ours, ours_state=state)
    assert p["verdict"] == "diverged at step 6" and p["diverged_at_step"] == 6
    assert p["differs_most"]["quantity"] == "weights" and p["differs_most"]["name"].startswith("mlp")
    assert "first step past 1e-4 rel loss: 6" in p["summary"]


def test_a_final_bpb_difference_alone_diverges_at_that_eval(tmp_path):
    p = _run(tmp_path, list(UP_LOSS), ours_evals=[(0, 3.25, 512), (5, 2.61, 512), (10, 2.32, 512)])
    assert p["verdict"] == "diverged at step 10"
    assert p["val_bpb"]["final"]["rel_diff"] == pytest.approx(0.01 / 2.31)


def test_an_lrm_difference_beyond_the_print_diverges(tmp_path):
    lrms = list(LRMS)
    lrms[7] = 0.45
    p = _run(tmp_path, list(UP_LOSS), ours_lrms=lrms, decimals=6)
    assert p["lrm"]["first_step_beyond"] == 7 and p["verdict"] == "diverged at step 7"


def test_without_checkpoints_weights_are_not_compared(tmp_path):
    p = compare_runs(_events(tmp_path, "o", UP_LOSS), _events(tmp_path, "u", UP_LOSS))
    assert p["weights"] is None and p["verdict"] == "exact"
    assert "worst tensor: not compared" in p["summary"]


def test_a_run_without_step_records_is_refused(tmp_path):
    with pytest.raises(ParityError, match="no step records in the ours run"):
        compare_runs([], _events(tmp_path, "u", UP_LOSS))
