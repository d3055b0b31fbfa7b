"""The verbs a user runs, past their errors: `run` with the progress display on (plain lines when output is not a
terminal), `benchmark` end to end on a terminal (the live bar), `report` into an --out folder, and `serve`.

Everything runs as a user does: `python -m harness ...` in a subprocess on real files. Campaigns use the `command`
arm with the real tiny trainer (tests/helpers_trainer.py), the cheapest arm that trains for real; the data
workspace is the session's shared one (tests/conftest.py). Nothing is waited for by time: each step waits for
the output or the file it needs, with a deadline that only a hang reaches.
"""
from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
import urllib.request
from pathlib import Path

import pytest

from protocol.events import EvalEvent, read_events
from harness.results import Campaign
from tests.test_cli import _env, cli, command_run

CAMPAIGN = Path(__file__).parent / "fixtures" / "campaign_tiny"   # a real tiny campaign (see its PROVENANCE.md)
CAMPAIGN_ID = "20261125-123042-tiny"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
HIDE_CURSOR, SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"   # what rich's live display writes on start and on stop
DEADLINE_S = 240


def progress_lines(text: str) -> list[str]:
    """The lines progress.py prints: the campaign line and the per-run lines."""
    return [line for line in text.splitlines() if line.startswith(("campaign: ", "[run "))]


def expected_progress(cdir: Path) -> tuple[str, list[float]]:
    """(the one run's line prefix, its val BPB at each eval) read back from the campaign's stored files."""
    campaign = Campaign.load(cdir)
    (run,) = campaign.runs
    evals = [e for e in read_events(cdir / "runs" / run.run_id / "events.jsonl") if isinstance(e, EvalEvent)]
    assert [e.step for e in evals] == [0, 5, 10]          # tiny: 10 steps, eval every 5
    return f"[run 1/1 {run.run_id}]", [e.val_bpb for e in evals]


def check_progress(lines: list[str], cdir: Path) -> None:
    """One line per campaign, run start, eval and run end, the evals' BPB as stored; an ETA only mid-run (it
    comes from the steps done so far, which the arm's step records before eval 5 always give)."""
    prefix, bpb = expected_progress(cdir)
    assert lines[:3] == ["campaign: 1 runs, 1 to do", f"{prefix} started (10 steps)",
                         f"{prefix} step 0/10 val bpb {bpb[0]:.4f}"], lines
    assert re.fullmatch(rf"{re.escape(prefix)} step 5/10 val bpb {bpb[1]:.4f} \| eta \d+ s", lines[3]), lines
    assert lines[4] == f"{prefix} step 10/10 val bpb {bpb[2]:.4f}", lines
    assert re.fullmatch(rf"{re.escape(prefix)} ok: [\d,]+ tok/s, final val bpb {bpb[2]:.4f}, \d+ s", lines[5]), lines
    assert len(lines) == 6, lines


def test_run_without_quiet_prints_a_line_per_run_start_eval_and_end(tmp_path, workspace):
    args = [a for a in command_run(tmp_path, workspace) if a != "--quiet"] + ["--campaign-id", "c1"]
    proc = cli(*args, timeout=DEADLINE_S)
    assert proc.returncode == 0, proc.stderr
    cdir = tmp_path / "out" / "c1"
    check_progress(progress_lines(proc.stdout), cdir)
    assert "campaign c1: 1 ok" in proc.stdout.splitlines()
    assert HIDE_CURSOR not in proc.stdout     # not a terminal: plain lines, no live bar


def run_on_a_terminal(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run the CLI with stdout and stderr on a pseudo-terminal 200 columns wide; (exit code, all it wrote)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    env = {k: v for k, v in _env().items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR")}
    env.update(TERM="xterm-256color", COLUMNS="200")
    proc = subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave)
    os.close(slave)
    out, deadline = b"", time.monotonic() + DEADLINE_S
    try:
        while True:
            ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                proc.kill()
                pytest.fail(f"no end of output within {DEADLINE_S} s; so far: {out[-2000:]!r}")
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:       # EIO: every process that had the terminal open has closed it
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
    return proc.wait(timeout=60), out.decode("utf-8", errors="replace").replace("\r\n", "\n")


def test_benchmark_on_a_terminal_runs_the_campaign_with_a_live_bar_and_renders_its_report(tmp_path, workspace):
    args = ["benchmark", *[a for a in command_run(tmp_path, workspace)[1:] if a != "--quiet"], "--campaign-id", "b1"]
    code, screen = run_on_a_terminal(args, tmp_path)
    text = ANSI.sub("", screen)
    # what stays on screen of each line: the text after the last carriage return (the bar is redrawn in place)
    lines = [line.split("\r")[-1].rstrip() for line in text.split("\n")]
    assert code == 0, screen[-3000:]
    assert lines[0] == "preset tiny as asked"
    cdir = tmp_path / "out" / "b1"
    check_progress(progress_lines("\n".join(lines)), cdir)
    if importlib.util.find_spec("rich") is not None:     # a dependency; a bare machine without it prints lines only
        assert screen.index(HIDE_CURSOR) < screen.rindex(SHOW_CURSOR), "the live bar did not start and stop"
    campaign = Campaign.load(cdir)
    assert [r.status for r in campaign.runs] == ["ok"] and "campaign b1: 1 ok" in lines
    html, md = cdir / "report.html", cdir / "report.md"
    assert f"report: {html}" in lines and f"report (Markdown): {md}" in lines
    assert "<title>nanochat-bench: tiny campaign b1</title>" in html.read_text()
    assert md.read_text().startswith("# nanochat-bench: tiny campaign b1\n")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess, dict[str, bytes]]:
    """`report` of the real tiny campaign into <tmp>/reports/<id> with --site (its own history database); the
    campaign's files before the call, to show it wrote nothing into them."""
    root = tmp_path_factory.mktemp("published")
    before = _snapshot(CAMPAIGN)
    proc = cli("report", str(CAMPAIGN), "--out", str(root / "reports" / CAMPAIGN_ID), "--db", str(root / "history.sqlite"),
               "--site", cwd=root)
    return root, proc, before


