"""upstream.logparse on a log captured from a real upstream run (d4, CPU, 20 steps, 1-sqrt swapped in)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from protocol.events import EvalEvent, FinalEvent, StepEvent, iter_events, to_json
from upstream.errors import UpstreamError
from upstream.logparse import LogParser, parse_lines

FIXTURES = Path(__file__).parent / "fixtures" / "upstream_logs"
LOG = (FIXTURES / "cpu_d4_sqrt_20steps.log").read_text(encoding="utf-8").splitlines()
META = json.loads((FIXTURES / "cpu_d4_sqrt_20steps.meta.json").read_text())


def _by_kind(events, kind):
    return [e for e in events if isinstance(e, kind)]


def test_every_step_and_eval_line_becomes_an_event():
    events = parse_lines(LOG, commit="92d63d4")
    assert [s.step for s in _by_kind(events, StepEvent)] == list(range(20))
    assert [(e.step, e.val_bpb) for e in _by_kind(events, EvalEvent)] == [(0, 3.067541), (10, 3.102283),
                                                                         (20, 3.084361)]
    assert isinstance(events[-1], FinalEvent)


def test_step_fields_are_read_in_si_units():
    step11 = _by_kind(parse_lines(LOG), StepEvent)[11]
    assert (step11.loss, step11.lrm) == (8.349106, 0.70)
    assert step11.dt_s == pytest.approx(2.05978)
    assert step11.tokens_per_s == 497
    assert step11.mfu is None  # upstream prints 0.00 off CUDA: unknown, not zero


def test_thousands_separators_in_tokens_per_second_are_removed():
    assert _by_kind(parse_lines(LOG), StepEvent)[7].tokens_per_s == 1495


def test_raw_loss_recovered_from_the_printed_ema_reproduces_it():
    steps = _by_kind(parse_lines(LOG), StepEvent)
    assert steps[0].loss_raw == pytest.approx(steps[0].loss)
    ema = 0.0
    for s in steps:  # redo upstream's EMA from our raw losses: must give back every printed value
        ema = 0.9 * ema + 0.1 * s.loss_raw
        assert ema / (1 - 0.9 ** (s.step + 1)) == pytest.approx(s.loss, abs=2e-6)
    assert ema == pytest.approx(META["loop_state"]["smooth_train_loss"], abs=1e-5)


def test_raw_loss_is_not_guessed_after_a_gap_in_the_steps():
    gap = [line for line in LOG if not line.startswith("step 00005/")]
    steps = {s.step: s for s in _by_kind(parse_lines(gap), StepEvent)}
    assert steps[6].loss_raw is None and steps[4].loss_raw is not None


def test_parameter_counts_block_is_read_whole():
    final = parse_lines(LOG)[-1]
    assert final.param_counts == {"wte": 1_048_576, "value_embeds": 2_097_152, "lm_head": 1_048_576,
                                  "transformer_matrices": 3_145_776, "scalars": 34, "total": 7_340_114}


def test_final_record_totals_from_the_log_alone():
    final = parse_lines(LOG)[-1]
    assert (final.steps, final.tokens) == (20, 20 * 1024)
    assert final.train_time_s == pytest.approx(0.18 * 60)  # printed minutes, steps > 10 only
    assert final.peak_mem_bytes is None  # "Peak memory usage: 0.00MiB" on CPU
    assert final.min_val_bpb == 3.067541
    assert final.extra["flops_per_token"] == 2.831198e07
    assert final.extra["dt_sum_s"] == pytest.approx(sum(s.dt_s for s in _by_kind(parse_lines(LOG), StepEvent)))


def test_checkpoint_meta_gives_exact_time_and_eval_tokens():
    events = parse_lines(LOG, meta=META)
    final = events[-1]
    assert final.train_time_s == META["loop_state"]["total_training_time"]
    assert final.extra["checkpoint_meta"]["model_config"]["n_layer"] == 4
    assert {e.eval_tokens for e in _by_kind(events, EvalEvent)} == {4096}


def test_colour_codes_are_stripped_before_matching():
    final = parse_lines(LOG)[-1]
    assert any("\x1b[" in line for line in LOG)  # the captured log does carry ANSI codes
    assert final.extra["world_size"] == 1  # read from the coloured logger line
    assert (final.extra["attention"], final.extra["compute_dtype"]) == ("sdpa", "torch.float32")


def test_events_come_out_line_by_line_with_timestamps():
    parser, seen = LogParser(), []
    for i, line in enumerate(LOG):
        seen += [(i, e) for e in parser.feed(line, t_s=float(i))]
    first_step = next(e for _, e in seen if isinstance(e, StepEvent))
    assert first_step.t_s == float(next(i for i, line in enumerate(LOG) if line.startswith("step 00000/")))
    assert len(seen) == 23


def test_events_round_trip_through_the_jsonl_contract():
    events = parse_lines(LOG, meta=META)
    again = list(iter_events(to_json(e) for e in events))
    assert again == events


def test_gpu_lines_give_memory_in_bytes_and_a_real_mfu():
    gpu_log = ["Total batch size 524,288 => gradient accumulation steps: 1",
               "step 00003/00010 (30.00%) | loss: 9.1 | lrm: 1.00 | dt: 500.00ms | tok/sec: 1,048,576 | "
               "bf16_mfu: 41.25 | epoch: 1 pq: 0 rg: 0 | total time: 0.00m",
               "Peak memory usage: 1024.50MiB"]
    events = parse_lines(gpu_log)
    assert events[0].mfu == 41.25 and events[0].tokens_per_s == 1_048_576
    assert events[-1].peak_mem_bytes == int(1024.5 * 2**20)


def test_unknown_lines_are_ignored():
    assert parse_lines(["hello", "Step nonsense", *LOG, "Traceback? no"])[-1].steps == 20


def test_a_log_without_step_lines_is_a_one_line_error_naming_the_commit():
    with pytest.raises(UpstreamError, match=r"no training step line.*abc1234.*format changed") as info:
        LogParser(commit="abc1234").finish()
    assert "\n" not in str(info.value)


def test_a_changed_step_line_is_a_one_line_error():
    with pytest.raises(UpstreamError, match="log format changed"):
        LogParser(commit="abc1234").feed("step 00001/00020 (5.00%) | loss: 8.3 | lr_mult: 1.00 | dt: 3.0ms")
