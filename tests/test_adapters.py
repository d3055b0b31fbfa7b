"""Adapters: one budget becomes each arm's flags in one place, the same words for ours and external trainers."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.adapters.base import AdapterError, RunRequest, torchrun_prefix
from harness.adapters.command import CommandAdapter, CommandSpec
from harness.adapters.ours import OursAdapter, budget_flags
from harness.adapters.upstream import UpstreamAdapter, upstream_flags
from harness.budget import load_preset

SMOKE = load_preset("smoke")


def request(tmp_path: Path, budget=SMOKE, **kw) -> RunRequest:
    return RunRequest(budget=budget, seed=7, repeat=1, run_id="01-x", run_dir=tmp_path / "runs" / "01-x",
                      campaign_dir=tmp_path, base_dir=tmp_path / "data", **kw)


def test_our_flags_spell_the_budget_like_upstreams_base_train(tmp_path):
    flags = budget_flags(SMOKE.with_overrides(compile=False), seed=7, metrics_out=tmp_path / "e.jsonl",
                         base_dir=tmp_path / "data")
    assert flags == ["--depth=4", "--aspect-ratio=64", "--head-dim=128", "--max-seq-len=256", "--window-pattern=L",
                     "--device-batch-size=8", "--total-batch-size=2048", "--num-iterations=40", "--warmup-steps=10",
                     "--warmdown-ratio=0.5", "--final-lr-frac=0.05", "--eval-every=20", "--eval-tokens=8192",
                     "--device-type=cpu", "--warmdown-shape=sqrt", "--seed=7", f"--metrics-out={tmp_path / 'e.jsonl'}",
                     "--no-compile", f"--base-dir={tmp_path / 'data'}"]
    assert "--compile" in budget_flags(SMOKE.with_overrides(compile=True), seed=7, metrics_out=tmp_path / "e.jsonl",
                                       base_dir=None)


def test_shared_flags_have_the_same_values_for_ours_and_upstream(tmp_path):
    ours = dict(f[2:].split("=", 1) for f in budget_flags(SMOKE, seed=42, metrics_out=tmp_path, base_dir=None) if "=" in f)
    for name, value in upstream_flags(SMOKE).items():
        assert ours[name] == str(value), name


def test_parity_switches_and_cuda_compile_reach_our_flags(tmp_path):
    b = SMOKE.with_overrides(muon_weight_decay_off=True, device="cuda", keep_checkpoints=True)
    req = request(tmp_path, budget=b)
    flags = OursAdapter().launch(req).command
    assert "--muon-weight-decay-off" in flags and "--compile" in flags
    assert f"--checkpoint-dir={req.run_dir / 'checkpoint'}" in flags


def test_kernels_and_fast_setting_reach_our_flags_only_when_asked(tmp_path):
    plain = budget_flags(SMOKE, seed=42, metrics_out=tmp_path, base_dir=None)
    assert not any(f.startswith(("--kernels", "--fast-setting")) for f in plain)  # an external trainer never sees them
    flags = budget_flags(SMOKE.with_overrides(kernels="parity", fast_setting=True), seed=42, metrics_out=tmp_path,
                         base_dir=None)
    assert "--kernels=parity" in flags and "--fast-setting" in flags
    from models.train import build_parser  # and our trainer takes both
    a = build_parser().parse_args([f for f in flags if f.startswith(("--kernels", "--fast-setting"))])
    assert (a.kernels, a.fast_setting) == ("parity", True)


def test_our_arm_runs_under_torchrun_for_several_processes(tmp_path):
    b = SMOKE.with_overrides(nproc_per_node=2, total_batch_size=4096)
    cmd = OursAdapter().launch(request(tmp_path, budget=b)).command
    assert cmd[:6] == [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--nnodes=1", "--standalone"]
    assert cmd[6:8] == ["-m", "models.train"]


def test_multi_node_needs_a_rendezvous_endpoint():
    b = SMOKE.with_overrides(nnodes=2, total_batch_size=4096, device="cuda")
    assert torchrun_prefix(b, "node0:29500")[-2:] == ["--rdzv-backend=c10d", "--rdzv-endpoint=node0:29500"]
    with pytest.raises(AdapterError, match="--rdzv-endpoint"):
        torchrun_prefix(b, None)


def test_command_template_gets_placeholders_and_the_same_flags(tmp_path):
    spec = CommandSpec(template="{python} train.py --out {run_dir}/x {flags} --tail", name="rust")
    req = request(tmp_path)
    cmd = CommandAdapter(spec, cwd=tmp_path).launch(req).command
    flags = budget_flags(SMOKE, seed=7, metrics_out=req.events_path, base_dir=req.base_dir)
    assert cmd == [sys.executable, "train.py", "--out", f"{req.run_dir}/x", *flags, "--tail"]
    assert CommandAdapter(spec).name == "command:rust"


def test_command_spec_errors_name_the_fix(tmp_path):
    with pytest.raises(AdapterError, match="template is empty"):
        CommandSpec(template="  ")
    with pytest.raises(AdapterError, match=r"placeholder \{outdir\} is not one of"):
        CommandSpec(template="x {outdir}")
    with pytest.raises(AdapterError, match="command name"):
        CommandSpec(template="x", name="a b")
    toml = tmp_path / "b.toml"
    toml.write_text('name = "x"\n[command]\ntemplate = "./rustchat train"\nname = "rustchat"\n')
    assert CommandSpec.from_toml(toml) == CommandSpec(template="./rustchat train", name="rustchat")


def test_upstream_refuses_cpu_processes_that_would_not_be_data_parallel():
    with pytest.raises(AdapterError, match="not data parallel"):
        UpstreamAdapter().check(SMOKE.with_overrides(nproc_per_node=2, total_batch_size=4096))
    UpstreamAdapter().check(SMOKE.with_overrides(nproc_per_node=2, total_batch_size=4096, device="cuda"))


def test_our_compile_cache_is_per_aten_cpu_path_and_compiles_in_process(tmp_path, monkeypatch):
    from harness.adapters.ours import compile_cache_env
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    avx2 = compile_cache_env(tmp_path)
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    default = compile_cache_env(tmp_path)
    assert avx2["TORCHINDUCTOR_CACHE_DIR"] != default["TORCHINDUCTOR_CACHE_DIR"]
    assert avx2["TORCHINDUCTOR_CACHE_DIR"].endswith("-avx2") and avx2["TORCHINDUCTOR_COMPILE_THREADS"] == "1"
