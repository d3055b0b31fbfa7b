"""Lock-step rounds (harness/lockstep.py): the pause arithmetic on records, and two real arms sharing the CPU."""
from __future__ import annotations

import dataclasses

import pytest

from harness.adapters.command import CommandAdapter, CommandSpec
from harness.budget import load_preset
from harness.lockstep import unpause_events
from harness.results import Campaign, RunResult
from harness.runner import CampaignRunner, RunnerContext, new_campaign
from harness.summarize import steady_steps
from protocol.events import EvalEvent, StepEvent, read_events
from tests.helpers_trainer import write_trainer


def step(i: int, dt: float, t: float) -> StepEvent:
    return StepEvent(step=i, loss=1.0, lrm=1.0, dt_s=dt, tokens_per_s=1000 / dt, t_s=t)


def seen_at(events, times):
    return {(e.event, e.step): t for e, t in zip(events, times)}


def test_a_pause_inside_a_step_is_taken_out_of_its_time_and_of_every_later_timestamp():
    # the arm's clock starts at 100 (monotonic); steps of 0.5 s; paused 101.6-103.6 inside step 2 (1.5-4.0 + 2 s)
    events = [step(0, 0.5, 0.5), step(1, 0.5, 1.0), step(2, 2.5, 3.5), EvalEvent(step=3, val_bpb=2.0, dt_s=0.2, t_s=3.7),
              step(3, 0.5, 4.2)]
    seen = seen_at(events, [100.5, 101.0, 103.5, 103.7, 104.2])
    out, charged = unpause_events(events, seen, [(101.2, 103.2)])
    assert [round(e.dt_s, 6) for e in out] == [0.5, 0.5, 0.5, 0.2, 0.5]
    assert out[2].tokens_per_s == pytest.approx(2000.0)
    assert [round(e.t_s, 6) for e in out] == [0.5, 1.0, 1.5, 1.7, 2.2]
    assert charged == pytest.approx(2.0)


def test_a_pause_between_records_shifts_timestamps_but_charges_no_record():
    events = [step(0, 0.5, 0.5), step(1, 0.5, 3.0)]        # paused 0.6-2.4 while the arm was between steps
    out, charged = unpause_events(events, seen_at(events, [100.5, 103.0]), [(100.6, 102.4)])
    assert [e.dt_s for e in out] == [0.5, 0.5] and charged == 0.0
    assert out[1].t_s == pytest.approx(3.0 - 1.8)


def test_a_pause_longer_than_its_record_is_not_charged_to_it():
    """A record cannot have run for less than nothing: the pause is left uncharged rather than made negative."""
    events = [step(0, 0.5, 1.0)]                            # ran 100.5-101.0, the pause 100.4-101.2 covers it
    out, charged = unpause_events(events, seen_at(events, [101.0]), [(100.4, 101.2)])
    assert out[0].dt_s == 0.5 and charged == 0.0


def test_two_real_arms_share_the_cpu_in_lock_step_and_their_records_lose_the_pauses(tmp_path):
    """Two CPU-bound trainers (tests/helpers_trainer.py) as the two arms of one round, switching every 2 steps."""
    trainer = write_trainer(tmp_path)
    arms = {name: CommandAdapter(CommandSpec(template=f"{{python}} {trainer}", name=name)) for name in ("a", "b")}
    budget = load_preset("tiny").with_overrides(num_iterations=16, total_batch_size=256 * 40, eval_every=8,
                                                interleave_steps=2, steady_state_skip=2)
    cdir, campaign = new_campaign(tmp_path / "c", budget, "tiny", [a.name for a in arms.values()])
    CampaignRunner(cdir, campaign, {a.name: a for a in arms.values()}, RunnerContext()).run()
    campaign = Campaign.load(cdir)
    assert [r.status for r in campaign.runs] == ["ok", "ok"]
    for run in campaign.runs:
        result = RunResult.load(cdir / run.result_path)
        raw = read_events(cdir / "runs" / run.run_id / "events.raw.jsonl")
        fixed = read_events(cdir / result.events_path)
        timing = {"dt_s", "tokens_per_s", "t_s", "train_time_s"}
        assert [{k: v for k, v in dataclasses.asdict(e).items() if k not in timing} for e in raw] == \
               [{k: v for k, v in dataclasses.asdict(e).items() if k not in timing} for e in fixed]
        taken = [r.dt_s - f.dt_s for r, f in zip(raw, fixed) if isinstance(r, StepEvent)]
        assert all(t >= 0 for t in taken)
        assert sum(t > 0 for t in taken) >= 2, "the other arm ran inside some of this arm's steps"
        assert result.lockstep_paused_s + 1e-3 >= sum(taken) > 0          # stored to the millisecond
        assert fixed[-1].t_s < raw[-1].t_s
        assert result.summary.steady_train_time_s == pytest.approx(sum(e.dt_s for e in steady_steps(fixed, 2)))
