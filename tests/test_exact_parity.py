"""Issue 6's acceptance at the smoke shape (depth 4, seq 256, vocab 4096, embedded data, CPU fp32, seed 42):
the `parity` verb runs both arms for real and compares them step by step. Slow: minutes per case on 2 cores."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.budget import load_preset
from harness.results import Campaign

REPO = Path(__file__).resolve().parents[1]


def run_parity(upstream_repo: Path, out: Path, *extra: str) -> dict:
    r = subprocess.run([sys.executable, "-m", "harness", "parity", "--preset", "smoke", "--upstream", str(upstream_repo),
                        "--out", str(out), "--campaign-id", "p", "--quiet", *extra],
                       cwd=REPO, capture_output=True, text=True, timeout=3000)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return Campaign.load(out / "p").comparison["parity"]


@pytest.mark.slow
@pytest.mark.upstream
def test_fifty_steps_without_muon_weight_decay_track_upstream_at_every_step(upstream_repo, tmp_path):
    p = run_parity(upstream_repo, tmp_path, "--set", "num_iterations=50", "--muon-weight-decay-off")
    assert p["loss"]["steps"] == list(range(50))
    assert p["loss"]["first_step_over"]["0.0001"] is None, p["summary"]
    evals = {e["step"]: e for e in p["val_bpb"]["evals"]}
    assert evals[0]["rel_diff"] <= 1e-6
    assert p["val_bpb"]["final"]["step"] == 50 and p["val_bpb"]["final"]["rel_diff"] <= 1e-4
    assert p["weights"]["missing_in_ours"] == [] and p["weights"]["shape_mismatches"] == []


@pytest.mark.slow
@pytest.mark.upstream
def test_smoke_budget_with_upstream_defaults_ends_at_upstreams_val_bpb(upstream_repo, tmp_path):
    p = run_parity(upstream_repo, tmp_path)
    assert p["val_bpb"]["final"]["step"] == load_preset("smoke").iterations
    assert p["val_bpb"]["final"]["rel_diff"] <= 2e-3, p["summary"]
