"""Per-run summary: the figures a report shows for one run, computed by the harness from the arm's events and
the harness's own telemetry, the same way for every arm.

Throughput is the steady-state steps' tokens over the time they took (their mean step time): the first
``steady_state_skip`` steps (compilation, warm-up) and any step with an eval at its index are left out; the same
steps give the step-time distribution (median, IQR and p90 in ms/step, nanochat's own ``dt``) and the steady-state
training time. (The median step was the throughput figure before lock-step rounds: with the CPU swapped every 2
steps, half the steps hold a resume and the median sits between the two halves; on the same 3 idle pairs the
median's paired CI half-width was 3.5 %, the mean's 1.3 %.) Training time is the sum of all step
times (evals excluded); time to first step (process start to step 0 done: start-up and compilation) is apart.
Memory: the tree's sampled RSS curve (its peak is luck), and the kernel's high-water marks of the trainer and of
the helper processes, read from /proc (exact up to the last sample before a process exits). MFU is
against a peak FLOP/s that is known, never guessed: a table of GPU bf16 dense peaks by device name, or on CPU an
fp32 matmul peak measured once per campaign. Anything not measurable is None.
"""
from __future__ import annotations

import math
import re
import statistics
import time
from dataclasses import dataclass

from harness.budget import Budget
from protocol.events import EvalEvent, Event, FinalEvent, StepEvent
from harness.results import EvalMemory, Summary
from harness.telemetry import Sample

# Dense bf16 tensor-core peaks per GPU (vendor datasheets, without sparsity). First match wins: specific names first.
GPU_PEAK_BF16 = [
    (r"H100.*PCIe", 756.0e12),
    (r"H100.*NVL", 835.0e12),
    (r"GH200", 989.4e12),
    (r"H100", 989.4e12),          # SXM ("NVIDIA H100 80GB HBM3")
    (r"H200", 989.4e12),
    (r"B200", 2250.0e12),
    (r"A100", 312.0e12),
    (r"L40S", 362.0e12),
    (r"\bL4\b", 121.0e12),
    (r"\bA10\b", 125.0e12),
]
MEMORY_GROWTH_MIN_FRACTION = 0.05      # a rise of at least 5 % ...
MEMORY_GROWTH_MIN_BYTES = 32 * 2**20   # ... and 32 MiB from the first to the last post-step-0 eval


@dataclass
class PeakFlops:
    """The FLOP/s an MFU figure is relative to, and where that number came from."""
    flops_per_s: float
    basis: str


def gpu_peak(names: list[str]) -> PeakFlops | None:
    """Summed table peak of the GPUs a run used; None when any of them is not in the table."""
    peaks = [_table_peak(n) for n in names]
    if not names or any(p is None for p in peaks):
        return None
    return PeakFlops(sum(peaks), f"{names[0]}: {peaks[0] / 1e12:.1f} TFLOP/s bf16 dense (datasheet) x {len(names)} GPU")


def _table_peak(name: str) -> float | None:
    return next((peak for pattern, peak in GPU_PEAK_BF16 if re.search(pattern, name)), None)


def measure_cpu_matmul_peak(seconds: float = 1.0, n: int = 1024) -> PeakFlops:
    """Best fp32 matmul FLOP/s of this process's torch threads over about ``seconds`` of n x n products."""
    import torch
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up: thread pool start, first-touch of the output
    best, deadline = math.inf, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    flops = 2 * n**3 / best
    return PeakFlops(flops, f"CPU fp32 matmul peak measured: {flops / 1e9:.0f} GFLOP/s "
                            f"({n}x{n}, {torch.get_num_threads()} threads, best of {seconds:g} s)")


def estimate_flops_per_token(budget: Budget, param_counts: dict[str, int]) -> float | None:
    """Upstream's estimate when the arm did not report one: 6 x Linear weights + attention over each layer's window."""
    if "transformer_matrices" not in param_counts or "lm_head" not in param_counts:
        return None
    dim = math.ceil(budget.depth * budget.aspect_ratio / budget.head_dim) * budget.head_dim
    heads, seq = dim // budget.head_dim, budget.max_seq_len
    short = 128 * math.ceil(seq / 512)
    pattern = budget.window_pattern.upper()
    windows = [seq if pattern[i % len(pattern)] == "L" else short for i in range(budget.depth)]
    windows[-1] = seq                                   # the last layer always sees the full context
    linear = param_counts["transformer_matrices"] + param_counts["lm_head"] + 24   # + the 1x24 smear gate
    return 6 * linear + sum(12 * heads * budget.head_dim * min(w, seq) for w in windows)


def steady_steps(events: list[Event], skip: int) -> list[StepEvent]:
    evals = {e.step for e in events if isinstance(e, EvalEvent)}
    return [e for e in events if isinstance(e, StepEvent) and e.step >= skip and e.step not in evals
            and e.dt_s is not None and e.dt_s > 0]


