"""--target-bpb on the CLI, end to end on the committed exact-parity smoke campaign (real small data; nothing is
re-run): `report` re-renders with the matched-quality rows and paragraph, `compare` reads both campaigns at one
target, and a bad target is one line with exit 2."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PARITY_SMOKE = REPO / "reports" / "20261202-162713-smoke"


def cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def smoke(tmp_path):
    copy = tmp_path / PARITY_SMOKE.name
    shutil.copytree(PARITY_SMOKE, copy)
    return copy


def test_report_with_a_target_shows_the_matched_quality_rows_and_paragraph(smoke, tmp_path):
    proc = cli("report", str(smoke), "--target-bpb", "2.6", "--out", str(tmp_path / "out"), "--no-history")
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "out" / smoke.name / "report.md").read_text()   # report --out ROOT writes ROOT/<id>
    assert "**Faster to the same quality?** [info] target val BPB 2.6000 (given (--target-bpb))" in md
    assert "| training time to the target BPB (steady-state step times) |" in md
    assert "time to target: ours ÷ upstream" in md and "gets there first on average" in md
    stored = json.loads((smoke / "campaign.json").read_text())["comparison"]["targets"]
    assert stored["target_bpb"] == 2.6 and stored["not_reached"] == {"baseline": [], "candidate": []}


def test_report_with_an_unreachable_target_says_which_arms_did_not_reach_it(smoke, tmp_path):
    proc = cli("report", str(smoke), "--target-bpb", "1.5", "--out", str(tmp_path / "out"), "--no-history")
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "out" / smoke.name / "report.md").read_text()   # report --out ROOT writes ROOT/<id>
    assert "upstream did not reach the target in 04-upstream-s42-r0" in md
    assert "ours did not reach the target in 03-ours-s42-r0" in md
    assert "needs" not in [line for line in md.splitlines() if "training time to the target" in line][0]


@pytest.mark.parametrize("verb", ["report", "compare"])
def test_a_bad_target_is_one_line_and_exit_2(smoke, verb):
    args = [str(smoke)] if verb == "report" else [str(smoke), str(smoke)]
    proc = cli(verb, *args, "--target-bpb", "nan")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--target-bpb nan: give a positive" in proc.stderr


def test_compare_reads_both_campaigns_at_the_given_target(smoke):
    proc = cli("compare", str(smoke), str(smoke), "--metric", "time_to_target_s,tokens_to_target",
               "--target-bpb", "2.6")
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith(("ours ", "upstream "))]
    assert len(rows) == 4 and all("1.000×" in row for row in rows)
