"""upstream.verify against the events of a real captured run (20 steps, warmup 2, warmdown 0.5, 1-sqrt)."""
from __future__ import annotations

from pathlib import Path

import pytest

from protocol.events import FinalEvent, StepEvent
from upstream import verify
from upstream.errors import UpstreamError
from upstream.logparse import parse_lines

LOG = (Path(__file__).parent / "fixtures" / "upstream_logs" / "cpu_d4_sqrt_20steps.log").read_text().splitlines()
FLAGS = ["--num-iterations=20", "--total-batch-size=1024", "--warmup-steps=2", "--warmdown-ratio=0.5"]


@pytest.fixture
def events():
    return parse_lines(LOG)


def test_a_run_that_did_what_was_asked_has_no_mismatch(events):
    assert verify.mismatches(events, verify.Expected.from_flags(FLAGS, "sqrt")) == []


def test_the_wrong_warmdown_shape_is_caught_at_its_first_step(events):
    (line,) = verify.mismatches(events, verify.Expected.from_flags(FLAGS, "linear"))
    assert line == "lrm: 9 steps off the linear schedule, first at step 11: printed 0.70, expected 0.9050"


def test_upstream_defaults_fill_in_schedule_flags_left_out(events):
    expected = verify.Expected.from_flags(FLAGS[:2], "sqrt")
    assert (expected.warmup_steps, expected.warmdown_ratio, expected.final_lr_frac) == (40, 0.65, 0.05)
    assert any(m.startswith("lrm:") for m in verify.mismatches(events, expected))


def test_other_step_count_and_batch_are_reported(events):
    found = verify.mismatches(events, verify.Expected(num_iterations=30, total_batch_size=2048, warmup_steps=2,
                                                      warmdown_ratio=0.5))
    assert any(m.startswith("steps: expected 0..29") for m in found)
    assert "total batch: upstream used 1024 tokens per step, expected 2048" in found
    assert "tokens: final record says 20480, expected 61440" in found


def test_a_missing_step_and_a_missing_final_record_are_reported(events):
    trimmed = [e for e in events if not (isinstance(e, StepEvent) and e.step == 7) and not isinstance(e, FinalEvent)]
    found = verify.mismatches(trimmed, verify.Expected.from_flags(FLAGS, "sqrt"))
    assert found[0].startswith("steps: expected 0..19 once each, got 19 step records (missing [7]")
    assert found[-1].startswith("no final record")


def test_verification_needs_explicit_steps_and_batch():
    with pytest.raises(UpstreamError, match="explicit --num-iterations and --total-batch-size"):
        verify.Expected.from_flags(["--num-iterations=20"], "sqrt")