def memory_grows(memory: list[EvalMemory]) -> bool | None:
    """True when memory rose at every eval after the first and by a clear margin overall; None with < 3 such evals."""
    points = memory[1:]   # the step-0 eval comes before training has allocated its steady state
    use_gpu = bool(points) and all(m.gpu_bytes is not None for m in points)
    series = [m.gpu_bytes if use_gpu else m.rss_bytes for m in points]
    if len(series) < 3 or any(v is None for v in series):
        return None
    rising = all(b > a for a, b in zip(series, series[1:]))
    rise = series[-1] - series[0]
    return rising and rise > max(MEMORY_GROWTH_MIN_FRACTION * series[0], MEMORY_GROWTH_MIN_BYTES)


def summarize(budget: Budget, events: list[Event], samples: list[Sample], *, wall_time_s: float | None = None,
              eval_memory: list[EvalMemory] | None = None, peak: PeakFlops | None = None,
              first_step_s: float | None = None, trainer_hwm_bytes: int | None = None,
              helper_hwm_bytes: int | None = None) -> Summary:
    steps = [e for e in events if isinstance(e, StepEvent)]
    evals = [e for e in events if isinstance(e, EvalEvent) and e.val_bpb is not None]
    final = next((e for e in reversed(events) if isinstance(e, FinalEvent)), None)
    s = Summary(steady_state_skip=budget.steady_state_skip, wall_time_s=wall_time_s,
                eval_memory=list(eval_memory or []))
    s.steps = final.steps if final else (len(steps) or None)
    s.tokens = final.tokens if final else (len(steps) * budget.total_batch_size or None)
    _throughput(s, steps, events, budget)
    _quality(s, evals, final)
    _memory(s, samples, final)
    s.time_to_first_step_s = first_step_s
    s.trainer_hwm_bytes, s.helper_hwm_bytes = trainer_hwm_bytes, helper_hwm_bytes
    _energy(s, samples)
    _mfu(s, budget, final, peak)
    return s


def _throughput(s: Summary, steps: list[StepEvent], events: list[Event], budget: Budget) -> None:
    if steps:
        s.train_time_s = sum(e.dt_s for e in steps if e.dt_s is not None)
    steady = steady_steps(events, budget.steady_state_skip)
    if steady:
        dt = statistics.fmean(e.dt_s for e in steady)   # tokens over the time they took (docs/measurement.md)
        s.steps_per_s = 1.0 / dt
        s.tokens_per_s = budget.total_batch_size / dt
        s.steady_train_time_s = sum(e.dt_s for e in steady)
        s.step_ms_median, s.step_ms_iqr, s.step_ms_p90 = step_distribution_ms([e.dt_s for e in steady])


def step_distribution_ms(dts: list[float]) -> tuple[float | None, float | None, float | None]:
    """(median, interquartile range, 90th percentile) of step times in ms; IQR and p90 need 2+ steps."""
    ms = sorted(1000.0 * d for d in dts)
    if not ms:
        return None, None, None
    if len(ms) == 1:
        return ms[0], None, None
    q = statistics.quantiles(ms, n=20, method="inclusive")   # 5 % steps: q[4] = p25, q[14] = p75, q[17] = p90
    return statistics.median(ms), q[14] - q[4], q[17]


def _quality(s: Summary, evals: list[EvalEvent], final: FinalEvent | None) -> None:
    if evals:
        s.final_val_bpb = evals[-1].val_bpb
        s.min_val_bpb = min(e.val_bpb for e in evals)
    elif final and final.min_val_bpb is not None:
        s.min_val_bpb = final.min_val_bpb
    if final and final.param_counts:
        s.param_counts = dict(final.param_counts)


def _memory(s: Summary, samples: list[Sample], final: FinalEvent | None) -> None:
    s.peak_rss_bytes = _max(x.rss_bytes for x in samples)
    s.peak_gpu_mem_bytes = _max(x.gpu_proc_mem_bytes for x in samples) or _max(x.gpu_mem_used_bytes for x in samples)
    s.torch_peak_mem_bytes = final.peak_mem_bytes if final else None
    s.memory_grows = memory_grows(s.eval_memory)


def _energy(s: Summary, samples: list[Sample]) -> None:
    s.energy_j = _max(x.gpu_energy_j for x in samples)
    if s.energy_j is not None and s.tokens:
        s.energy_per_token_j = s.energy_j / s.tokens


def _mfu(s: Summary, budget: Budget, final: FinalEvent | None, peak: PeakFlops | None) -> None:
    reported = (final.extra or {}).get("flops_per_token") if final else None
    s.flops_per_token = reported if reported else estimate_flops_per_token(budget, s.param_counts)
    if peak and s.flops_per_token and s.tokens_per_s:
        s.mfu_percent = 100.0 * s.flops_per_token * s.tokens_per_s / peak.flops_per_s
        s.mfu_basis = peak.basis


def _max(values):
    present = [v for v in values if v is not None]
    return max(present) if present else None
