"""The `parity` verb: train ours and upstream once each on CPU in fp32 with seed 42 and the same budget, keep both
final checkpoints, and compare them step by step and weight by weight (harness/parity.py).

The campaign is an ordinary one (results, events, logs, report), with the budget forced to one repeat, seed 42
(upstream's is fixed in its code), CPU, one process, kept checkpoints and our arm torch.compile'd like upstream
(``--eager`` opts out): inductor's fused fp32 kernels round differently from eager ones, and once the LR is
at full strength the difference grows about tenfold a step. Measured on the smoke budget, 50 steps, Muon weight
decay off: eager ours left 1e-4 relative loss at step 10 (final BPB 4.4e-4 apart); compiled ours stayed within
5.6e-7 at every step with the same final BPB to 6 decimals. ``--from DIR`` recomputes the parity of
an existing campaign instead of training. Exit code: 0 when the verdict is "exact" or "within tolerance", 1 when
the runs diverged, a run failed or the budget audit says the two runs did not train the same budget (one line
"parity: no verdict: ..." naming the first mismatch, e.g. different tokenizers), 2 for bad input.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands.base import UsageError, Verb
from harness.commands.options import budget_from_args

EXAMPLE = "nanochat-bench parity --preset smoke --set num_iterations=50 --muon-weight-decay-off"
DEFAULT_PRESET = "smoke"


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("budget (forced to CPU, seed 42, 1 repeat, checkpoints kept, our arm compiled)")
    g.add_argument("--preset", help=f"named budget (default {DEFAULT_PRESET}); it must run on CPU")
    g.add_argument("--budget-toml", metavar="FILE", help="a budget TOML file instead of a preset")
    g.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one budget field, TOML syntax for the value (e.g. --set num_iterations=50)")
    g.add_argument("--muon-weight-decay-off", action="store_true",
                   help="Muon weight decay 0 in both arms: the tightest comparison (cautious decay flips elements)")
    g.add_argument("--eager", action="store_true",
                   help="run our arm without torch.compile (upstream always compiles; expect early divergence)")
    g.add_argument("--timeout", type=float, metavar="SECONDS", help="per-run timeout")
    g = p.add_argument_group("upstream and where")
    g.add_argument("--upstream", metavar="URL|PATH", help="upstream nanochat source (default $NANOCHAT_UPSTREAM)")
    g.add_argument("--upstream-ref", metavar="REF", help="branch, tag or SHA (default: the pinned commit)")
    g.add_argument("--upstream-cache", metavar="DIR", help="clone cache (default $NANOCHAT_BENCH_CACHE)")
    g.add_argument("--out", default="campaigns", metavar="ROOT", help="results root (default ./campaigns)")
    g.add_argument("--campaign-id", help="name of the campaign's directory (default <UTC time>-<preset>-parity)")
    g.add_argument("--workspace", metavar="DIR", help="data workspaces root (default <cache>/data)")
    g.add_argument("--compile-cache", metavar="DIR", help="upstream's torch.compile cache, shared across campaigns")
    g.add_argument("--from", dest="from_dir", metavar="CAMPAIGN_DIR",
                   help="do not train: recompute the parity of this campaign's ours and upstream runs")
    g.add_argument("--verbose", action="store_true", help="echo each run's output to the console")
    g.add_argument("--quiet", action="store_true", help="no progress output")


def handle(args: argparse.Namespace) -> int:
    if args.from_dir:
        cdir = Path(args.from_dir)
        return print_parity(cdir, recompute_parity(cdir))
    cdir = train_pair(args)
    return print_parity(cdir, stored_or_recomputed(cdir))


def parity_budget(args: argparse.Namespace):
    """The chosen budget with what a parity check needs forced on; (budget, recorded preset name)."""
    budget, name = budget_from_args(args, default_preset=DEFAULT_PRESET)
    if budget.device != "cpu":
        raise UsageError(f"parity runs on CPU in fp32: budget {budget.name!r} has device={budget.device!r}; "
                         f"pick a CPU preset (tiny, smoke) or --set device=\"cpu\"")
    forced = dict(seeds=[42], repeats=1, keep_checkpoints=True, nproc_per_node=1, nnodes=1, compile=not args.eager,
                  kernels="parity",  # upstream's order of operations: any rounding difference would grow (smoke)
                  fast_setting=False,  # other arithmetic: judged by time-to-target, never by parity
                  muon_weight_decay_off=bool(args.muon_weight_decay_off) or budget.muon_weight_decay_off)
    return budget.with_overrides(**forced), f"{name}-parity"


def train_pair(args: argparse.Namespace) -> Path:
    """Run the two-run campaign through the ordinary campaign machinery; its directory."""
    from harness import campaign as camp
    from harness.adapters import registry as arms
    budget, preset = parity_budget(args)
    setup = camp.CampaignSetup(
        budget=budget, preset=preset, impls=[arms.CANDIDATE, arms.BASELINE], upstream_source=args.upstream,
        upstream_ref=args.upstream_ref, upstream_cache=args.upstream_cache, out_root=Path(args.out),
        campaign_id=args.campaign_id, workspace_root=Path(args.workspace) if args.workspace else None,
        compile_cache=Path(args.compile_cache).resolve() if args.compile_cache else None,
        verbose=args.verbose, quiet=args.quiet, measure_peak=False, argv=list(sys.argv))
    cdir, _ = camp.start(setup)
    return cdir


def stored_or_recomputed(cdir: Path):
    """The comparison the campaign just stored (it computes parity itself on CPU), else a fresh one."""
    from harness.comparison import Comparison
    from harness.results import Campaign
    stored = Campaign.load(cdir).comparison
    return Comparison.from_dict(stored) if stored and stored.get("parity") else recompute_parity(cdir)


def recompute_parity(cdir: Path):
    """The campaign's comparison with parity forced on, saved into its campaign.json."""
    from harness.compare import compare_campaign_dir
    if not (Path(cdir) / "campaign.json").is_file():
        raise UsageError(f"--from {cdir}: no campaign.json there; give a campaign directory")
    return compare_campaign_dir(cdir, parity=True, save=True)


