"""models.horizon: batch size, LR and weight-decay scaling and the step count, against upstream's reference values."""
import pytest

from models import horizon as hz

# (depth, vocab, P_s, flops/token, auto batch, N at ratio 12): upstream's own values at the pin 92d63d4 (its GPT built on
# the meta device, T=2048 SSSL unless noted: num_scaling_params(), estimate_flops(), and the batch size and iteration
# count scripts/base_train.py derives from them), not computed with models/.
TABLE = [
    (4, 4096, 4_194_352, 28_311_984, 131_072, 384),
    (4, 32768, 11_534_384, 80_216_496, 262_144, 528),
    (12, 32768, 110_100_912, 759_696_048, 524_288, 2_520),
    (20, 32768, 435_160_240, 2_886_212_784, 1_048_576, 4_980),
    (26, 32768, 918_423_532, 5_991_051_288, 1_048_576, 10_510),
]


def test_model_dim_rounds_up_to_whole_heads():
    assert [hz.model_dim(d) for d in (4, 7, 12, 20, 26)] == [256, 512, 768, 1280, 1664]


@pytest.mark.parametrize("depth,vocab,p_s,flops,batch,steps", TABLE)
def test_scaling_params_match_upstreams_counts(depth, vocab, p_s, flops, batch, steps):
    assert hz.scaling_params(depth, vocab) == p_s


def _resolve(vocab, p_s, **kw):
    return hz.resolve_horizon(scaling_params=p_s, reference_scaling_params=hz.scaling_params(12, vocab), **kw)


@pytest.mark.parametrize("depth,vocab,p_s,flops,batch,steps", TABLE)
def test_auto_batch_and_steps_match_upstream(depth, vocab, p_s, flops, batch, steps):
    plan = _resolve(vocab, p_s, flops_per_token=flops)
    assert (plan.total_batch_size, plan.num_iterations) == (batch, steps)


@pytest.mark.parametrize("depth,wd,lr_scale", [(12, 0.28, 1.0), (20, 0.100188, 2 ** 0.5), (26, 0.0474702, 2 ** 0.5)])
def test_weight_decay_and_lr_scale_of_the_reference_runs(depth, wd, lr_scale):
    plan = _resolve(32768, hz.scaling_params(depth, 32768), flops_per_token=1.0)
    assert plan.weight_decay == pytest.approx(wd, rel=1e-5)
    assert plan.batch_lr_scale == pytest.approx(lr_scale, rel=1e-12)


def test_local_d4_run_with_explicit_batch_matches_the_saved_optimizer_state():
    plan = _resolve(4096, 4_194_352, flops_per_token=28_311_984, total_batch_size=1024, num_iterations=20)
    assert plan.weight_decay == pytest.approx(0.25986, rel=1e-5)  # computed even though N is explicit
    assert plan.batch_lr_scale == pytest.approx(0.0441942, rel=1e-6)
    assert (plan.total_batch_size, plan.num_iterations) == (1024, 20)
    s, m = plan.batch_lr_scale, hz.dmodel_lr_scale(256)
    assert 0.008 * s * m == pytest.approx(6.12372e-4, rel=1e-5)   # lm_head
    assert 0.3 * s * m == pytest.approx(0.022964, rel=1e-5)       # wte
    assert 0.02 * s == pytest.approx(8.83883e-4, rel=1e-5)        # Muon


def test_d_scaling_and_batch_scaling_are_inverse_square_roots():
    assert hz.dmodel_lr_scale(768) == 1.0
    assert hz.dmodel_lr_scale(3072) == 0.5
    assert hz.batch_lr_scale(2 ** 19) == 1.0
    assert hz.batch_lr_scale(2 ** 21) == 2.0


def test_horizon_precedence_is_explicit_then_flops_then_ratio():
    args = dict(ratio=12, flops_per_token=1e6, total_batch=1000, scaling_params=10_000)
    assert hz.resolve_num_iterations(num_iterations=7, target_flops=5e12, **args) == 7
    assert hz.resolve_num_iterations(num_iterations=-1, target_flops=2.5e12, **args) == 2500
    assert hz.resolve_num_iterations(num_iterations=-1, target_flops=-1, **args) == 120  # 120_000 // 1000
    with pytest.raises(ValueError, match="no training horizon"):
        hz.resolve_num_iterations(-1, -1, -1, 1e6, 1000, 10_000)


def test_disabled_ratio_keeps_upstreams_batch_and_weight_decay():
    on = _resolve(4096, 4_194_352, flops_per_token=1.0)
    off = _resolve(4096, 4_194_352, flops_per_token=1.0, target_param_data_ratio=-1, num_iterations=10)
    assert off.total_batch_size == on.total_batch_size
    assert off.weight_decay == pytest.approx(on.weight_decay, rel=1e-12)


def test_bad_horizon_inputs_are_one_line_errors():
    with pytest.raises(ValueError, match="total_batch_size=0"):
        _resolve(4096, 1000, flops_per_token=1.0, total_batch_size=0)
    with pytest.raises(ValueError, match="target_param_data_ratio=0"):
        _resolve(4096, 1000, flops_per_token=1.0, target_param_data_ratio=0, num_iterations=5)
    with pytest.raises(ValueError, match="resolves to 0 steps"):
        _resolve(4096, 1000, flops_per_token=1.0, total_batch_size=2 ** 20)


def test_grad_accumulation_splits_the_batch_evenly_or_says_what_to_change():
    assert hz.grad_accum_steps(2 ** 19, 32, 2048, 8) == 1
    assert hz.grad_accum_steps(2048, 4, 256, 1) == 2
    with pytest.raises(ValueError, match="not a multiple of device_batch"):
        hz.grad_accum_steps(1000, 4, 256, 1)


@pytest.mark.parametrize("depth,vocab", [(4, 4096), (7, 4100), (12, 32768)])
def test_shape_formula_equals_the_models_own_scaling_count(depth, vocab):
    import torch
    from models.config import config_from_depth
    from models.gpt import GPT
    with torch.device("meta"):
        model = GPT(config_from_depth(depth, vocab, max_seq_len=256))
    assert hz.scaling_params(depth, vocab) == model.num_scaling_params()
