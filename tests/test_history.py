"""The SQLite campaign history: what is stored, idempotent recording, trends read back, the `history` verb."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from harness.history import History, HistoryError, trend_frame

CAMPAIGN = Path(__file__).parent / "fixtures" / "campaign_handmade"  # hand-made curves, real harness records
ROOT = Path(__file__).resolve().parents[1]


def test_recording_keys_runs_by_preset_implementation_shas_and_machine(tmp_path):
    with History(tmp_path / "h.sqlite") as h:
        cid = h.record_campaign(CAMPAIGN)
        row = h.db.execute("SELECT c.preset, c.machine, r.implementation, r.ours_sha, r.upstream_sha "
                           "FROM runs r JOIN campaigns c USING (campaign_id) WHERE r.run_id = '00-upstream-s42-r0'"
                           ).fetchone()
    assert cid == "20260710-120000-tiny-handmade"
    assert row == ("tiny", "fixture-host/Fixture CPU (hand-made) x2", "upstream",
                   "0123456789abcdef0123456789abcdef01234567", "92d63d4e8bb4df75c3b71618f31ddde2378b2bcd")


def test_points_are_medians_over_ok_runs_only(tmp_path):
    with History(tmp_path / "h.sqlite") as h:
        h.record_campaign(CAMPAIGN)
        pts = {p.implementation: p for p in h.points(metric="tokens_per_s")}
    assert pts["upstream"].n_runs == 3 and pts["ours"].n_runs == 2  # the timed-out ours run has no metrics
    assert pts["upstream"].value == pytest.approx(5200.134066, rel=1e-6)  # median of three
    assert pts["ours"].value == pytest.approx((5641.189497691739 + 5641.9354483245) / 2)


def test_recording_the_same_campaign_twice_replaces_it(tmp_path):
    with History(tmp_path / "h.sqlite") as h:
        h.record_campaign(CAMPAIGN)
        first = h.db.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
        h.record_campaign(CAMPAIGN)
        counts = [h.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("campaigns", "runs", "metrics")]
    assert counts == [1, 6, first]


def test_history_persists_across_connections(tmp_path):
    with History(tmp_path / "h.sqlite") as h:
        h.record_campaign(CAMPAIGN)
    with History(tmp_path / "h.sqlite") as h:
        assert len(h.points(preset="tiny", implementation="ours", metric="final_val_bpb")) == 1
        assert h.points(preset="d12") == []


def test_a_database_of_another_schema_version_is_refused(tmp_path):
    db = sqlite3.connect(tmp_path / "h.sqlite")
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(HistoryError, match="schema version 99"):
        History(tmp_path / "h.sqlite")


def test_trend_frame_has_one_row_per_campaign_and_implementation(tmp_path):
    with History(tmp_path / "h.sqlite") as h:
        h.record_campaign(CAMPAIGN)
        frame = trend_frame(h.points())
    assert list(frame["implementation"]) == ["ours", "upstream"]
    assert {"tokens_per_s", "final_val_bpb", "peak_rss_bytes"} <= set(frame.columns)


REPORTS = ROOT / "reports"


def test_trend_frame_has_no_phantom_rows_across_machines_and_commits(tmp_path):
    # the published campaigns: 3 campaigns, 2 machines, 2 of our commits, 2 arms each -> exactly 6 rows, each with
    # its tokens/s (a pivot over every combination of the keys made 24, most of them all n/a)
    with History(tmp_path / "h.sqlite") as h:
        for cdir in sorted(REPORTS.glob("*/campaign.json")):
            h.record_campaign(cdir.parent)
        frame = trend_frame(h.points())
    assert len(frame) == 2 * len(list(REPORTS.glob("*/campaign.json")))
    assert not frame.duplicated(["campaign_id", "implementation"]).any()
    assert frame["tokens_per_s"].notna().all()


def _later_copy(tmp_path: Path, factor: float) -> Path:
    """The fixture campaign as a later campaign whose ours runs were ``factor`` times as fast."""
    import shutil
    from harness.results import Campaign, RunResult
    dst = tmp_path / "later"
    shutil.copytree(CAMPAIGN, dst)
    c = Campaign.load(dst)
    c.campaign_id, c.created_utc = "20260711-120000-tiny-later", "2026-07-11T12:00:00Z"
    c.save(dst)
    for path in dst.glob("runs/*-ours-*/result.json"):
        r = RunResult.load(path)
        if r.summary.tokens_per_s:
            r.summary.tokens_per_s *= factor
        r.save(path)
    return dst


def test_history_verb_fills_the_change_column(tmp_path):
    db = tmp_path / "h.sqlite"
    out = run_cli("history", "--db", str(db), "--add", str(CAMPAIGN), "--add", str(_later_copy(tmp_path, 1.1)))
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if "tiny" in line and ("ours" in line or "upstream" in line)]
    assert len(rows) == 4, out.stdout
    assert sum("first" in r for r in rows) == 2
    assert any("+10.0 %" in r for r in rows if "ours" in r) and any("+0.0 %" in r for r in rows if "upstream" in r)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_history_verb_records_and_prints_the_trend_table(tmp_path):
    db = tmp_path / "h.sqlite"
    out = run_cli("history", "--db", str(db), "--add", str(CAMPAIGN), "--preset", "tiny")
    assert out.returncode == 0, out.stderr
    assert "recorded 20260710-120000-tiny-handmade" in out.stdout
    assert "5,642" in out.stdout and "5,200" in out.stdout and "upstream" in out.stdout


def test_history_verb_without_a_database_is_a_one_line_error(tmp_path):
    out = run_cli("history", "--db", str(tmp_path / "none.sqlite"))
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "--add CAMPAIGN_DIR" in out.stderr
