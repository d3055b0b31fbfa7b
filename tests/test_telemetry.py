"""Telemetry: host memory and CPU summed over a whole process tree, and GPU fields that are None (never 0)
where NVML or a GPU is absent.

The tree tests wait for what they check (up to DEADLINE_S), never for a fixed time, and never read a
maximum of samples that may not exist: the machine may be small and busy, so a child can be slow to start
and a busy loop may get little CPU in any one interval.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from harness.telemetry import GpuProbe, GpuUnavailable, Sampler, read_samples

DEADLINE_S = 15.0
# A parent that starts a child holding 200 MiB (every page touched), then both wait to be stopped.
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "b = bytearray(200 * 2**20)\\nfor i in range(0, len(b), 4096): b[i] = 1\\n"
                          "print('ready', flush=True)\\nimport time; time.sleep(60)"], stdout=sys.stdout)
time.sleep(60)
"""
# An idle parent (asleep) whose child spins: any CPU the tree uses is the child's.
IDLE_PARENT_BUSY_CHILD = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "print('ready', flush=True)\\nimport time\\nt = time.time()\\n"
                          "while time.time() - t < 60: pass\\n"], stdout=sys.stdout)
time.sleep(60)
"""


def start(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def stop_tree(proc: subprocess.Popen) -> None:
    for child in psutil.Process(proc.pid).children(recursive=True):
        child.kill()
    proc.kill()
    proc.wait()


def wait_for(condition, what: str):
    """condition() until it returns something truthy, which is returned; fails after DEADLINE_S saying what."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {DEADLINE_S:g} s")
        time.sleep(0.05)


def test_sampler_sums_rss_over_a_childs_allocation(tmp_path):
    proc = start(PARENT)
    try:
        sampler = Sampler(proc.pid, tmp_path / "telemetry.jsonl", interval_s=0.1).start()
        assert proc.stdout.readline().strip() == "ready"     # the child's 200 MiB are resident from here on
        # the parent alone holds a few MiB: only a sample that adds the child's memory gets past 200 MiB
        hit = wait_for(lambda: [s for s in list(sampler.samples)
                                if s.nprocs == 2 and s.rss_bytes is not None and s.rss_bytes > 200 * 2**20],
                       "sample of both processes summing over 200 MiB")
        samples = sampler.stop()
    finally:
        stop_tree(proc)
    assert hit[0] in samples
    assert read_samples(tmp_path / "telemetry.jsonl") == samples


def _cpu_s(procs: list[psutil.Process]) -> list[float]:
    out = []
    for p in procs:
        t = p.cpu_times()
        out.append(t.user + t.system)        # what psutil's cpu_percent counts
    return out


def test_cpu_percent_of_a_tree_is_its_cpu_time_over_wall_time_bracketed_around_the_samples():
    """Each process's CPU time and the clock are read just before and just after each of two samples; psutil
    reads them somewhere in between, so the tree's CPU % must lie in the interval those reads allow, on any
    machine and load. The window is retried until the busy child got CPU in it, so a reading of 0 (nothing
    measured) or of the idle parent alone falls below the interval."""
    proc = start(IDLE_PARENT_BUSY_CHILD)
    try:
        assert proc.stdout.readline().strip() == "ready"
        sampler = Sampler(proc.pid, None)                   # not started: the test takes each sample itself
        procs = [psutil.Process(proc.pid)] + psutil.Process(proc.pid).children(recursive=True)
        assert len(procs) == 2 and sampler.sample().nprocs == 2   # this first sample sets psutil's baselines

        def window():
            c_a, t_a = _cpu_s(procs), time.monotonic()
            sampler.sample()
            t_b, c_b = time.monotonic(), _cpu_s(procs)
            time.sleep(0.3)
            c_c, t_c = _cpu_s(procs), time.monotonic()
            s = sampler.sample()
            t_d, c_d = time.monotonic(), _cpu_s(procs)
            low = sum(c - b for c, b in zip(c_c, c_b)) / (t_d - t_a) * 100
            high = sum(d - a for d, a in zip(c_d, c_a)) / (t_c - t_b) * 100
            return (s, low, high) if low > 1.0 else None      # the child ran >= 1 % of the window

        s, low, high = wait_for(window, "window in which the busy child got CPU")
    finally:
        stop_tree(proc)
    rounding = 0.05 * 2 + 1e-6                                 # psutil rounds each process's % to 0.1
    assert s.nprocs == 2 and s.cpu_percent is not None
    assert low - rounding <= s.cpu_percent <= high + rounding, (low, s.cpu_percent, high)


def test_a_finished_tree_reads_as_unknown_not_zero():
    proc = start("pass")
    proc.wait()
    s = Sampler(proc.pid, None).sample()
    assert (s.rss_bytes, s.cpu_percent, s.nprocs) == (None, None, 0)


def test_without_a_gpu_every_gpu_field_is_none():
    """Absence handled: no NVML library here, or (on a GPU machine) an index no GPU has."""
    sampler = Sampler(os.getpid(), None, watch_gpus=True, gpus=[999])
    s = sampler.sample()
    sampler.stop()
    assert sampler.gpu is None and sampler.gpu_absent
    assert (s.gpu_mem_used_bytes, s.gpu_proc_mem_bytes, s.gpu_util_percent, s.gpu_power_w, s.gpu_energy_j) == (None,) * 5


def test_gpu_probe_says_why_it_is_unavailable():
    with pytest.raises(GpuUnavailable) as e:
        GpuProbe.open([999])
    assert str(e.value) and "\n" not in str(e.value)


@pytest.mark.gpu
def test_gpu_probe_reads_memory_power_and_names_on_a_real_gpu():
    try:
        probe = GpuProbe.open([0])
    except GpuUnavailable as e:
        pytest.skip(f"no GPU: {e}")
    try:
        reading = probe.read(pids=[])
        assert probe.names()[0]
        assert reading["gpu_mem_used_bytes"] > 0 and reading["gpu_util_percent"] is not None
        assert reading["gpu_energy_j"] is None or reading["gpu_energy_j"] >= 0
        assert reading["gpu_proc_mem_bytes"] is None   # no pid of ours on it
    finally:
        probe.close()
