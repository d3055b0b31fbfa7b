"""End to end, as a user runs it: a real `tiny` campaign through the CLI, our trainer (models.train) always, and
both arms together where an upstream nanochat source is reachable."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.results import Campaign

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_tiny_campaign_of_our_trainer_produces_results_and_campaign_json(tmp_path, workspace, compile_cache):
    proc = run_cli("run", "--preset", "tiny", "--impl", "ours", "--out", str(tmp_path), "--campaign-id", "e2e",
                   "--workspace", str(workspace), "--compile-cache", str(compile_cache), "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    campaign = Campaign.load(tmp_path / "e2e")
    (result,) = campaign.results(tmp_path / "e2e")
    s = result.summary
    assert (result.implementation, result.status, s.steps, s.tokens) == ("ours", "ok", 10, 2560)
    assert s.tokens_per_s > 0 and s.train_time_s > 0 and s.peak_rss_bytes > 50 * 2**20
    assert s.final_val_bpb is not None and s.param_counts["total"] > 0 and s.flops_per_token > 0
    assert s.mfu_percent > 0 and "CPU fp32 matmul" in s.mfu_basis
    assert [m.step for m in s.eval_memory] == [0, 5, 10]
    assert result.data.shards_sha256 and result.data.tokenizer_sha256 and result.provenance.ours_sha
    assert campaign.finished_utc and campaign.machine["peak_flops"] > 0


def test_our_arm_trains_data_parallel_over_two_cpu_processes(tmp_path, workspace, compile_cache):
    proc = run_cli("run", "--preset", "tiny", "--impl", "ours", "--nproc-per-node", "2", "--set", "total_batch_size=512",
                   "--out", str(tmp_path), "--campaign-id", "dp", "--workspace", str(workspace),
                   "--compile-cache", str(compile_cache), "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (result,) = Campaign.load(tmp_path / "dp").results(tmp_path / "dp")
    final = [line for line in (tmp_path / "dp" / result.events_path).read_text().splitlines() if '"final"' in line]
    assert result.status == "ok" and '"world_size":2' in final[0] and result.summary.tokens == 10 * 512
    assert "torch.distributed.run" in (tmp_path / "dp" / result.log_path).read_text().splitlines()[0]


@pytest.mark.upstream
def test_tiny_campaign_of_both_arms_is_matched(tmp_path, upstream_repo):
    """Upstream's first step compiles (~40 s on a cold cache); the compile cache is kept in the clone cache so
    later sessions start warm."""
    from upstream.source import cache_root
    proc = run_cli("run", "--preset", "tiny", "--impl", "ours,upstream", "--upstream", str(upstream_repo),
                   "--out", str(tmp_path), "--campaign-id", "both", "--quiet",
                   "--compile-cache", str(cache_root() / "test-compile-cache"), "--timeout", "900", timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    campaign = Campaign.load(tmp_path / "both")
    results = {r.implementation: r for r in campaign.results(tmp_path / "both")}
    assert set(results) == {"ours", "upstream"} and all(r.status == "ok" for r in results.values())
    up = results["upstream"]
    assert up.audit == [] and up.valid_for_parity and up.provenance.upstream_clean
    assert up.data == results["ours"].data                     # one shared workspace, same hashes
    assert up.summary.param_counts == results["ours"].summary.param_counts
    assert abs(up.summary.final_val_bpb / results["ours"].summary.final_val_bpb - 1) < 0.01
    assert campaign.comparison is not None and campaign.comparison["audit"]["matched"], campaign.comparison["audit"]
