"""The plain-text summary of a GPU check's campaign: per run and per arm, the figures a reader needs to judge it
(steps/s, tokens/s, MFU, step 0 with its compilation, torch peak allocated/reserved, NVML device and process memory,
power, energy, SM clock, throttle reasons, attention and dtype), and the step time that re-sizes the d12 preset."""
from __future__ import annotations

import statistics
from pathlib import Path

from protocol.events import EvalEvent, FinalEvent, StepEvent, read_events
from harness.results import Campaign, RunResult
from harness.telemetry import read_samples, throttle_reason_names

MIB = 2**20


def summary_text(cdir: str | Path, deadline_hit: bool = False) -> str:
    cdir = Path(cdir)
    campaign = Campaign.load(cdir)
    results = campaign.results(cdir)
    lines = [f"gpu-check campaign {campaign.campaign_id} (preset {campaign.preset})",
             f"machine: {', '.join(campaign.machine.get('gpus') or ['no GPU named'])}; "
             f"peak basis: {campaign.machine.get('peak_flops_basis') or 'unknown'}"]
    if results:
        p = results[0].provenance
        lines.append(f"software: python {p.python}, torch {p.torch} (CUDA {p.cuda}), driver {p.driver}, "
                     f"upstream {(p.upstream_sha or '?')[:10]}, ours {(p.ours_sha or '?')[:10]}")
    done = sum(r.status == "ok" for r in results)
    lines.append(f"runs: {done} ok of {len(campaign.runs)} planned" + (" (stopped at the deadline)" if deadline_hit else ""))
    lines.append("")
    for r in results:
        lines += run_lines(cdir, r)
    lines += arm_lines(results)
    lines += [f"note: {n}" for n in campaign.notes]
    return "\n".join(lines) + "\n"


def run_lines(cdir: Path, r: RunResult) -> list[str]:
    s = r.summary
    head = f"{r.run_id}: {r.status}"
    if not r.ok:
        return [head + f" - {r.error or '?'}", ""]
    events = read_events(cdir / r.events_path) if r.events_path and (cdir / r.events_path).is_file() else []
    steps = [e for e in events if isinstance(e, StepEvent)]
    evals = [e for e in events if isinstance(e, EvalEvent)]
    final = next((e for e in events if isinstance(e, FinalEvent)), None)
    extra = (final.extra or {}) if final else {}
    tele = read_samples(cdir / r.telemetry_path) if r.telemetry_path else []
    skip = s.steady_state_skip or 0
    steady = [e.dt_s for e in steps[skip:]]
    reasons = 0
    for t in tele:
        reasons |= t.gpu_throttle_reasons or 0
    clocks = [t.gpu_sm_clock_mhz for t in tele if t.gpu_sm_clock_mhz]
    return [
        head + f", wall {_f(s.wall_time_s, '.0f')} s, step 0 {_f(steps[0].dt_s if steps else None, '.1f')} s "
               f"(compilation), {len(evals)} evals {_f(_sum(e.dt_s for e in evals), '.1f')} s",
        f"  steady steps ({len(steady)} after {skip}): median {_f(_median(steady), '.3f')} s/step, "
        f"{_f(s.steps_per_s, '.3f')} steps/s, {_f(s.tokens_per_s, ',.0f')} tokens/s, MFU {_f(s.mfu_percent, '.1f')} %",
        f"  torch peak allocated {_mib(s.torch_peak_mem_bytes)}, reserved {_mib(extra.get('peak_reserved_bytes'))}; "
        f"NVML device {_mib(s.peak_gpu_mem_bytes)}, process {_mib(_max(t.gpu_proc_mem_bytes for t in tele))}",
        f"  power max {_f(_max(t.gpu_power_w for t in tele), '.0f')} W, energy {_f(s.energy_j, ',.0f')} J, "
        f"SM clock {f'{min(clocks):.0f}-{max(clocks):.0f} MHz' if clocks else 'n/a'}, "
        f"throttle reasons seen: {', '.join(throttle_reason_names(reasons)) or 'none'}",
        f"  dtype {extra.get('dtype') or extra.get('compute_dtype') or '?'}, attention {extra.get('attention') or '?'}, "
        f"final val bpb {_f(s.final_val_bpb, '.4f')}, audit: {'; '.join(r.audit) or 'clean'}",
        ""]


def arm_lines(results: list[RunResult]) -> list[str]:
    """Per arm: median steady step time and tokens/s over its ok runs, and what a d12 step (2^19 tokens) would take."""
    lines = []
    for arm in sorted({r.implementation for r in results}):
        ok = [r for r in results if r.implementation == arm and r.ok and r.summary.steps_per_s]
        if not ok:
            lines.append(f"{arm}: no ok run")
            continue
        step_s = statistics.median(1 / r.summary.steps_per_s for r in ok)
        tok_s = statistics.median(r.summary.tokens_per_s for r in ok)
        batch = ok[0].budget["total_batch_size"]
        lines.append(f"{arm}: {len(ok)} ok runs, median {step_s:.3f} s/step ({batch:,} tokens), {tok_s:,.0f} tokens/s"
                     f" -> a d12 step of 524,288 tokens ~{step_s * 524288 / batch:.2f} s")
    return lines


def _median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _sum(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) if xs else None


def _max(xs):
    xs = [x for x in xs if x is not None]
    return max(xs) if xs else None


def _f(x, fmt: str) -> str:
    return "n/a" if x is None else format(x, fmt)


def _mib(b) -> str:
    return "n/a" if b is None else f"{b / MIB:,.0f} MiB"

