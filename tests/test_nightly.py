"""The nightly check: a noise-aware regression rule judged on a history database alone, exit codes, the lock.

Every history here is MADE UP by the tests (labelled so in each campaign's notes): metric values drawn from a
seeded normal distribution, stored through the real History, RunResult and Campaign code.
"""
from __future__ import annotations

import random
import subprocess
import sys
import os
from pathlib import Path

import pytest

from harness.history import History
from harness.nightly import NightlyLocked, Rule, check_campaign, judge, nightly_lock
from harness.results import Campaign, CampaignRun, Provenance, RunResult, Summary

ROOT = Path(__file__).resolve().parents[1]
MADE_UP = "MADE-UP TEST HISTORY: metric values drawn by tests/test_nightly.py, not measured"


def made_up(index: int, tps: float, *, rss: float = 400e6, host: str = "box", preset: str = "smoke",
            failed: bool = False) -> tuple[Campaign, list[RunResult]]:
    """One nightly campaign: two ok runs per arm around ``tps`` tokens/s (ours) and 5000 (upstream)."""
    results = []
    for impl, base in (("ours", tps), ("upstream", 5000.0)):
        for rep, jitter in enumerate((0.998, 1.002)):
            s = Summary(tokens_per_s=base * jitter, peak_rss_bytes=int(rss), final_val_bpb=2.17)
            prov = Provenance(hostname=host, cpu_model="Made-up CPU", cpu_count=2, ours_sha=f"{index:040x}")
            results.append(RunResult(run_id=f"{impl}-r{rep}", implementation=impl, seed=42, repeat=rep,
                                     status="ok", budget={}, provenance=prov, summary=s))
    if failed:
        results[-1] = RunResult(run_id="upstream-r1", implementation="upstream", seed=42, repeat=1,
                                status="failed", budget={}, error="exit code 1", provenance=results[0].provenance)
    runs = [CampaignRun(r.run_id, r.implementation, r.seed, r.repeat, r.status, f"runs/{r.run_id}/result.json")
            for r in results]
    campaign = Campaign(campaign_id=f"2026-07-{index + 1:02d}-{preset}-{host}", preset=preset, budget={}, runs=runs,
                        created_utc=f"2026-07-{index + 1:02d}T02:00:00Z", notes=[MADE_UP])
    return campaign, results


def noisy_history(db: History, n: int = 10, sd: float = 0.015, seed: int = 1, **kw) -> None:
    rng = random.Random(seed)
    for i in range(n):
        db.record(*made_up(i, 5000.0 * (1 + rng.gauss(0, sd)), **kw))


def tokens_finding(result, impl: str = "ours"):
    return next(f for f in result.findings if f.metric == "tokens_per_s" and f.implementation == impl)


def test_ordinary_noise_is_not_flagged():
    with History(":memory:") as db:
        noisy_history(db)
        cid = db.record(*made_up(20, 4930.0))  # -1.4 %: inside the 1.5 % night-to-night noise
        result = check_campaign(db, cid)
    assert result.regressions == [] and tokens_finding(result).regressed is False


def test_a_real_slowdown_is_flagged_with_old_and_new_values():
    with History(":memory:") as db:
        noisy_history(db)
        cid = db.record(*made_up(20, 4200.0))  # -16 %
        result = check_campaign(db, cid)
    assert [(f.metric, f.implementation) for f in result.regressions] == [("tokens_per_s", "ours")]
    line = result.regressions[0].line()
    assert line.startswith("tokens_per_s (ours): 5,0") and "-> 4,200" in line and "%" in line


def test_the_allowed_change_scales_with_the_recent_spread():
    noisy, quiet = Rule(), Rule()
    with History(":memory:") as db:
        noisy_history(db, sd=0.08)  # a metric that swings ~8 % night to night
        cid = db.record(*made_up(20, 4500.0))
        assert check_campaign(db, cid, noisy).regressions == []  # -10 % is within its noise
    with History(":memory:") as db:
        noisy_history(db, sd=0.003)  # a quiet metric
        cid = db.record(*made_up(20, 4750.0))
        assert [f.metric for f in check_campaign(db, cid, quiet).regressions] == ["tokens_per_s"]  # -5 % is real


