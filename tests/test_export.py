"""`export` and harness.frames: every committed campaign as one row per run, with the numbers its report shows."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.frames import FramesError, records_frame, runs_frame

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = sorted(p.parent for p in (REPO / "reports").glob("*/campaign.json"))


def export(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", "export", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_export_of_the_published_campaigns_has_one_row_per_run_and_their_reports_numbers(tmp_path):
    proc = export("reports", "--out", str(tmp_path / "runs.csv"), "--records", str(tmp_path / "steps.parquet"))
    assert proc.returncode == 0, proc.stderr
    runs = pd.read_csv(tmp_path / "runs.csv")
    for cdir in PUBLISHED:
        campaign = json.loads((cdir / "campaign.json").read_text())
        mine = runs[runs.campaign_id == campaign["campaign_id"]]
        assert sorted(mine.run_id) == sorted(r["run_id"] for r in campaign["runs"])
        report = json.loads((cdir / "report.json").read_text())
        measured = mine[mine.phase == "measure"]          # warm-up runs are recorded but never compared
        cand, base = (measured[measured.implementation == report[side]] for side in ("candidate", "baseline"))
        if report["tokens_per_s"].get("n_pairs"):         # paired rounds: the geometric mean of per-round ratios
            rounds = cand.set_index(["seed", "repeat"]).tokens_per_s / base.set_index(["seed", "repeat"]).tokens_per_s
            ratio = float(np.exp(np.log(rounds).mean()))
        else:                                              # older reports: the ratio of the arms' means
            ratio = cand.tokens_per_s.mean() / base.tokens_per_s.mean()
        assert ratio == pytest.approx(report["tokens_per_s"]["ratio"], rel=1e-12)
        assert cand.final_val_bpb.mean() == pytest.approx(report["final_val_bpb"]["candidate"], rel=1e-12)
        assert base.final_val_bpb.mean() == pytest.approx(report["final_val_bpb"]["baseline"], rel=1e-12)
        if report["upstream_sha"]:                         # an ours-vs-upstream campaign names both revisions
            assert set(mine.upstream_sha) == {report["upstream_sha"]} and set(mine.ours_sha) == {report["ours_sha"]}
    steps = pd.read_parquet(tmp_path / "steps.parquet")
    per_run = steps[steps.event == "step"].groupby(["campaign_id", "run_id"]).size()
    assert (per_run == runs.set_index(["campaign_id", "run_id"]).steps.loc[per_run.index]).all()


def test_frames_keep_a_run_without_events_and_read_every_identity_column():
    runs = runs_frame(REPO / "tests" / "fixtures" / "campaign_handmade")
    assert len(runs) == 6 and runs.set_index("run_id").loc["05-ours-s42-r2", "status"] == "timeout"
    assert {"cpu_model", "torch", "shards_sha256", "tokenizer_sha256", "budget.total_batch_size"} <= set(runs)
    evals = records_frame(REPO / "tests" / "fixtures" / "campaign_handmade").query("event == 'eval'")
    assert evals.val_bpb.notna().all() and set(evals.run_id) == set(runs.run_id) - {"05-ours-s42-r2"}


@pytest.mark.parametrize("args,line", [
    (["reports", "--out", "runs.xlsx"], "--out runs.xlsx: the file name must end in .csv or .parquet"),
    (["no/such/dir", "--out", "runs.csv"], "no/such/dir: no such campaign or folder"),
])
def test_bad_export_input_is_one_line_with_exit_2(tmp_path, args, line):
    proc = export(*args)
    assert proc.returncode == 2 and line in proc.stderr and proc.stderr.strip().count("\n") == 0, proc.stderr


def test_a_damaged_campaign_file_is_named(tmp_path):
    (tmp_path / "c1").mkdir()
    (tmp_path / "c1" / "campaign.json").write_text("{not json")
    with pytest.raises(FramesError, match="c1/campaign.json"):
        runs_frame(tmp_path)
