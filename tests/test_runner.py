"""The campaign runner: interleaved order, failures that do not stop the campaign, timeouts, resume, the layout.

Runs use the ``command`` arm with a real tiny torch trainer (tests/helpers_trainer.py), so every run is a real
subprocess that really trains and writes the event contract.
"""
from __future__ import annotations

import sys
from pathlib import Path

import psutil

from harness.adapters.base import RunRequest
from harness.adapters.command import CommandAdapter, CommandSpec
from harness.budget import load_preset
from protocol.events import FinalEvent, StepEvent, read_events
from harness.results import Campaign, RunResult
from harness.process import ProcessOptions
from harness.runner import CampaignRunner, RunnerContext, new_campaign, plan_runs
from harness.telemetry import read_samples
from tests.helpers_trainer import write_trainer


def arm(tmp_path: Path, extra: str = "", name: str = "toy") -> CommandAdapter:
    trainer = write_trainer(tmp_path)
    return CommandAdapter(CommandSpec(template=f"{{python}} {trainer} --calls-file {tmp_path / 'calls.txt'} {extra}",
                                      name=name))


def run_campaign(tmp_path: Path, adapter: CommandAdapter, **budget_overrides) -> tuple[Path, Campaign]:
    budget = load_preset("tiny").with_overrides(**budget_overrides)
    cdir, campaign = new_campaign(tmp_path / "campaigns", budget, "tiny", [adapter.name])
    CampaignRunner(cdir, campaign, {adapter.name: adapter}, RunnerContext()).run()
    return cdir, Campaign.load(cdir)


def calls(tmp_path: Path) -> list[tuple[int, int]]:
    lines = (tmp_path / "calls.txt").read_text().split("\n")
    return [tuple(map(int, line.split())) for line in lines if line]


def test_two_arms_alternate_a_b_b_a_across_repeats():
    order = [r.implementation for r in plan_runs(["A", "B"], seeds=[42], repeats=3)]
    assert order == ["A", "B", "B", "A", "A", "B"]


def test_every_arm_seed_repeat_is_planned_once_with_a_unique_ordered_id():
    runs = plan_runs(["ours", "command:x"], seeds=[1, 2], repeats=2)
    assert sorted((r.implementation, r.seed, r.repeat) for r in runs) == sorted(
        (a, s, k) for a in ("ours", "command:x") for s in (1, 2) for k in (0, 1))
    assert [r.run_id for r in runs] == sorted(r.run_id for r in runs) and len({r.run_id for r in runs}) == 8
    assert runs[1].run_id == "02-command-x-s1-r0" and all(r.status == "pending" for r in runs)


def test_a_run_killed_mid_way_is_failed_and_the_next_run_still_completes(tmp_path):
    cdir, campaign = run_campaign(tmp_path, arm(tmp_path, "--die-at-step 3 --die-seed 1"), seeds=[1, 2])
    killed, fine = campaign.results(cdir)
    assert (killed.status, killed.seed) == ("failed", 1)
    assert "killed by SIGKILL" in killed.error and "\n" not in killed.error
    assert "step 2/10" in killed.log_tail and killed.summary.steps == 3
    assert fine.status == "ok" and fine.summary.steps == 10 and fine.valid_for_parity
    assert fine.summary.final_val_bpb < killed.summary.final_val_bpb   # 10 steps learned; the killed run only saw step 0