def test_more_memory_is_a_regression_and_more_speed_is_not():
    with History(":memory:") as db:
        noisy_history(db)
        cid = db.record(*made_up(20, 6000.0, rss=480e6))  # +20 % tokens/s, +20 % memory
        result = check_campaign(db, cid)
    assert {(f.metric, f.implementation) for f in result.regressions} == {("peak_rss_bytes", "ours"),
                                                                          ("peak_rss_bytes", "upstream")}


def test_too_little_history_is_not_judged():
    with History(":memory:") as db:
        noisy_history(db, n=2)
        cid = db.record(*made_up(20, 1000.0))
        result = check_campaign(db, cid)
    assert result.findings == [] and any("2 earlier campaign(s), need 3" in n for n in result.not_judged)


def test_only_the_same_preset_and_machine_are_compared():
    with History(":memory:") as db:
        noisy_history(db, host="slow-box")
        for i in range(10):
            db.record(*made_up(i, 2000.0, host="fast-box", preset="tiny"))  # other machine and preset: ignored
        cid = db.record(*made_up(20, 5010.0, host="slow-box"))
        result = check_campaign(db, cid)
    assert result.regressions == [] and len(tokens_finding(result).history) == 10


def test_judge_uses_median_and_mad_so_one_outlier_does_not_widen_the_band():
    rule = Rule(k=3.0, min_rel=0.01)
    history = [100, 101, 99, 100, 130]  # one wild night; a mean ± std rule would allow ±39
    assert judge(history, 96.0, True, rule) == (False, 100, pytest.approx(3 * 1.4826))
    assert judge(history, 95.0, True, rule)[0] is True
    assert judge(history, 105.0, False, rule)[0] is True  # lower-is-better: a rise regresses


def test_a_rule_that_cannot_work_is_refused():
    with pytest.raises(ValueError, match="min_history"):
        Rule(window=2, min_history=3)


def write_campaign(root: Path, campaign: Campaign, results: list[RunResult]) -> Path:
    cdir = root / campaign.campaign_id
    for r in results:
        r.save(cdir / "runs" / r.run_id / "result.json")
    campaign.save(cdir)
    return cdir


