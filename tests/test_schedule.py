"""models.schedule: LR multiplier (both warmdown shapes), Muon momentum and Muon weight decay, in closed form."""
import math

import pytest

from models.schedule import lr_multiplier, muon_momentum, muon_weight_decay, warmdown_steps

# A 20-step run: 5 warmup steps, warmdown over the last round(0.5*20) = 10 steps, down to 5 %.
N, WARMUP, RATIO, FINAL = 20, 5, 0.5, 0.05


def _lrm(it, shape):
    return lr_multiplier(it, N, WARMUP, RATIO, FINAL, shape)


@pytest.mark.parametrize("shape", ["sqrt", "linear"])
def test_warmup_is_linear_then_flat_until_the_warmdown(shape):
    assert [_lrm(it, shape) for it in range(5)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0], abs=1e-15)
    assert [_lrm(it, shape) for it in range(5, 11)] == [1.0] * 6  # step N - W = 10 is still flat


def test_linear_warmdown_is_upstreams_formula():
    expected = {11: 0.905, 15: 0.525, 19: 0.145, 20: 0.05}  # remaining r = (20 - it)/10: r + (1 - r)*0.05
    for it, value in expected.items():
        assert _lrm(it, "linear") == pytest.approx(value, abs=1e-12)


def test_sqrt_warmdown_follows_one_minus_sqrt_of_progress():
    # progress p = (it - 10)/10; lrm = 0.05 + 0.95*(1 - sqrt(p)), values worked out by hand
    expected = {11: 0.6995836223, 15: 0.3282485579, 19: 0.0987508669, 20: 0.05}
    for it, value in expected.items():
        assert _lrm(it, "sqrt") == pytest.approx(value, abs=1e-9)


def test_sqrt_and_linear_agree_at_both_ends_of_the_warmdown():
    for it in (0, 4, 10, 20):
        assert _lrm(it, "sqrt") == pytest.approx(_lrm(it, "linear"), abs=1e-15)
    assert all(_lrm(it, "sqrt") < _lrm(it, "linear") for it in range(11, 20))


def test_warmup_wins_over_a_run_shorter_than_it():
    # upstream defaults (warmup 40, warmdown 0.65) on a 20-step run: never leaves the warmup
    assert [lr_multiplier(it, 20, 40, 0.65, 0.05) for it in range(20)] == [(it + 1) / 40 for it in range(20)]


def test_warmdown_length_uses_pythons_round_half_to_even():
    assert warmdown_steps(10, 0.25) == 2   # 2.5 -> 2
    assert warmdown_steps(30, 0.25) == 8   # 7.5 -> 8
    assert warmdown_steps(2520, 0.65) == 1638


def test_unknown_shape_is_a_one_line_error():
    with pytest.raises(ValueError, match="'cosine' is not one of"):
        lr_multiplier(0, N, WARMUP, RATIO, FINAL, "cosine")


def test_muon_momentum_warms_up_over_400_steps_then_decays_in_the_warmdown():
    n = 1000  # warmdown 0.5 -> starts at step 500
    assert muon_momentum(0, n, 0.5) == 0.85
    assert muon_momentum(200, n, 0.5) == pytest.approx(0.91, abs=1e-15)
    assert muon_momentum(400, n, 0.5) == 0.97
    assert muon_momentum(499, n, 0.5) == 0.97
    assert muon_momentum(500, n, 0.5) == pytest.approx(0.97, abs=1e-15)
    assert muon_momentum(750, n, 0.5) == pytest.approx(0.935, abs=1e-15)
    assert muon_momentum(999, n, 0.5) == pytest.approx(0.97 - 0.07 * 499 / 500, abs=1e-15)


def test_muon_momentum_warmup_ignores_the_warmdown_of_a_short_run():
    assert [muon_momentum(it, 20, 0.5) for it in range(20)] == pytest.approx(
        [0.85 + 0.12 * it / 400 for it in range(20)], abs=1e-15)


def test_muon_weight_decay_is_a_half_cosine_to_zero():
    assert muon_weight_decay(0, 20, 0.28) == 0.28
    assert muon_weight_decay(10, 20, 0.28) == pytest.approx(0.14, abs=1e-15)
    assert muon_weight_decay(5, 20, 0.28) == pytest.approx(0.14 * (1 + math.sqrt(0.5)), abs=1e-15)
    assert muon_weight_decay(20, 20, 0.28) == pytest.approx(0.0, abs=1e-15)


def test_eval_steps_add_a_denser_cadence_from_the_warmdowns_first_step():
    from protocol.schedule import eval_steps
    assert eval_steps(10, 5) == [0, 5, 10]
    assert eval_steps(20, 10, warmdown_ratio=0.5, warmdown_eval_every=3) == [0, 10, 13, 16, 19, 20]
    assert eval_steps(10, -1, 0.5, 2) == []        # no evals at all stays no evals
