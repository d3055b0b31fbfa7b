"""`nanochat-bench benchmark` — what `make benchmark GPU=N` runs: pick the preset this machine can run, run the
campaign, render its report, and say where everything is.

With CUDA: the d12 preset on device N. Without: the CPU smoke preset (and --gpu is ignored when it is the default 0).
Unlike `run`, the compile cache defaults to the harness cache (<cache>/compile, one Inductor folder per torch
version and ATen CPU path), so a machine's second benchmark does not compile again; the warm-up runs still make
every measured repeat start from the same warm cache.
A forced GPU preset on a machine without CUDA, or a device index that does not exist, is a one-line error.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands.base import Verb
from harness.commands.options import (add_run_options, budget_from_args, check_devices, cuda_device_count,
                                      parse_gpus, resume_from_args, setup_from_args)
from harness.commands.outcome import check_history_beside, report_outcome

GPU_PRESET, CPU_PRESET = "d12", "smoke"
EXAMPLE = "nanochat-bench benchmark --gpu 0        # d12 on CUDA device 0, or the smoke preset without CUDA"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_options(p)
    p.set_defaults(gpu="0")


def choose_preset(forced: str | None, gpu_arg: str | None, cuda_count: int) -> tuple[str, str]:
    """(preset, why) for this machine."""
    if forced:
        return forced, f"preset {forced} as asked"
    if cuda_count:
        return GPU_PRESET, f"{cuda_count} CUDA device(s) found: running the {GPU_PRESET} preset on --gpu {gpu_arg}"
    return CPU_PRESET, f"no CUDA device: running the CPU {CPU_PRESET} preset"


def handle(args: argparse.Namespace) -> int:
    if args.resume:             # the campaign's own preset and arms; then its report, rendered again
        if args.gpu == "0":
            args.gpu = None     # the default, not a choice: the campaign's recorded devices are used
        cdir, campaign = resume_from_args(args)
        code = report_outcome(cdir, campaign)
        render_report(cdir)
        return code
    count = cuda_device_count()
    if args.budget_toml:
        preset, why = Path(args.budget_toml).stem, f"budget {args.budget_toml} as asked"
    else:
        args.preset, why = choose_preset(args.preset, args.gpu, count)
    budget, preset = budget_from_args(args)
    gpus = parse_gpus(args.gpu)
    if gpus == [0] and (budget.device != "cuda" or budget.nproc_per_node > 1):
        gpus = None     # the default --gpu 0 (make benchmark GPU=0): nothing on CPU, "the first GPUs" for several
    gpus = check_devices(budget, gpus, count)
    check_history_beside(Path(args.out).expanduser())
    if not args.compile_cache:      # compile each arm's graphs once per machine, not once per campaign
        from upstream.source import cache_root
        args.compile_cache = str(cache_root(args.upstream_cache) / "compile")
    print(why)
    from harness import campaign as camp
    cdir, campaign = camp.start(setup_from_args(args, budget, preset, gpus))
    code = report_outcome(cdir, campaign)
    render_report(cdir)
    return code


def render_report(cdir: Path) -> None:
    """Render the campaign's report and print where it is."""
    from harness.report.render import write_report
    files = write_report(cdir)
    print(f"report: {files.html}")
    print(f"report (Markdown): {files.markdown}")


VERB = Verb(add_arguments=add_arguments, handler=handle, example=EXAMPLE,
            description="Run the benchmark campaign this machine suits (d12 with CUDA, smoke without), then "
                        "render its report.")