def test_report_out_is_a_root_holding_the_campaign_folder_as_for_run(tmp_path):
    # `run --out ROOT` writes ROOT/<id>; `report --out ROOT` publishes to ROOT/<id> too (ROOT/<id> itself is the
    # same folder, the form older docs used)
    by_root = cli("report", str(CAMPAIGN), "--out", str(tmp_path / "reports"), "--no-history")
    assert by_root.returncode == 0, by_root.stderr
    assert (tmp_path / "reports" / CAMPAIGN_ID / "report.html").is_file()
    assert not (tmp_path / "reports" / "report.html").exists()
    by_folder = cli("report", str(CAMPAIGN), "--out", str(tmp_path / "reports" / CAMPAIGN_ID), "--no-history")
    assert by_folder.stdout == by_root.stdout and not (tmp_path / "reports" / CAMPAIGN_ID / CAMPAIGN_ID).exists()


def test_report_renders_a_real_campaign_into_out_naming_it_without_touching_the_campaign(published):
    root, proc, before = published
    assert proc.returncode == 0, proc.stderr
    out = root / "reports" / CAMPAIGN_ID
    html, md, index = out / "report.html", out / "report.md", root / "reports" / "index.html"
    assert proc.stdout.splitlines() == [f"report: {html}", f"report (Markdown): {md}", f"site index: {index}"]
    assert f"<title>nanochat-bench: tiny campaign {CAMPAIGN_ID}</title>" in html.read_text()
    assert md.read_text().startswith(f"# nanochat-bench: tiny campaign {CAMPAIGN_ID}\n")
    # the small raw files travel with the report, byte for byte
    assert json.loads((out / "campaign.json").read_text())["campaign_id"] == CAMPAIGN_ID
    for run in ("01-ours-s42-r0", "02-upstream-s42-r0"):
        assert (out / "runs" / run / "events.jsonl").read_bytes() == (CAMPAIGN / "runs" / run / "events.jsonl").read_bytes()
    assert f'href="{CAMPAIGN_ID}/report.html"' in index.read_text()
    assert (root / "history.sqlite").is_file()
    assert _snapshot(CAMPAIGN) == before


def _first_line(proc: subprocess.Popen) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    if not ready:
        proc.kill()
        pytest.fail("serve printed nothing within 60 s")
    return proc.stdout.readline().strip()


def test_serve_serves_the_report_site_on_a_free_port_and_stops_cleanly_on_ctrl_c(published):
    root, report, _ = published
    assert report.returncode == 0, report.stderr
    reports = root / "reports"
    (reports / "index.html").unlink()                    # serve rebuilds the index itself
    proc = subprocess.Popen([sys.executable, "-m", "harness", "serve", "--reports", str(reports), "--port", "0",
                             "--db", str(root / "history.sqlite")], cwd=root, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = _first_line(proc)
        m = re.fullmatch(rf"serving {re.escape(str(reports))} at http://127\.0\.0\.1:(\d+)/ \(Ctrl-C to stop\)", first)
        assert m, first
        base = f"http://127.0.0.1:{m.group(1)}/"
        fetch = urllib.request.build_opener(urllib.request.ProxyHandler({})).open   # straight to it, whatever *_proxy says
        with fetch(base, timeout=30) as r:
            assert r.status == 200 and f'href="{CAMPAIGN_ID}/report.html"' in r.read().decode()
        with fetch(f"{base}{CAMPAIGN_ID}/report.html", timeout=30) as r:
            assert r.status == 200
            assert r.read() == (reports / CAMPAIGN_ID / "report.html").read_bytes()
        # Ctrl-C; where this test runs with SIGINT ignored (started in the background), serve inherits that, so
        # SIGTERM, which the CLI turns into the same KeyboardInterrupt (cli.py)
        proc.send_signal(signal.SIGINT if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN else signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.strip() == "stopped"
    assert f'"GET /{CAMPAIGN_ID}/report.html HTTP/1.1" 200' in err and "Traceback" not in err
