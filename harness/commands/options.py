"""Options shared by the verbs that start campaigns (run, benchmark, nightly, parity) and their parsing: a preset
or budget file plus overrides into a Budget, --gpu into device indices checked against this machine, and the whole
set into a CampaignSetup. Each verb takes the same option with the same meaning.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands.base import UsageError

DEFAULT_IMPLS = "ours,upstream"
# what a campaign recorded when it started: given with --resume they would be silently ignored, so they are refused
FIXED_ON_RESUME = (("--preset", "preset"), ("--budget-toml", "budget_toml"), ("--set", "overrides"),
                   ("--repeats", "repeats"), ("--seeds", "seeds"), ("--timeout", "timeout"),
                   ("--nproc-per-node", "nproc_per_node"), ("--nnodes", "nnodes"), ("--impl", "impl"),
                   ("--command", "command_template"), ("--command-name", "command_name"),
                   ("--campaign-id", "campaign_id"), ("--upstream-ref", "upstream_ref"))

# ---------------------------------------------------------------- options

def add_budget_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("budget")
    g.add_argument("--preset", help="named budget: tiny, smoke, d12, d20, d26 (harness/presets/)")
    g.add_argument("--budget-toml", metavar="FILE", help="a budget TOML file instead of a preset")
    g.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one budget field, TOML syntax for the value (e.g. --set seeds=[1,2])")
    g.add_argument("--repeats", type=int, help="runs per arm and seed")
    g.add_argument("--seeds", help="comma list of seeds for our arm (upstream's is fixed at 42)")
    g.add_argument("--timeout", type=float, metavar="SECONDS", help="per-run timeout")
    g.add_argument("--nproc-per-node", type=int, help="processes per node (torchrun when > 1)")
    g.add_argument("--nnodes", type=int, help="nodes (needs --rdzv-endpoint when > 1)")


def add_run_options(p: argparse.ArgumentParser) -> None:
    add_budget_options(p)
    g = p.add_argument_group("arms")
    g.add_argument("--impl", help="comma list of ours, upstream, command (default ours,upstream)")
    g.add_argument("--command", dest="command_template", metavar="TEMPLATE",
                   help="external trainer for --impl command, e.g. 'python my_trainer.py' (docs/protocol.md)")
    g.add_argument("--command-name", default=None, help="short name of that trainer in results (command:<name>)")
    g.add_argument("--upstream", metavar="URL|PATH", help="upstream nanochat source (default $NANOCHAT_UPSTREAM, "
                                                       "else github.com/karpathy/nanochat)")
    g.add_argument("--upstream-ref", metavar="REF", help="branch, tag or SHA (default: the pinned commit; 'nightly' = "
                                                      "the default branch now)")
    g.add_argument("--upstream-cache", metavar="DIR", help="clone cache (default $NANOCHAT_BENCH_CACHE or "
                                                        "~/.cache/nanochat-bench)")
    g = p.add_argument_group("where")
    g.add_argument("--out", "--campaign-dir", dest="out", default="campaigns", metavar="ROOT",
                   help="results root; each campaign gets ROOT/<campaign id>/ (default ./campaigns)")
    g.add_argument("--campaign-id", help="name of the new campaign's directory (default <UTC time>-<preset>)")
    g.add_argument("--resume", metavar="CAMPAIGN", help="continue a campaign (its directory, or its id under --out): "
                                                        "runs with an ok result are skipped")
    g.add_argument("--workspace", metavar="DIR", help="data workspaces root (default <cache>/data)")
    g.add_argument("--compile-cache", metavar="DIR", help="upstream's torch.compile cache and temp files, to share "
                                                          "across campaigns (default: inside the campaign dir)")
    g.add_argument("--gpu", metavar="IDX[,IDX]", help="CUDA device index(es) the runs may use")
    g.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="torchrun rendezvous for multi-node runs")
    g.add_argument("--verbose", action="store_true", help="echo each run's output to the console")
    g.add_argument("--quiet", action="store_true", help="no progress output")
    g.add_argument("--require-idle", action="store_true", help="wait (up to 5 min) for other processes to leave "
                                                               "the machine idle, else refuse to start")
    add_target_option(p)


def add_target_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target-bpb", metavar="BPB|baseline",
                   help="matched-quality target for time/tokens/FLOPs to target (default: the baseline arm's mean "
                        "final val BPB; 'baseline' = that default again after a fixed one)")


def target_from_args(args: argparse.Namespace) -> float | str | None:
    """--target-bpb as a positive float, "baseline", or None (not given)."""
    text = getattr(args, "target_bpb", None)
    if text is None or text == "baseline":
        return text
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > 0 and value != float("inf")):   # also false for nan
        raise UsageError(f"--target-bpb {text}: give a positive val BPB such as 2.4, or 'baseline'")
    return value


# ---------------------------------------------------------------- budget

def budget_from_args(args: argparse.Namespace, default_preset: str = "smoke"):
    """(Budget, recorded name): a preset or TOML file, then --set overrides, then the dedicated flags."""
    from harness.budget import Budget, load_preset
    if args.preset and args.budget_toml:
        raise UsageError("give --preset or --budget-toml, not both")
    if args.budget_toml:
        budget, name = Budget.from_toml(args.budget_toml), Path(args.budget_toml).stem
    else:
        budget = load_preset(args.preset or default_preset)
        name = budget.name
    overrides = dict(parse_override(o) for o in args.overrides)
    overrides.update(_flag_overrides(args))
    return (budget.with_overrides(**overrides) if overrides else budget), name


def parse_override(text: str) -> tuple[str, object]:
    """KEY=VALUE with a TOML value (numbers, true/false, [lists], "strings"); a bare word is a string."""
    from harness.budget import tomllib
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--set {text!r}: use KEY=VALUE, e.g. --set num_iterations=100")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip().replace("-", "_"), value


def _flag_overrides(args: argparse.Namespace) -> dict:
    out = {}
    for flag, key in (("repeats", "repeats"), ("timeout", "run_timeout_s"), ("nproc_per_node", "nproc_per_node"),
                      ("nnodes", "nnodes")):
        if getattr(args, flag, None) is not None:
            out[key] = getattr(args, flag)
    if getattr(args, "seeds", None):
        try:
            out["seeds"] = [int(s) for s in args.seeds.split(",")]
        except ValueError:
            raise UsageError(f"--seeds {args.seeds!r}: use a comma list of whole numbers, e.g. 1,2,3") from None
    return out


# ---------------------------------------------------------------- devices

def parse_gpus(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        gpus = [int(g) for g in str(text).split(",") if g.strip()]
    except ValueError:
        raise UsageError(f"--gpu {text!r}: use a CUDA device index or a comma list, e.g. 0 or 0,1") from None
    if not gpus or min(gpus) < 0:
        raise UsageError(f"--gpu {text!r}: use a CUDA device index or a comma list, e.g. 0 or 0,1")
    return gpus


def cuda_device_count() -> int:
    import torch
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_devices(budget, gpus: list[int] | None, count: int | None = None) -> list[int] | None:
    """The GPUs a budget runs on, checked against this machine: one-line errors for what cannot work."""
    if budget.device != "cuda":
        if gpus:
            raise UsageError(f"--gpu {','.join(map(str, gpus))}: budget {budget.name!r} runs on CPU; leave --gpu out "
                             f"or use a CUDA budget (--set device=cuda)")
        return None
    count = cuda_device_count() if count is None else count
    if count == 0:
        raise UsageError(f"budget {budget.name!r} needs CUDA (device=cuda) but this machine has no CUDA device: "
                         f"use --preset smoke, or --set device=cpu")
    gpus = gpus if gpus is not None else list(range(min(count, budget.nproc_per_node)))
    bad = [g for g in gpus if g >= count]
    if bad:
        raise UsageError(f"--gpu {','.join(map(str, bad))}: no such CUDA device; this machine has {count} "
                         f"(indices 0..{count - 1})")
    if len(gpus) < budget.nproc_per_node:
        raise UsageError(f"budget {budget.name!r} runs {budget.nproc_per_node} processes per node but --gpu gives "
                         f"{len(gpus)} device(s); name {budget.nproc_per_node} with --gpu or lower --nproc-per-node")
    return gpus


# ---------------------------------------------------------------- setup

def setup_from_args(args: argparse.Namespace, budget, preset: str, gpus: list[int] | None):
    from harness.adapters.command import CommandSpec
    from harness.campaign import CampaignSetup
    impls = [i.strip() for i in (args.impl or DEFAULT_IMPLS).split(",") if i.strip()]
    command = None
    if args.command_template:
        command = CommandSpec(template=args.command_template, name=args.command_name or "command")
    elif args.budget_toml:
        command = CommandSpec.from_toml(args.budget_toml)
    return CampaignSetup(
        budget=budget, preset=preset, impls=impls, command=command, upstream_source=args.upstream,
        upstream_ref=args.upstream_ref, upstream_cache=args.upstream_cache, out_root=Path(args.out),
        campaign_id=args.campaign_id, workspace_root=Path(args.workspace) if args.workspace else None,
        compile_cache=Path(args.compile_cache).resolve() if args.compile_cache else None, gpus=gpus,
        rdzv_endpoint=args.rdzv_endpoint, verbose=args.verbose, quiet=args.quiet, argv=list(sys.argv),
        require_idle=getattr(args, "require_idle", False), target_bpb=target_from_args(args))


def refuse_fixed_on_resume(args: argparse.Namespace) -> None:
    """One line for options --resume cannot honour: the budget, arms, id and upstream commit are the campaign's own."""
    given = [flag for flag, attr in FIXED_ON_RESUME if getattr(args, attr, None) not in (None, [], "")]
    if given:
        raise UsageError(f"{', '.join(given)} with --resume: a resumed campaign keeps the budget, arms, id and "
                         f"upstream commit it recorded; leave {', '.join(given)} out, or start a new campaign")