def test_campaign_dir_holds_result_log_events_and_telemetry_per_run(tmp_path):
    cdir, campaign = run_campaign(tmp_path, arm(tmp_path))
    run = campaign.runs[0]
    files = {p.name for p in (cdir / "runs" / run.run_id).iterdir()}
    assert {"result.json", "log.txt", "events.jsonl", "telemetry.jsonl"} <= files
    result = RunResult.load(cdir / run.result_path)
    assert (result.log_path, result.events_path) == (f"runs/{run.run_id}/log.txt", f"runs/{run.run_id}/events.jsonl")
    assert result.summary.peak_rss_bytes > 10 * 2**20 and result.summary.wall_time_s > 0
    assert result.provenance.utc_started <= result.provenance.utc_finished


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_timeout_kills_the_whole_process_tree_and_records_timeout(tmp_path):
    # a trainer and its child that both ignore SIGTERM: only the SIGKILL after the grace period ends them
    cdir, campaign = run_campaign(tmp_path, arm(tmp_path, "--sleep-per-step 1 --stubborn"), run_timeout_s=3)
    result = campaign.results(cdir)[0]
    assert result.status == "timeout" and "run_timeout_s=3" in result.error
    (pid, _seed), (child, marker) = calls(tmp_path)
    assert marker == -1
    assert gone(pid) and gone(child), "a process of the run's tree outlived the timeout"
    assert result.summary.wall_time_s >= 3 + ProcessOptions().kill_grace_s - 0.5   # TERM was ignored, KILL ended it


def test_resume_reruns_only_runs_without_an_ok_result(tmp_path):
    cdir, campaign = run_campaign(tmp_path, arm(tmp_path, "--die-at-step 2 --die-seed 1"), seeds=[1, 2])
    assert [r.status for r in campaign.runs] == ["failed", "ok"]
    ok_before = (cdir / campaign.runs[1].result_path).read_text()
    fixed = arm(tmp_path)   # the trainer's bug is fixed; same arm name, so the campaign resumes with it
    CampaignRunner(cdir, campaign, {fixed.name: fixed}, RunnerContext()).run()
    assert [seed for _pid, seed in calls(tmp_path)] == [1, 2, 1]
    assert [r.status for r in Campaign.load(cdir).runs] == ["ok", "ok"]
    assert (cdir / campaign.runs[1].result_path).read_text() == ok_before
    # the re-run starts from empty files: the failed attempt's 2 steps, log and samples are gone, not appended to
    rerun_dir = cdir / "runs" / campaign.runs[0].run_id
    events = read_events(rerun_dir / "events.jsonl")
    assert [e.step for e in events if isinstance(e, StepEvent)] == list(range(10))
    assert sum(isinstance(e, FinalEvent) for e in events) == 1
    log = (rerun_dir / "log.txt").read_text()
    assert log.count("\n# ") + log.startswith("# ") == 1 and log.count("step 0/10") == 1
    samples = read_samples(rerun_dir / "telemetry.jsonl")
    assert samples and all(a.t_s < b.t_s for a, b in zip(samples, samples[1:]))   # one series, not two appended
    assert RunResult.load(cdir / campaign.runs[0].result_path).summary.steps == 10


def test_clean_exit_without_a_final_event_is_a_failure(tmp_path):
    adapter = CommandAdapter(CommandSpec(template="{python} -c print(1)", name="silent"))
    adapter.launch = _without_flags(adapter.launch)
    cdir, campaign = run_campaign(tmp_path, adapter)
    result = campaign.results(cdir)[0]
    assert result.status == "failed" and "no final event" in result.error


def test_output_that_breaks_the_event_contract_fails_the_run_with_the_line(tmp_path):
    script = tmp_path / "bad.py"
    script.write_text("import sys\nout = [a for a in sys.argv if a.startswith('--metrics-out=')][0].split('=', 1)[1]\n"
                      "open(out, 'w').write('{\"event\": \"step\", \"step\": 0}\\n')\n")
    cdir, campaign = run_campaign(tmp_path, CommandAdapter(CommandSpec(template=f"{{python}} {script}", name="bad")))
    result = campaign.results(cdir)[0]
    assert result.status == "failed" and "events.jsonl:1" in result.error and "step event" in result.error


def _without_flags(launch):
    """The same launch minus the budget flags (python -c rejects none, but keep the command minimal)."""
    def wrapped(req: RunRequest):
        out = launch(req)
        out.command = [sys.executable, "-c", "print(1)"]
        return out
    return wrapped
