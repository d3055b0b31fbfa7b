"""`python -m benchmarks.profile_step`: where one training step's time and memory go, ours vs upstream, in one process.

Owns the per-kernel profile of docs/performance.md (``make profile``) and the d12-shaped memory figures
(``make profile-memory``). Nothing here is a campaign: no results store, no report; it prints Markdown tables.

Time (default): each side's model at the smoke shape (depth 4, seq 256, 8 rows, vocab 4096, full windows, fp32 CPU),
each ``torch.compile``d with its optimizer as its trainer runs it (ours: compiled Muon kernels; upstream: its own
compiled fused steps). After warm-up steps (compilation), rounds alternate the sides (ABAB.., the order flipped
every round) so a neighbour's load on a shared machine falls on all; each round times one unprofiled step per side
and profiles one more with torch.profiler. Reported: medians over rounds, per kernel family (self CPU time).

Memory (``--memory``): the d12 shape at B=1 (depth 12, seq 2048, vocab 32768, SSSL, fp32 CPU), each side in a fresh
subprocess that builds its model and optimizer and takes ``--memory-steps`` training steps (model eager, optimizer
as its trainer runs it). Two figures per run, the same way for both sides:
- allocator peak: the largest sum of live bytes allocated through torch's CPU allocator, from torch.profiler's
  memory events (``profile_memory=True``) recorded from before the model is built, so every live tensor counts;
- peak RSS: the kernel's ``VmHWM`` of that process (/proc/self/status), torch's libraries included.

Upstream is imported from a clean work tree at the pinned commit ($NANOCHAT_UPSTREAM or --upstream: a clone or a
mirror); its code is used in place and never copied here.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(REPO / ".cache" / "profile" / "inductor"))

import torch  # noqa: E402  (after the cache location is set)

from benchmarks.shapes import BenchShape  # noqa: E402
from benchmarks.sides import Ours, Upstream  # noqa: E402
from benchmarks.steps import token_batch  # noqa: E402

SMOKE = BenchShape(depth=4, seq_len=256, device_batch=8, vocab=4096, window_pattern="L", compile_optimizer=True)
D12 = BenchShape(depth=12, seq_len=2048, device_batch=1, vocab=32768, window_pattern="SSSL", compile_optimizer=True)
MATMULS = {"aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm"}
FAMILIES = (  # (family, phase or None for any, regex on the kernel name); the first match wins
    ("model matmuls (mm)", "model", None),
    ("Muon Polar Express matmuls", "optimizer", None),
    ("attention (SDPA fwd+bwd)", None, re.compile(r"scaled_dot_product|flash_attention")),
    ("softcap + cross-entropy", "model", re.compile(r"tanh|log_softmax|nll_loss|logsumexp|cross_entropy|softcap")),
    ("elementwise with cat (rotary, q/k/v)", "model", re.compile(r"cat")),
    ("other model elementwise", "model", re.compile(r".")),
    ("optimizer non-matmul", "optimizer", re.compile(r".")),
)
SKIP = re.compile(r"^(## |ProfilerStep|Torch-Compiled Region|CompiledFunction|autograd::engine|Optimizer\.step|"
                  r"step$|optimizer$|model$|\[memory\])")


class ProfileError(Exception):
    """Something the user can fix (no upstream source, a bad flag); printed as one line, exit 2."""


# ------------------------------------------------------------------------------------------------ sides
def upstream_side(shape: BenchShape, source: str | None, base_dir: Path):
    from upstream import source as upstream_source
    from upstream.pin import ENV_SOURCE, PINNED_COMMIT
    if source:
        os.environ[ENV_SOURCE] = source
    try:
        clone = upstream_source.find_for_tests(PINNED_COMMIT)
    except upstream_source.UpstreamError as e:
        raise ProfileError(str(e)) from None
    if clone is None:
        raise ProfileError(f"no upstream nanochat source: set {ENV_SOURCE} or pass --upstream (a clone or mirror)")
    return Upstream(shape, clone, base_dir)


SIDES = ("ours", "ours-parity", "upstream")


def make_side(name: str, shape: BenchShape, upstream: str | None, base_dir: Path):
    """ours = our default ("fast") kernels; ours-parity = our kernels in upstream's operation order; upstream."""
    if name == "upstream":
        return upstream_side(shape, upstream, base_dir)
    kernels = "parity" if name == "ours-parity" else "fast"
    return Ours(shape, kernels=kernels, free_grads=kernels == "fast")  # as models.train runs it


def make_step(side, shape: BenchShape, compile_model: bool):
    """The side's model, optimizer and a closure doing one training step (forward, backward, step, zero_grad)."""
    model = side.build_model()
    optimizer = side.optimizer(model)
    fwd = torch.compile(model, dynamic=False) if compile_model else model
    inputs, targets = token_batch(shape)

    def step():
        with torch.profiler.record_function("model"):
            loss = fwd(inputs, targets)
            loss.backward()
        with torch.profiler.record_function("optimizer"):
            optimizer.step()
        model.zero_grad(set_to_none=True)
        return loss.item()
    return step