def resume_dir(args: argparse.Namespace) -> Path:
    given = Path(args.resume).expanduser()
    for candidate in (given, Path(args.out) / args.resume):
        if (candidate / "campaign.json").is_file():
            return candidate
    raise UsageError(f"--resume {args.resume}: no campaign.json there or under --out {args.out}; "
                     f"see `nanochat-bench list --out {args.out}`")


def resume_from_args(args: argparse.Namespace):
    """Resume the campaign --resume names with the options a resume honours (where things are, how to print,
    --upstream as the place to fetch the recorded commit from); (campaign dir, Campaign)."""
    from harness import campaign as camp
    from harness.commands.outcome import check_history_beside
    refuse_fixed_on_resume(args)
    cdir = resume_dir(args)
    check_history_beside(cdir.resolve().parent)
    overrides = dict(verbose=args.verbose, quiet=args.quiet, argv=list(sys.argv), gpus=parse_gpus(args.gpu),
                     rdzv_endpoint=args.rdzv_endpoint, require_idle=args.require_idle,
                     workspace_root=Path(args.workspace) if args.workspace else None,
                     compile_cache=Path(args.compile_cache).resolve() if args.compile_cache else None,
                     target_bpb=target_from_args(args))
    if args.upstream:           # where to fetch the recorded commit from (a published copy hides its source)
        overrides["upstream_source"] = args.upstream
    if args.upstream_cache:
        overrides["upstream_cache"] = args.upstream_cache
    return camp.resume(cdir, overrides)
