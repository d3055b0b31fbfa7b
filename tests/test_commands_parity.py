"""The `nanochat-bench parity` verb, invoked as a user would: exit codes, the printed summary, forced budget.

The --from tests read a REAL campaign record (tests/fixtures/results/parity_tiny_wdoff, see its README) or runs
made by tests/fixtures/results/builders.py; the end-to-end test trains both arms and needs upstream.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.cli import build_parser
from harness.commands.parity import parity_budget
from harness.results import Campaign, CampaignRun
from tests.fixtures.results.builders import BUDGET, make_run

REPO = Path(__file__).resolve().parents[1]
RECORD = REPO / "tests" / "fixtures" / "results" / "parity_tiny_wdoff"


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", "parity", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def test_recomputing_a_real_record_reproduces_its_loss_bpb_and_lrm_parts(tmp_path):
    cdir = tmp_path / "c"
    shutil.copytree(RECORD, cdir)
    stored = json.loads((RECORD / "campaign.json").read_text())["comparison"]["parity"]
    r = _cli("--from", str(cdir))
    assert r.returncode == 0, r.stderr
    assert "parity: within tolerance" in r.stdout and "weights: not compared" in r.stdout
    assert "loss: first step past rel 1e-06: none, 1e-04: none, 1e-03: none, 1e-02: none (of 10 steps" in r.stdout
    again = Campaign.load(cdir).comparison["parity"]
    assert again["loss"] == stored["loss"] and again["val_bpb"] == stored["val_bpb"] and again["lrm"] == stored["lrm"]
    assert again["weights"] is None and stored["weights"]["tensors"]


def _diverged_campaign(tmp_path) -> Path:
    up_losses = [8.0 - 0.3 * i for i in range(10)]
    ours_losses = [x * (1 + (5e-4 if i >= 4 else 0)) for i, x in enumerate(up_losses)]
    runs = [make_run(tmp_path, "01-ours-s42-r0", "ours", losses=ours_losses),
            make_run(tmp_path, "02-upstream-s42-r0", "upstream", losses=up_losses)]
    state = {"lm_head.weight": torch.ones(4, 4), "transformer.h.0.mlp.c_fc.weight": torch.zeros(8, 4)}
    for i, (r, _) in enumerate(runs):
        ck = tmp_path / "runs" / r.run_id / "ck"
        ck.mkdir()
        torch.save({k: v + 0.01 * i for k, v in state.items()}, ck / "model_000010.pt")
        r.checkpoint_dir = f"runs/{r.run_id}/ck"
        r.save(tmp_path / "runs" / r.run_id / "result.json")
    Campaign(campaign_id="c", preset="tiny", budget=dict(BUDGET),
             runs=[CampaignRun(r.run_id, r.implementation, 42, 0, "ok", f"runs/{r.run_id}/result.json")
                   for r, _ in runs]).save(tmp_path)
    return tmp_path


def test_a_diverged_pair_exits_1_and_names_the_step_and_worst_tensor(tmp_path):
    r = _cli("--from", str(_diverged_campaign(tmp_path)))
    assert r.returncode == 1, r.stderr
    lines = r.stdout.splitlines()
    assert lines[1].startswith("parity: diverged at step 4 (differs most: ")
    assert "1e-06: 4, 1e-04: 4, 1e-03: none" in lines[2]
    assert lines[4].startswith("worst tensor: transformer.h.0.mlp.c_fc.weight (mlp) max abs 1.00e-02")


def test_a_campaign_without_an_upstream_run_says_why(tmp_path):
    cdir = _diverged_campaign(tmp_path)
    c = Campaign.load(cdir)
    c.runs = c.runs[:1]
    c.save(cdir)
    r = _cli("--from", str(cdir))
    assert r.returncode == 1
    assert ("note: parity not computed: needs an ok, parity-valid run of both ours and upstream (have 1 and 0)"
            in r.stdout)


def test_bad_inputs_are_one_line_errors_with_exit_code_2(tmp_path):
    r = _cli("--preset", "d12")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "parity runs on CPU in fp32" in r.stderr
    r = _cli("--from", str(tmp_path))
    assert r.returncode == 2 and "no campaign.json there" in r.stderr


def test_the_budget_is_forced_to_one_compiled_cpu_run_of_seed_42_with_checkpoints():
    argv = ["parity", "--preset", "tiny", "--set", "repeats=3", "--set", "seeds=[1,2]", "--muon-weight-decay-off",
            "--set", "fast_setting=true", "--set", 'kernels="fast"']
    budget, name = parity_budget(build_parser(argv).parse_args(argv))
    forced = (budget.seeds, budget.repeats, budget.keep_checkpoints, budget.muon_weight_decay_off, budget.compile,
              budget.kernels, budget.fast_setting)
    assert forced == ([42], 1, True, True, True, "parity", False)
    assert (budget.device, budget.world_size, name) == ("cpu", 1, "tiny-parity")
    argv.append("--eager")
    assert parity_budget(build_parser(argv).parse_args(argv))[0].compile is False


@pytest.mark.slow
@pytest.mark.upstream
def test_tiny_parity_campaign_end_to_end(upstream_repo, tmp_path):
    env = {**os.environ, "NANOCHAT_BENCH_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "harness", "parity", "--preset", "tiny", "--muon-weight-decay-off",
                        "--upstream", str(upstream_repo), "--out", str(tmp_path), "--campaign-id", "p", "--quiet",
                        "--timeout", "1200"], cwd=REPO, capture_output=True, text=True, timeout=3000, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    p = Campaign.load(tmp_path / "p").comparison["parity"]
    assert p["status"] in ("exact", "within tolerance")
    assert p["loss"]["first_step_over"]["0.0001"] is None
    assert p["weights"] is not None and p["weights"]["missing_in_ours"] == [] and p["weights"]["shape_mismatches"] == []