# ----------------------------------------------------------------------------------------- time profile
def families(prof) -> dict[str, float]:
    """Self CPU ms per family for one profiled step; phase by the 'model'/'optimizer' ranges the step marks."""
    events = prof.events()
    ranges = {e.name: (e.time_range.start, e.time_range.end) for e in events if e.name in ("model", "optimizer")}
    out = {name: 0.0 for name, _, _ in FAMILIES}
    out["kernels"] = {}
    for e in events:
        if SKIP.search(e.name) or e.self_cpu_time_total <= 0:
            continue
        phase = next((p for p, (a, b) in ranges.items() if a <= e.time_range.start <= b), "other")
        ms = e.self_cpu_time_total / 1000
        for family, want, pattern in FAMILIES:
            if want not in (None, phase):
                continue
            if (pattern is None and e.name in MATMULS) or (pattern is not None and pattern.search(e.name)):
                out[family] += ms
                break
        key = f"{phase}: {e.name}"
        out["kernels"][key] = out["kernels"].get(key, 0.0) + ms
    return out


def profile_time(a) -> dict:
    shape = replace(SMOKE, threads=a.threads)
    shape.apply_threads()
    if not a.no_kernel_names:
        import torch._inductor.config as inductor_config
        inductor_config.cpp.enable_kernel_profile = True  # name each inductor kernel in the profile
    with tempfile.TemporaryDirectory() as base:
        sides = [make_side(n, shape, a.upstream, Path(base)) for n in a.sides]
        steps = {s.name: make_step(s, shape, not a.eager) for s in sides}
        for name, step in steps.items():
            t0 = time.perf_counter()
            for _ in range(a.warmup):
                step()
            print(f"{name}: {a.warmup} warm-up steps (compilation included) {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr)
        wall = {n: [] for n in steps}
        prof_rows = {n: [] for n in steps}
        for r in range(a.rounds):
            order = list(steps) if r % 2 == 0 else list(reversed(steps))
            for name in order:
                t0 = time.perf_counter()
                steps[name]()
                wall[name].append((time.perf_counter() - t0) * 1000)
                with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                    steps[name]()
                prof_rows[name].append(families(prof))
    return {"shape": shape.describe(), "threads": torch.get_num_threads(), "rounds": a.rounds,
            "wall_ms": wall, "families": {n: median_families(rows) for n, rows in prof_rows.items()}}


def median_families(rows: list[dict]) -> dict:
    names = [f for f, _, _ in FAMILIES]
    out = {f: statistics.median(r[f] for r in rows) for f in names}
    out["profiled total"] = statistics.median(sum(r[f] for f in names) for r in rows)
    kernels = {k for r in rows for k in r["kernels"]}
    out["kernels"] = {k: statistics.median(r["kernels"].get(k, 0.0) for r in rows) for k in kernels}
    return out


def time_table(res: dict, top: int) -> str:
    sides = list(res["wall_ms"])
    lines = [f"shape: {res['shape']}; torch threads {res['threads']}; medians of {res['rounds']} alternating rounds",
             "", "| per step (ms) | " + " | ".join(sides) + " |", "|---|" + "---|" * len(sides)]
    lines.append("| wall, unprofiled | " + " | ".join(f"{statistics.median(res['wall_ms'][s]):.1f}" for s in sides) + " |")
    for family in [f for f, _, _ in FAMILIES] + ["profiled total"]:
        lines.append(f"| {family} | " + " | ".join(f"{res['families'][s][family]:.1f}" for s in sides) + " |")
    for s in sides:
        kernels = sorted(res["families"][s]["kernels"].items(), key=lambda kv: -kv[1])[:top]
        lines += ["", f"{s}: top {top} kernels by median self time (ms)"]
        lines += [f"  {ms:7.2f}  {k[:110]}" for k, ms in kernels]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- memory
def vm_hwm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise ProfileError("no VmHWM in /proc/self/status: the memory figures need Linux")


def allocator_peak(prof) -> tuple[int, int, dict]:
    """(peak, final, phases) of the running sum of torch.profiler's CPU memory events (bytes), in time order.

    ``phases``: for the last step's "model" (forward + backward) and "optimizer" ranges, the live bytes on entry
    and the peak inside, which says where a peak comes from.
    """
    raw = prof.profiler.kineto_results.events()  # every allocation and free, also those inside an op
    deltas = sorted(((e.start_ns(), e.nbytes()) for e in raw if e.name() == "[memory]" and e.device_type().name == "CPU"),
                    key=lambda d: d[0])  # stable: same-time records keep the order they were made in
    ranges = {}
    for e in raw:
        if e.name() in ("model", "optimizer"):  # the last step's range of each wins
            ranges[e.name()] = (e.start_ns(), e.start_ns() + e.duration_ns())
    phases = {name: {"entry": None, "peak": 0} for name in ranges}
    live = peak = 0
    for t, d in deltas:
        for name, (a, b) in ranges.items():
            if phases[name]["entry"] is None and t >= a:
                phases[name]["entry"] = live
            if a <= t <= b:
                phases[name]["peak"] = max(phases[name]["peak"], live + d)
        live += d
        peak = max(peak, live)
    return peak, live, phases


def memory_arm(a) -> dict:
    """One side's d12 step in this (fresh) process: allocator peak over the whole run and VmHWM."""
    shape = replace(D12, threads=a.threads)
    shape.apply_threads()
    with tempfile.TemporaryDirectory() as base:
        side = make_side(a.memory_arm, shape, a.upstream, Path(base))
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
            step = make_step(side, shape, False)
            times = []
            for _ in range(a.memory_steps):
                t0 = time.perf_counter()
                step()
                times.append(time.perf_counter() - t0)
    peak, final, phases = allocator_peak(prof)
    return {"side": a.memory_arm, "allocator_peak": peak, "live_after": final, "vm_hwm": vm_hwm_bytes(),
            "phases": phases, "step_s": times}


def profile_memory(a) -> dict:
    runs = []
    arms = list(a.sides)
    for r in range(a.memory_repeats):
        for arm in (arms if r % 2 == 0 else list(reversed(arms))):
            cmd = [sys.executable, "-m", "benchmarks.profile_step", "--memory-arm", arm,
                   "--memory-steps", str(a.memory_steps), "--threads", str(a.threads)]
            cmd += ["--upstream", a.upstream] if a.upstream else []
            done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"memory run of {arm} failed: {done.stderr.strip().splitlines()[-1:]}")
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"{arm}: {runs[-1]}", file=sys.stderr)
    return {"shape": replace(D12, threads=a.threads).describe(), "runs": runs}


