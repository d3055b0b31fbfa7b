"""The command line as a user runs it: exit codes, one-line errors, help examples, run/list/resume, Ctrl-C."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.cli import available
from protocol.events import StepEvent, read_events
from harness.results import Campaign, RunResult
from tests.helpers_trainer import write_trainer

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd or REPO, capture_output=True, text=True,
                          timeout=timeout, env=_env())


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def has_cuda() -> bool:
    import torch
    return torch.cuda.is_available()


def command_run(tmp_path: Path, workspace: Path, *extra: str) -> list[str]:
    trainer = write_trainer(tmp_path)
    return ["run", "--preset", "tiny", "--impl", "command", "--command-name", "toy", "--out", str(tmp_path / "out"),
            "--workspace", str(workspace), "--quiet",
            "--command", f"{{python}} {trainer} --calls-file {tmp_path / 'calls.txt'} " + " ".join(extra)]


@pytest.mark.parametrize("args, needle", [
    (["run", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["run", "--preset", "nope"], "unknown preset 'nope'"),
    (["run", "--preset", "tiny", "--set", "depth=0"], "budget depth=0: must be at least 1"),
    (["run", "--preset", "tiny", "--set", "depth"], "--set 'depth': use KEY=VALUE"),
    (["run", "--preset", "tiny", "--seeds", "a,b"], "--seeds 'a,b'"),
    (["run", "--preset", "tiny", "--impl", "rust"], "--impl 'rust' is unknown"),
    (["run", "--preset", "tiny", "--impl", "command"], "--impl command needs a trainer"),
    (["run", "--preset", "tiny", "--impl", "ours,upstream", "--nproc-per-node", "2", "--set", "total_batch_size=512"],
     "upstream on CPU is not data parallel"),
    (["run", "--budget-toml", "/no/such.toml"], "no such budget file"),
    (["run", "--resume", "/no/such/campaign"], "--resume /no/such/campaign: no campaign.json"),
    (["list", "--out", "/no/such/root"], "no such directory"),
    (["run", "--preset", "tiny", "--gpu", "0"], "--gpu 0: budget 'tiny' runs on CPU"),
    (["run", "--preset", "tiny", "--gpu", "x"], "--gpu 'x': use a CUDA device index"),
    (["nosuchverb"], "invalid choice: 'nosuchverb'"),
])
def test_bad_input_exits_2_with_one_line_naming_the_fix(args, needle):
    proc = cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert needle in one_error_line(proc)


@pytest.mark.skipif(has_cuda(), reason="this machine has CUDA: the no-CUDA errors cannot happen here")
@pytest.mark.parametrize("args, needle", [
    (["run", "--preset", "d12"], "needs CUDA"),
    (["benchmark", "--preset", "d12"], "needs CUDA"),
    (["benchmark", "--preset", "d20"], "needs CUDA"),
    (["benchmark", "--gpu", "3"], "--gpu 3: budget 'smoke' runs on CPU"),
])
def test_gpu_presets_and_gpu_indices_without_cuda_are_refused(args, needle):
    proc = cli(*args)
    assert proc.returncode == 2 and needle in one_error_line(proc)


@pytest.mark.gpu
def test_a_gpu_index_that_does_not_exist_is_refused():
    if not has_cuda():
        pytest.skip("no CUDA")
    proc = cli("benchmark", "--gpu", "99")
    assert proc.returncode == 2 and "--gpu 99: no such CUDA device" in one_error_line(proc)


def test_every_verb_help_ends_with_an_example():
    for verb in ("run", "list", "benchmark"):
        proc = cli(verb, "--help")
        assert proc.returncode == 0
        tail = proc.stdout.strip().splitlines()
        assert tail[-2] == "example:" and tail[-1].strip().startswith("nanochat-bench " + verb)


def test_top_level_help_lists_only_verbs_that_exist():
    proc = cli("--help")
    assert proc.returncode == 0
    listed = set(re.findall(r"^    (\w+)", proc.stdout, re.M))
    assert {"run", "list", "benchmark"} <= listed and listed == set(available())


def test_run_then_list_shows_the_campaign(tmp_path, workspace):
    proc = cli(*command_run(tmp_path, workspace))
    assert proc.returncode == 0, proc.stderr
    assert "1 ok" in proc.stdout and "campaign.json" in proc.stdout
    listing = cli("list", "--out", str(tmp_path / "out"))
    assert listing.returncode == 0 and "tiny" in listing.stdout and "complete: 1 ok" in listing.stdout


def test_resume_reruns_only_the_failed_run(tmp_path, workspace):
    args = command_run(tmp_path, workspace, "--die-at-step 2 --die-seed 1") + ["--seeds", "1,2", "--campaign-id", "c1"]
    first = cli(*args)
    assert first.returncode == 1 and "1 failed, 1 ok" in first.stdout
    again = cli("run", "--resume", "c1", "--out", str(tmp_path / "out"), "--workspace", str(workspace), "--quiet")
    assert again.returncode == 1, again.stderr          # the stored trainer still dies for seed 1
    seeds = [int(line.split()[1]) for line in (tmp_path / "calls.txt").read_text().splitlines()]
    assert seeds == [1, 2, 1]
    # the re-run's files hold the re-run alone: it died at step 2 again, so 2 steps, not the first attempt's 2 + 2
    campaign = Campaign.load(tmp_path / "out" / "c1")
    events = read_events(tmp_path / "out" / "c1" / "runs" / campaign.runs[0].run_id / "events.jsonl")
    assert [e.step for e in events if isinstance(e, StepEvent)] == [0, 1]
    assert RunResult.load(tmp_path / "out" / "c1" / campaign.runs[0].result_path).summary.steps == 2


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_stops_the_run_tree_records_interrupted_and_keeps_the_campaign(tmp_path, workspace, sig):
    args = command_run(tmp_path, workspace, "--sleep-per-step 0.5") + ["--campaign-id", "c1", "--set", "num_iterations=40",
                                                            "--seeds", "1,2"]
    # SIGINT at its default, as in a foreground process a terminal's Ctrl-C reaches (a test run started in the
    # background by a shell inherits SIGINT ignored, and Python then keeps ignoring it)
    proc = subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=REPO, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    events = tmp_path / "out" / "c1" / "runs" / "01-command-toy-s1-r0" / "events.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and not (events.exists() and '"step"' in events.read_text()):
        time.sleep(0.2)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in one_error_line(subprocess.CompletedProcess([], 130, out, err))
    campaign = Campaign.load(tmp_path / "out" / "c1")
    assert [r.status for r in campaign.runs] == ["interrupted", "pending"]
    result = RunResult.load(tmp_path / "out" / "c1" / campaign.runs[0].result_path)
    assert "Ctrl-C" in result.error
    (pid, _seed), = [map(int, line.split()) for line in (tmp_path / "calls.txt").read_text().splitlines()]
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
