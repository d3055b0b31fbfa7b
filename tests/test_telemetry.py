"""Telemetry: host memory and CPU summed over a whole process tree, and GPU fields that are None (never 0)
where NVML or a GPU is absent."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from harness.telemetry import GpuProbe, GpuUnavailable, Sampler, read_samples

# A parent that starts a child holding 200 MB (every page touched), then both wait to be stopped.
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "b = bytearray(200 * 2**20)\\nfor i in range(0, len(b), 4096): b[i] = 1\\n"
                          "print('ready', flush=True)\\nimport time; time.sleep(60)"], stdout=sys.stdout)
time.sleep(60)
"""
BUSY = "import time\nt = time.time()\nwhile time.time() - t < 60: pass\n"


def start(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def test_sampler_sums_rss_over_a_childs_allocation(tmp_path):
    proc = start(PARENT)
    try:
        sampler = Sampler(proc.pid, tmp_path / "telemetry.jsonl", interval_s=0.1).start()
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        samples = sampler.stop()
    finally:
        for child in psutil.Process(proc.pid).children():
            child.kill()
        proc.kill()
        proc.wait()
    both = [s.rss_bytes for s in samples if s.rss_bytes is not None and s.nprocs == 2]
    assert max(both) > 200 * 2**20
    assert read_samples(tmp_path / "telemetry.jsonl") == samples


def test_cpu_percent_sees_a_busy_process():
    proc = start(BUSY)
    try:
        sampler = Sampler(proc.pid, None, interval_s=0.2).start()
        time.sleep(1.0)
        samples = sampler.stop()
    finally:
        proc.kill()
        proc.wait()
    assert max(s.cpu_percent or 0 for s in samples) > 30


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
