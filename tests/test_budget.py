"""Budget: presets load, horizons resolve, overrides re-validate, and every bad field gets a one-line error naming it."""
from __future__ import annotations

import pytest

from harness.budget import Budget, BudgetError, load_preset, preset_names


def test_every_named_preset_loads_and_validates():
    assert {"tiny", "smoke", "d12", "d20", "d26"} <= set(preset_names())
    for name in preset_names():
        assert load_preset(name).name == name


def test_smoke_preset_matches_the_documented_cpu_budget():
    b = load_preset("smoke")
    assert (b.depth, b.max_seq_len, b.vocab_size, b.device_batch_size, b.total_batch_size) == (4, 256, 4096, 8, 2048)
    assert (b.iterations, b.eval_every, b.eval_tokens, b.repeats, b.device) == (40, 20, 8192, 6, "cpu")
    assert b.warmup_iterations == 12 and b.compile and b.interleave_steps == 1


@pytest.mark.parametrize("overrides, fix", [
    ({"interleave_steps": -1}, "must be 0"),
    ({"interleave_steps": 1.5}, "whole number"),
    ({"interleave_steps": 2, "device": "cuda"}, "only one-process CPU budgets"),
    ({"interleave_steps": 2, "nproc_per_node": 2, "total_batch_size": 512}, "only one-process CPU budgets"),
])
def test_lock_step_is_refused_where_freezing_an_arm_would_not_be_fair(overrides, fix):
    with pytest.raises(BudgetError, match="interleave_steps") as e:
        load_preset("tiny").with_overrides(**overrides)
    assert fix in str(e.value) and "\n" not in str(e.value)


def test_moving_a_lock_step_preset_to_cuda_or_several_processes_turns_lock_step_off():
    smoke = load_preset("smoke")
    assert smoke.with_overrides(device="cuda").interleave_steps == 0
    assert smoke.with_overrides(nproc_per_node=2, total_batch_size=4096).interleave_steps == 0
    assert smoke.with_overrides(repeats=4).interleave_steps == 1


def test_multi_gpu_presets_use_eight_processes_and_a_2_20_batch():
    for name in ("d20", "d26"):
        b = load_preset(name)
        assert (b.nproc_per_node, b.total_batch_size, b.device) == (8, 2**20, "cuda")


def test_target_tokens_resolve_to_whole_steps():
    b = load_preset("tiny").with_overrides(target_tokens=2600)
    assert b.num_iterations is None and b.iterations == 2600 // 256


def test_overrides_give_a_new_validated_copy():
    tiny = load_preset("tiny")
    b = tiny.with_overrides(num_iterations=20, seeds=[1, 2])
    assert (b.iterations, b.seeds, tiny.iterations) == (20, [1, 2], 10)
    with pytest.raises(BudgetError, match="depth"):
        tiny.with_overrides(depth=0)


def test_round_trip_through_dict_is_lossless():
    b = load_preset("smoke")
    assert Budget.from_dict(b.to_dict()) == b


@pytest.mark.parametrize("override, field", [
    ({"vocab_size": 100}, "vocab_size"),
    ({"window_pattern": "SXL"}, "window_pattern"),
    ({"total_batch_size": 300}, "total_batch_size"),
    ({"warmdown_shape": "cosine"}, "warmdown_shape"),
    ({"kernels": "exact"}, "kernels"),
    ({"warmdown_ratio": 1.5}, "warmdown_ratio"),
    ({"num_iterations": 10, "target_tokens": 2560}, "num_iterations"),
    ({"seeds": []}, "seeds"),
    ({"seeds": [1, 1]}, "seeds"),
    ({"repeats": 0}, "repeats"),
    ({"device": "tpu"}, "device"),
    ({"dataset": "/no/such/corpus"}, "dataset"),
    ({"eval_tokens": 10}, "eval_tokens"),
    ({"steady_state_skip": 10}, "steady_state_skip"),
    ({"depth": "4"}, "depth"),
    ({"compile": "yes"}, "compile"),
])
def test_bad_field_gets_one_line_error_naming_it(override, field):
    with pytest.raises(BudgetError) as e:
        load_preset("tiny").with_overrides(**override)
    msg = str(e.value)
    assert f"budget {field}=" in msg and "\n" not in msg


def test_toml_file_defines_a_budget(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\ndepth = 2\nmax_seq_len = 64\nvocab_size = 512\ndevice_batch_size = 2\n'
                    'total_batch_size = 128\nnum_iterations = 3\neval_every = 2\neval_tokens = 128\n'
                    'steady_state_skip = 1\n[command]\ntemplate = "echo"\n')
    b = Budget.from_toml(path)
    assert (b.name, b.iterations, b.warmdown_shape, b.seeds) == ("mine", 3, "sqrt", [42])


def test_toml_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\ndepht = 2\n')
    with pytest.raises(BudgetError, match=r"unknown budget key\(s\) \['depht'\]"):
        Budget.from_toml(bad)
    with pytest.raises(BudgetError, match="no such budget file"):
        Budget.from_toml(tmp_path / "missing.toml")
    with pytest.raises(BudgetError, match="unknown preset 'nope'"):
        load_preset("nope")