def nightly(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", "nightly", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def history_db(tmp_path) -> Path:
    with History(tmp_path / "history.sqlite") as db:
        noisy_history(db)
    return tmp_path / "history.sqlite"


def test_exit_1_names_each_regressed_metric(tmp_path, history_db):
    cdir = write_campaign(tmp_path, *made_up(20, 4200.0))
    out = nightly("--check", str(cdir), "--db", str(history_db), "--lock", str(tmp_path / "lock"))
    assert out.returncode == 1, out.stderr
    assert "REGRESSION tokens_per_s (ours): 5,0" in out.stdout and "-> 4,200" in out.stdout
    # --check only reads the campaign: the judgement goes beside it, nothing into it
    assert (cdir.parent / f"{cdir.name}.nightly.json").is_file()
    assert not (cdir / "nightly.json").exists() and not (cdir / "report.html").exists()
    assert f"judgement: {cdir.parent / (cdir.name + '.nightly.json')}" in out.stdout


def test_exit_0_when_nothing_regressed(tmp_path, history_db):
    cdir = write_campaign(tmp_path, *made_up(20, 5020.0))
    out = nightly("--check", str(cdir), "--db", str(history_db), "--lock", str(tmp_path / "lock"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "REGRESSION" not in out.stdout


def test_exit_4_when_a_run_failed(tmp_path, history_db):
    cdir = write_campaign(tmp_path, *made_up(20, 5020.0, failed=True))
    out = nightly("--check", str(cdir), "--db", str(history_db), "--lock", str(tmp_path / "lock"))
    assert out.returncode == 4 and "FAILED run upstream-r1 (upstream): failed" in out.stdout


def test_exit_2_for_a_directory_that_is_not_a_campaign(tmp_path):
    out = nightly("--check", str(tmp_path), "--db", str(tmp_path / "h.sqlite"), "--lock", str(tmp_path / "lock"))
    assert out.returncode == 2 and "no campaign.json" in out.stderr


HOLDER = """
import sys, time
from harness.nightly import nightly_lock
with nightly_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_second_nightly_exits_3_while_the_lock_is_held(tmp_path, history_db):
    lock = tmp_path / "nightly.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        cdir = write_campaign(tmp_path, *made_up(20, 5020.0))
        out = nightly("--check", str(cdir), "--db", str(history_db), "--lock", str(lock))
        assert out.returncode == 3
        assert f"another nightly is running (pid {holder.pid} holds" in out.stderr
    finally:
        holder.kill()
        holder.wait()
    again = nightly("--check", str(cdir), "--db", str(history_db), "--lock", str(lock))
    assert again.returncode == 0, again.stderr  # the lock died with its holder


def test_the_lock_is_exclusive_within_one_process_too(tmp_path):
    with nightly_lock(tmp_path / "l"):
        with pytest.raises(NightlyLocked, match="another nightly is running"):
            with nightly_lock(tmp_path / "l"):
                pass
    with nightly_lock(tmp_path / "l") as path:  # free again once released
        assert path.read_text().strip() == str(os.getpid())


def test_nightly_runs_a_campaign_records_it_and_reports(tmp_path, workspace, compile_cache):
    """End to end through the real runner: our arm only (no upstream needed), a 4-step tiny budget."""
    env_cache = {"NANOCHAT_BENCH_CACHE": str(tmp_path / "cache")}
    args = ["--preset", "tiny", "--impl", "ours", "--repeats", "1", "--set", "num_iterations=4", "--set",
            "eval_every=2", "--out", str(tmp_path / "campaigns"), "--db", str(tmp_path / "h.sqlite"), "--quiet",
            "--workspace", str(workspace), "--compile-cache", str(compile_cache)]
    out = subprocess.run([sys.executable, "-m", "harness", "nightly", *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env={**os.environ, **env_cache})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "not judged: tokens_per_s (ours): 0 earlier campaign(s), need 3 to judge" in out.stdout
    (cdir,) = [p.parent for p in (tmp_path / "campaigns").glob("*/campaign.json")]
    assert (cdir / "report.html").is_file() and (cdir / "nightly.json").is_file()
    with History(tmp_path / "h.sqlite") as db:
        assert [p.implementation for p in db.points(metric="tokens_per_s")] == ["ours"]


def test_an_aa_noise_floor_widens_the_allowed_change():
    history = [1000.0, 1001.0, 999.0, 1000.0]
    assert judge(history, 960.0, True, Rule())[0]                                 # 4 % slower: beyond 3 %
    regressed, _, allowed = judge(history, 960.0, True, Rule(), noise_floor_rel=0.025)
    assert not regressed and allowed == 2.0 * 0.025 * 1000.0                      # A/A noise 2.5 % x 2


def test_the_aa_noise_floor_is_read_from_the_latest_aa_campaign():
    from harness.history import Point
    from harness.nightly import aa_noise_floor

    def pt(cid, impl, value):
        return Point(cid, "2026", "smoke", "m", impl, None, None, "tokens_per_s", value, 1)
    points = [pt("a1", "ours", 100.0), pt("a1", "ours:aa", 110.0), pt("a2", "ours", 100.0),
              pt("a2", "ours:aa", 101.0), pt("c", "ours", 100.0), pt("c", "upstream", 90.0)]
    assert aa_noise_floor(points)["tokens_per_s"] == pytest.approx(0.01)
