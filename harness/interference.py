"""Is the machine busy with something else? The rule that marks a run disturbed, and the idle check before one.

Telemetry (harness/telemetry.py) records, for each sampling interval, the CPU time used on the whole machine by
processes outside the run's tree and outside the harness (``others_cpu_s``: system busy time from /proc/stat
minus the tree's and the harness's own CPU time), the load average and the CPU frequency; on CUDA also other
processes on the watched GPUs and NVML's throttle reasons.

The rule (documented in docs/statistics.md): a run is *disturbed* when the others used, on average over the
run, more than ``OTHERS_CORES_THRESHOLD`` (0.25) of a core, or when another process ran on its GPU, or the GPU
reported a thermal/power slowdown. A CPU-bound process on one core of a 2-core machine reads ~1.0 core; an idle
machine reads a few hundredths (kernel threads, the sampler's own reads of /proc are the harness's). Short-lived
tree processes that exit between two samples lose their last interval's CPU time to "others": the threshold
leaves room for that.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from harness.results import Interference
from harness.telemetry import MachineLoad, Sample, throttle_reason_names

OTHERS_CORES_THRESHOLD = 0.25        # mean cores' worth of CPU used by others over a run
IDLE_PROBE_S = 3.0                   # --require-idle: how long one look at the machine lasts
IDLE_WAIT_S = 300.0                  # --require-idle: how long to wait for the machine to become idle
BAD_GPU_REASONS = {"sw_thermal_slowdown", "hw_thermal_slowdown", "hw_slowdown", "hw_power_brake_slowdown"}


class BusyMachine(RuntimeError):
    """--require-idle: the machine stayed busy; the message says how busy and what to do."""


def judge(samples: list[Sample], threshold: float = OTHERS_CORES_THRESHOLD) -> Interference:
    """The run's interference record from its samples, with the disturbed flag and why."""
    spans = [(s.others_cpu_s, s.interval_s) for s in samples
             if s.others_cpu_s is not None and s.interval_s and s.interval_s > 0]
    out = Interference(threshold_cores=threshold)
    if spans:
        out.others_cpu_s = round(sum(o for o, _ in spans), 3)
        out.others_cores_mean = round(out.others_cpu_s / sum(i for _, i in spans), 4)
        out.others_cores_max = round(max(o / i for o, i in spans), 4)
    loads = [s.load1 for s in samples if s.load1 is not None]
    freqs = [s.cpu_freq_mhz for s in samples if s.cpu_freq_mhz is not None]
    others = [s.gpu_other_procs for s in samples if s.gpu_other_procs is not None]
    out.load1_max = max(loads) if loads else None
    out.cpu_freq_mhz_min, out.cpu_freq_mhz_max = (min(freqs), max(freqs)) if freqs else (None, None)
    out.gpu_other_procs = max(others) if others else None
    reasons: set[str] = set()
    for s in samples:
        reasons.update(throttle_reason_names(s.gpu_throttle_reasons))
    out.gpu_throttle_reasons = sorted(reasons - {"gpu_idle"})
    why = []
    if out.others_cores_mean is not None and out.others_cores_mean > threshold:
        why.append(f"other processes used {out.others_cores_mean:.2f} cores on average (threshold {threshold:g})")
    if out.gpu_other_procs:
        why.append(f"{out.gpu_other_procs} other process(es) on the GPU")
    bad = sorted(reasons & BAD_GPU_REASONS)
    if bad:
        why.append(f"GPU slowdown: {', '.join(bad)}")
    out.disturbed, out.why = bool(why), "; ".join(why) or None
    return out


@dataclass
class IdleCheck:
    others_cores: float | None
    idle: bool


def probe(seconds: float = IDLE_PROBE_S, threshold: float = OTHERS_CORES_THRESHOLD) -> IdleCheck:
    """How many cores' worth of CPU the rest of the machine uses over ``seconds`` (the harness excluded)."""
    load = MachineLoad()
    load.read(0.0)
    time.sleep(seconds)
    r = load.read(0.0)
    if r.get("others_cpu_s") is None or not r.get("interval_s"):
        return IdleCheck(None, True)          # not measurable here: nothing to wait for
    cores = r["others_cpu_s"] / r["interval_s"]
    return IdleCheck(cores, cores <= threshold)


def require_idle(max_wait_s: float = IDLE_WAIT_S, threshold: float = OTHERS_CORES_THRESHOLD,
                 say=print, probe_s: float = IDLE_PROBE_S) -> IdleCheck:
    """Wait (at most ``max_wait_s``) until the machine is idle; raise BusyMachine when it does not become so."""
    deadline = time.monotonic() + max_wait_s
    check = probe(probe_s, threshold)
    while not check.idle:
        if time.monotonic() >= deadline:
            raise BusyMachine(f"--require-idle: other processes still use {check.others_cores:.2f} cores after "
                              f"waiting {max_wait_s:g} s (threshold {threshold:g}); stop them or run without "
                              f"--require-idle (runs are then marked disturbed)")
        say(f"waiting for an idle machine: others use {check.others_cores:.2f} cores (threshold {threshold:g})")
        check = probe(probe_s, threshold)
    return check
