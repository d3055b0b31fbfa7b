"""Per-run summary: steady-state medians, train time, quality, memory, energy and MFU from events + telemetry."""
from __future__ import annotations

import pytest

from harness.budget import load_preset
from protocol.events import EvalEvent, FinalEvent, StepEvent
from harness.results import EvalMemory
from harness.summarize import (PeakFlops, estimate_flops_per_token, gpu_peak, measure_cpu_matmul_peak, memory_grows,
                               summarize)
from harness.telemetry import Sample

TINY = load_preset("tiny")   # total batch 256 tokens, 10 steps, skip 2, evals at 0, 5, 10
MiB = 2**20


def step(i: int, dt: float) -> StepEvent:
    return StepEvent(step=i, loss=5.0 - 0.1 * i, lrm=1.0, dt_s=dt, tokens_per_s=256 / dt)


def run_events(dts: list[float]) -> list:
    events = [EvalEvent(step=0, val_bpb=3.0)]
    for i, dt in enumerate(dts):
        if i == 5:
            events.append(EvalEvent(step=5, val_bpb=2.0))
        events.append(step(i, dt))
    events += [EvalEvent(step=10, val_bpb=2.5),
               FinalEvent(steps=10, tokens=2560, train_time_s=sum(dts), peak_mem_bytes=123,
                          param_counts={"total": 1000}, extra={"flops_per_token": 6000.0})]
    return events


def test_throughput_leaves_out_warmup_steps_and_steps_with_an_eval():
    # steps 0-1 compile (slow), step 5 has an eval at its index (slow); the steady steps alternate 0.1 / 0.3 s:
    # four of 0.1 s and three of 0.3 s, so the tokens over their time are 7 x 256 / 1.3 s
    dts = [30.0, 9.0, 0.1, 0.3, 0.1, 9.0, 0.3, 0.1, 0.3, 0.1]
    s = summarize(TINY, run_events(dts), [])
    assert s.steady_state_skip == 2
    assert s.steps_per_s == pytest.approx(7 / 1.3) and s.tokens_per_s == pytest.approx(7 * 256 / 1.3)
    assert s.step_ms_median == pytest.approx(100.0)
    assert s.train_time_s == pytest.approx(sum(dts))


def test_quality_and_counts_come_from_the_events():
    s = summarize(TINY, run_events([0.1] * 10), [])
    assert (s.final_val_bpb, s.min_val_bpb, s.steps, s.tokens) == (2.5, 2.0, 10, 2560)
    assert s.param_counts == {"total": 1000} and s.torch_peak_mem_bytes == 123


def test_peaks_come_from_telemetry_and_per_process_gpu_memory_wins():
    samples = [Sample(t_s=0, rss_bytes=100, cpu_percent=50, nprocs=1, gpu_mem_used_bytes=900, gpu_proc_mem_bytes=400),
               Sample(t_s=1, rss_bytes=300, cpu_percent=90, nprocs=2, gpu_mem_used_bytes=950, gpu_proc_mem_bytes=500),
               Sample(t_s=2, rss_bytes=None, cpu_percent=None, nprocs=0)]
    s = summarize(TINY, run_events([0.1] * 10), samples)
    assert (s.peak_rss_bytes, s.peak_gpu_mem_bytes) == (300, 500)


def test_energy_is_the_counter_delta_and_none_without_a_counter():
    with_counter = [Sample(t_s=t, rss_bytes=1, cpu_percent=1, nprocs=1, gpu_energy_j=e) for t, e in ((0, 0.0), (1, 51.2))]
    s = summarize(TINY, run_events([0.1] * 10), with_counter)
    assert s.energy_j == 51.2 and s.energy_per_token_j == pytest.approx(51.2 / 2560)
    s = summarize(TINY, run_events([0.1] * 10), [Sample(t_s=0, rss_bytes=1, cpu_percent=1, nprocs=1)])
    assert s.energy_j is None and s.energy_per_token_j is None


def test_mfu_uses_the_reported_flops_against_a_known_peak_and_is_none_without_one():
    peak = PeakFlops(flops_per_s=2560 * 6000 * 4.0, basis="test peak")
    s = summarize(TINY, run_events([0.1] * 10), [], peak=peak)
    assert s.mfu_percent == pytest.approx(100 * 6000 * 2560 / (2560 * 6000 * 4.0)) and s.mfu_basis == "test peak"
    assert summarize(TINY, run_events([0.1] * 10), [], peak=None).mfu_percent is None


def test_gpu_peak_table_knows_h100_variants_and_refuses_to_guess():
    assert gpu_peak(["NVIDIA H100 80GB HBM3"]).flops_per_s == pytest.approx(989.4e12)
    assert gpu_peak(["NVIDIA H100 PCIe"]).flops_per_s == pytest.approx(756e12)
    assert gpu_peak(["NVIDIA H200"] * 8).flops_per_s == pytest.approx(8 * 989.4e12)
    assert gpu_peak(["NVIDIA A100-SXM4-80GB"]).flops_per_s == pytest.approx(312e12)
    assert gpu_peak(["NVIDIA A10G"]) is None and gpu_peak(["Mystery GPU"]) is None and gpu_peak([]) is None


def test_flops_estimate_matches_upstreams_reference_values():
    d4 = load_preset("smoke")  # depth 4, V4096, T256, window L
    counts = {"transformer_matrices": 3_145_776, "lm_head": 1_048_576}
    assert estimate_flops_per_token(d4, counts) == 28_311_984
    d12 = load_preset("d12")   # depth 12, V32768, T2048, SSSL
    assert estimate_flops_per_token(d12, {"transformer_matrices": 84_935_088, "lm_head": 25_165_824}) == 759_696_048
    assert estimate_flops_per_token(d4, {"total": 1}) is None


def test_memory_that_rises_at_every_eval_is_flagged():
    def mem(*rss):
        return [EvalMemory(step=i, rss_bytes=r * MiB) for i, r in enumerate(rss)]
    assert memory_grows(mem(100, 500, 600, 700)) is True     # step 0 excluded; +200 MiB over three evals
    assert memory_grows(mem(100, 500, 501, 500)) is False    # flat: allocator noise
    assert memory_grows(mem(100, 500, 510, 520)) is False    # rising but by less than the margin
    assert memory_grows(mem(100, 500, 600)) is None          # too few evals to say
    gpu = [EvalMemory(step=i, rss_bytes=1, gpu_bytes=g * MiB) for i, g in enumerate((0, 1000, 1100, 1200))]
    assert memory_grows(gpu) is True                         # GPU memory is used when every eval has it


def test_cpu_matmul_peak_is_measured_and_says_how():
    peak = measure_cpu_matmul_peak(seconds=0.2, n=256)
    assert peak.flops_per_s > 1e8 and "threads" in peak.basis and "256x256" in peak.basis
