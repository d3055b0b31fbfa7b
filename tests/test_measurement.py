"""Warm-up planning, the step-time distribution, kernel high-water marks, the interference rule and the machine
identity: each on inputs whose answer is known (no timing thresholds)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness import interference
from harness.budget import load_preset
from harness.report.identity import machine_key
from harness.results import Provenance
from harness.runner import plan_runs
from harness.summarize import step_distribution_ms, summarize
from harness.telemetry import ProcessTree, Sample, is_helper, read_vm_hwm
from protocol.events import StepEvent


def test_warmup_runs_come_first_one_per_arm_and_are_marked():
    runs = plan_runs(["ours", "upstream"], [42], 3, warmup=True)
    assert [r.phase for r in runs[:2]] == ["warmup", "warmup"] and {r.implementation for r in runs[:2]} == \
        {"ours", "upstream"}
    assert [r.phase for r in runs[2:]] == ["measure"] * 6 and [r.repeat for r in runs[2:]] == [0, 0, 1, 1, 2, 2]
    assert all(r.phase == "measure" for r in plan_runs(["ours", "upstream"], [42], 3))


def test_the_warmup_budget_keeps_the_shapes_and_shortens_the_run():
    smoke = load_preset("smoke")
    w = smoke.warmup_budget()
    assert smoke.repeats >= 3 and smoke.warmup_iterations > 0
    assert w.iterations == smoke.warmup_iterations and w.repeats == 1
    same = ("depth", "max_seq_len", "vocab_size", "device_batch_size", "total_batch_size", "eval_tokens", "compile")
    assert all(getattr(w, k) == getattr(smoke, k) for k in same)


def test_step_distribution_is_median_iqr_and_p90_in_ms():
    med, iqr, p90 = step_distribution_ms([0.1, 0.2, 0.3, 0.4, 0.5])
    assert (med, iqr, p90) == pytest.approx((300.0, 200.0, 460.0))
    assert step_distribution_ms([]) == (None, None, None)


def test_summary_separates_first_step_and_steady_state_time():
    budget = load_preset("tiny")
    dts = [5.0, 1.0] + [0.1] * 8                      # step 0 compiles, step 1 settles
    events = [StepEvent(step=i, loss=1.0, lrm=1.0, dt_s=dt, tokens_per_s=256 / dt) for i, dt in enumerate(dts)]
    s = summarize(budget, events, [], first_step_s=7.5, trainer_hwm_bytes=10, helper_hwm_bytes=3)
    assert s.time_to_first_step_s == 7.5 and s.train_time_s == pytest.approx(sum(dts))
    assert budget.steady_state_skip == 2 and s.steady_train_time_s == pytest.approx(0.8)   # steps 2..9
    assert s.step_ms_median == pytest.approx(100.0) and (s.trainer_hwm_bytes, s.helper_hwm_bytes) == (10, 3)


def test_vm_hwm_is_the_kernels_peak_even_after_memory_is_freed():
    code = ("import os\nb = bytearray(64 * 2**20)\nfor i in range(0, len(b), 4096): b[i] = 1\ndel b\n"
            "print(open(f'/proc/{os.getpid()}/status').read(), flush=True)\nimport sys; sys.stdin.read()")
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        p.stdout.readline()
        hwm = read_vm_hwm(p.pid)
        rss = int(next(line for line in open(f"/proc/{p.pid}/status") if line.startswith("VmRSS:")).split()[1]) * 1024
        assert hwm >= 64 * 2**20 and hwm > rss + 32 * 2**20   # the 64 MiB were freed; the mark stays
    finally:
        p.stdin.close()
        p.wait()


def test_compile_workers_and_launchers_are_helpers_and_the_trainer_is_not():
    assert is_helper(["python", "/x/torch/_inductor/compile_worker/__main__.py", "--workers=2"])
    assert is_helper(["python", "-m", "torch.distributed.run", "--standalone", "-m", "models.train"])
    assert is_helper(["/usr/lib/gcc/x86_64-linux-gnu/12/cc1plus", "-quiet", "kernel.cpp"]) and is_helper(["g++"])
    assert not is_helper(["/venv/bin/python3.11", "-m", "models.train", "--depth=4"])
    tree = ProcessTree(os.getpid())
    tree.read()
    trainer, helper = tree.peaks()
    assert trainer and trainer >= read_vm_hwm(os.getpid()) // 2   # this Python process is a trainer


def _samples(others_per_s: float, n: int = 10) -> list[Sample]:
    return [Sample(t_s=i, rss_bytes=1, cpu_percent=100.0, nprocs=1, interval_s=0.5, others_cpu_s=others_per_s * 0.5,
                   load1=1.0) for i in range(n)]


def test_a_run_with_another_busy_core_is_disturbed_and_an_idle_one_is_not():
    busy = interference.judge(_samples(1.0))
    idle = interference.judge(_samples(0.02))
    assert busy.disturbed and "1.00 cores" in busy.why and busy.others_cores_mean == pytest.approx(1.0)
    assert not idle.disturbed and idle.why is None and idle.threshold_cores == interference.OTHERS_CORES_THRESHOLD


def test_other_gpu_processes_and_thermal_slowdown_disturb_a_run():
    s = _samples(0.0)
    s[3].gpu_other_procs, s[4].gpu_throttle_reasons = 1, 0x40 | 0x1
    r = interference.judge(s)
    assert r.disturbed and "other process" in r.why and "hw_thermal_slowdown" in r.why
    assert r.gpu_throttle_reasons == ["hw_thermal_slowdown"]


def test_require_idle_refuses_a_machine_that_stays_busy(monkeypatch):
    monkeypatch.setattr(interference, "probe", lambda *a, **k: interference.IdleCheck(1.0, False))
    with pytest.raises(interference.BusyMachine, match="still use 1.00 cores"):
        interference.require_idle(max_wait_s=0, say=lambda _l: None)
    monkeypatch.setattr(interference, "probe", lambda *a, **k: interference.IdleCheck(0.01, True))
    assert interference.require_idle(max_wait_s=0).idle


def test_machine_key_separates_aten_cpu_paths_and_keeps_old_results_key():
    base = dict(hostname="h", cpu_model="EPYC", cpu_count=2, torch="2.13.0", torch_threads=2)
    avx2 = machine_key(Provenance(**base, aten_cpu_capability="avx2"))
    avx512 = machine_key(Provenance(**base, aten_cpu_capability="avx512"))
    assert avx2 != avx512 and "aten=avx2" in avx2
    assert machine_key(Provenance(hostname="h", cpu_model="EPYC", cpu_count=2)) == "h/EPYC x2"