def print_parity(cdir: Path, cmp) -> int:
    """A short summary of a Comparison's parity on stdout; the exit code from the verdict."""
    p = cmp.parity
    print(f"results: {Path(cdir) / 'campaign.json'} (full report: nanochat-bench report {cdir})")
    if p is None:
        for note in cmp.notes:
            print(f"note: {note}")
        print("parity: not computed (see the notes above)")
        return 1
    if p["status"] == "unmatched":   # the budget audit says the runs differ: no step-by-step line means anything
        print(f"parity: {p['verdict']}")
        return 1
    for line in summary_lines(p):
        print(line)
    return 0 if p["status"] in ("exact", "within tolerance") else 1


def summary_lines(p: dict) -> list[str]:
    """Verdict, first step past each tolerance, final BPB side by side, worst tensor."""
    most = p["differs_most"]
    most_text = f" (differs most: {most['name']})" if most and p["status"] != "exact" else ""
    lines = [f"parity: {p['verdict']}{most_text}"]
    firsts = p["loss"]["first_step_over"]
    lines.append("loss: first step past rel " + ", ".join(
        f"{float(t):.0e}: {'none' if s is None else s}" for t, s in firsts.items())
        + f" (of {len(p['loss']['steps'])} steps; max rel {_sci(p['loss']['max_rel'])})")
    final = p["val_bpb"]["final"]
    lines.append("final val bpb: n/a" if final is None else
                 f"final val bpb at step {final['step']}: ours {final['ours']} upstream {final['upstream']} "
                 f"(rel diff {_sci(final['rel_diff'])})")
    w = p["weights"]
    lines.append("weights: not compared (no checkpoints)" if w is None else
                 "weights: identical" if w["identical"] else
                 f"worst tensor: {w['worst']['name']} ({w['worst']['group']}) max abs {_sci(w['worst']['max_abs'])} "
                 f"max rel {_sci(w['worst']['max_rel'])}" if w["worst"] else "weights: no common tensors")
    return lines


def _sci(x) -> str:
    return "n/a" if x is None else f"{x:.2e}"


VERB = Verb(add_arguments=add_arguments, handler=handle, example=EXAMPLE,
            description="Exact-parity check: ours (compiled) and upstream on CPU, fp32, seed 42, the same budget and "
                        "data; compares the training loss at every step, the lrm trace, val BPB at every eval and "
                        "the final weights tensor by tensor. Exit 0 if exact or within tolerance, 1 if diverged or if "
                        "the two runs did not train the same budget.")
