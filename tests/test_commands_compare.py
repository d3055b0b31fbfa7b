"""`compare A B`: campaign B against campaign A per arm and metric, exit 0/1 by threshold, like with like only."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.commands.compare import parse_threshold

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "reports" / "20261125-134814-smoke"          # 2 runs per arm: ranges, no CI
THREE = REPO / "tests" / "fixtures" / "campaign_handmade"   # upstream has 3 ok runs: a CI and a verdict
WARMED = REPO / "reports" / "20261203-074041-smoke"        # a warm-up run and 6 measured runs per arm


def compare(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", "compare", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def slowed_copy(tmp_path: Path, arm: str, factor: float, source: Path = THREE) -> Path:
    """A campaign with every ok run of ``arm`` ``factor`` times as fast (a known answer)."""
    copy = tmp_path / f"{arm}-x{factor}"
    shutil.copytree(source, copy)
    for result in copy.glob("runs/*/result.json"):
        d = json.loads(result.read_text())
        if d["implementation"] == arm:
            d["summary"]["tokens_per_s"] *= factor
            d["summary"]["steps_per_s"] *= factor
            result.write_text(json.dumps(d))
    return copy


def test_a_campaign_against_itself_has_every_ratio_at_one_and_exits_0():
    proc = compare(str(SMOKE), str(SMOKE))
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith(("ours ", "upstream "))]
    assert len(rows) >= 10 and all("1.000×" in row for row in rows)
    assert "peak GPU" not in proc.stdout          # measured by neither side: left out
    assert "(range, n=2)" in proc.stdout and "[95 %" not in proc.stdout.split("\n", 1)[1]   # 2 runs: no CI


def test_warm_up_runs_are_left_out_like_in_the_report():
    proc = compare(str(WARMED), str(WARMED), "--metric", "tokens_per_s,trainer_hwm_bytes")
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith(("ours ", "upstream "))]
    assert len(rows) == 4 and all(row.count("(n=6)") == 2 for row in rows), proc.stdout


def test_a_ten_percent_slower_arm_with_two_runs_shows_its_range_but_no_verdict(tmp_path):
    proc = compare(str(SMOKE), str(slowed_copy(tmp_path, "ours", 0.9, SMOKE)), "--impl", "ours",
                   "--metric", "tokens_per_s")
    assert proc.returncode == 0 and "0.900× [" in proc.stdout and "(range, n=2)" in proc.stdout
    assert "no verdict" in proc.stdout


def test_a_ten_percent_slower_arm_is_a_regression_and_exits_1(tmp_path):
    proc = compare(str(THREE), str(slowed_copy(tmp_path, "upstream", 0.9)), "--impl", "upstream",
                   "--metric", "tokens_per_s")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (row,) = [line for line in proc.stdout.splitlines() if line.startswith("upstream ")]
    assert "0.900×" in row and "slower" in row
    assert "regressed: upstream tokens/s" in proc.stdout


def test_a_change_inside_the_threshold_passes(tmp_path):
    proc = compare(str(THREE), str(slowed_copy(tmp_path, "upstream", 0.97)), "--metric", "tokens_per_s",
                   "--threshold", "5%")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0.970×" in proc.stdout


@pytest.mark.parametrize("args,line", [
    ([str(SMOKE), str(REPO / "reports" / "20261125-135618-smoke-parity")], "differ in preset (smoke vs smoke-parity)"),
    ([str(SMOKE), "no/such"], "B no/such: not a campaign folder"),
    ([str(SMOKE), str(SMOKE), "--metric", "speed"], "--metric speed: no metric 'speed'"),
    ([str(SMOKE), str(SMOKE), "--impl", "theirs"], "--impl theirs: not an ok arm of both campaigns"),
    ([str(SMOKE), str(SMOKE), "--threshold", "nan"], "--threshold nan: give a percentage"),
])
def test_bad_input_is_one_line_with_exit_2(args, line):
    proc = compare(*args)
    assert proc.returncode == 2 and line in proc.stderr and proc.stderr.strip().count("\n") == 0, proc.stderr


def test_threshold_accepts_percent_and_fraction():
    assert parse_threshold("5%") == pytest.approx(0.05) and parse_threshold("0.05") == pytest.approx(0.05)