def memory_table(res: dict) -> str:
    mib, gib = 2**20, 2**30
    by = {}
    for run in res["runs"]:
        by.setdefault(run["side"], []).append(run)
    ratios = [s for s in by if s != "upstream"] if "upstream" in by else []
    lines = [f"shape: {res['shape']}; each run a fresh process, model eager, optimizer as its trainer runs it",
             "", "| d12 step, B=1 | " + " | ".join(by) + "".join(f" | {s} / upstream" for s in ratios) + " |",
             "|---|" + "---|" * (len(by) + len(ratios))]
    for label, key, unit, fmt in (("allocator peak (MiB)", "allocator_peak", mib, "{:,.0f}"),
                                  ("peak RSS, VmHWM (GiB)", "vm_hwm", gib, "{:.2f}")):
        cells = [" / ".join(fmt.format(r[key] / unit) for r in runs) for runs in by.values()]
        med = {s: statistics.median(r[key] for r in runs) for s, runs in by.items()}
        cells += [f"{med[s] / med['upstream']:.3f}" for s in ratios]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile_step", description=__doc__.split("\n\n")[0],
                                epilog="example: NANOCHAT_UPSTREAM=~/nanochat python -m benchmarks.profile_step --rounds 7")
    p.add_argument("--upstream", default=None, help="upstream nanochat clone or mirror (default $NANOCHAT_UPSTREAM)")
    p.add_argument("--rounds", type=int, default=7, help="alternating rounds; each times and profiles one step per side")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per side first (compilation)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--top", type=int, default=12, help="kernels listed per side")
    p.add_argument("--eager", action="store_true", help="do not torch.compile the models")
    p.add_argument("--sides", default="ours,upstream",
                   help=f"comma-separated, from {', '.join(SIDES)} (ours-parity: our kernels in upstream's order)")
    p.add_argument("--no-kernel-names", action="store_true", help="leave inductor's kernel profiling off")
    p.add_argument("--json", default="", help="also write the raw figures to this JSON file")
    p.add_argument("--memory", action="store_true", help="d12-shaped memory figures instead of the time profile")
    p.add_argument("--memory-repeats", type=int, default=2, help="fresh-process runs per side (alternating)")
    p.add_argument("--memory-steps", type=int, default=2, help="training steps per memory run (the 1st makes state)")
    p.add_argument("--memory-arm", choices=SIDES, help=argparse.SUPPRESS)  # one memory run (internal)
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    a.sides = [n.strip() for n in a.sides.split(",") if n.strip()]
    bad = [n for n in a.sides if n not in SIDES] or ([] if a.sides else ["(none)"])
    if bad or len(set(a.sides)) != len(a.sides):
        print(f"error: --sides {','.join(a.sides)}: name each of {', '.join(SIDES)} at most once", file=sys.stderr)
        return 2
    for name in ("rounds", "memory_repeats", "memory_steps"):
        if getattr(a, name) < 1:
            print(f"error: --{name.replace('_', '-')}={getattr(a, name)}: must be at least 1", file=sys.stderr)
            return 2
    if a.warmup < 0 or a.threads < 0:
        print("error: --warmup and --threads must be >= 0", file=sys.stderr)
        return 2
    try:
        if a.memory_arm:
            print(json.dumps(memory_arm(a)))
            return 0
        res = profile_memory(a) if a.memory else profile_time(a)
    except ProfileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(memory_table(res) if a.memory else time_table(res, a.top))
    if a.json:
        tmp = Path(a.json + ".tmp")
        tmp.write_text(json.dumps(res, indent=1))
        tmp.replace(a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
