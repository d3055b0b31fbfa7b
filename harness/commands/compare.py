"""The `compare` verb: campaign B against campaign A (same preset and machine), per arm and metric, with an exit
code for CI and bisecting: 0 = nothing regressed beyond the threshold, 1 = something did, 2 = bad input."""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands.base import UsageError, Verb

EXAMPLE = "nanochat-bench compare campaigns/20261201-smoke campaigns/20261202-smoke --impl ours --threshold 5%"


def add_compare_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", metavar="A", help="the baseline campaign folder")
    p.add_argument("b", metavar="B", help="the campaign judged against A (ratios are B ÷ A)")
    p.add_argument("--impl", metavar="ARM[,ARM]", help="arms to compare (default: every ok arm of both)")
    p.add_argument("--metric", metavar="NAME[,NAME]", help="metrics to compare (default: every compared metric)")
    p.add_argument("--threshold", default="2%", metavar="PCT",
                   help="a change counts only beyond this (default 2%%); exit 1 if a metric is clearly worse")
    p.add_argument("--target-bpb", metavar="BPB",
                   help="target val BPB of the time/tokens/FLOPs-to-target rows, for both campaigns "
                        "(default: A's stored target)")


def _target(text: str | None) -> float | None:
    from harness.commands.options import target_from_args
    value = target_from_args(argparse.Namespace(target_bpb=text))
    if value == "baseline":
        raise UsageError("--target-bpb baseline: compare needs a number here, e.g. --target-bpb 2.4")
    return value


def handle_compare(args: argparse.Namespace) -> int:
    threshold = parse_threshold(args.threshold)
    target = _target(args.target_bpb)
    for flag, path in (("A", args.a), ("B", args.b)):
        if not (Path(path) / "campaign.json").is_file():
            raise UsageError(f"{flag} {path}: not a campaign folder (no campaign.json)")
    from harness import metrics as metric_registry
    from harness.campaign_diff import DiffError, diff_campaigns
    from harness.report import fmt
    names = args.metric.split(",") if args.metric else None
    for name in names or []:
        try:
            metric_registry.get(name)
        except KeyError as e:
            raise UsageError(f"--metric {name}: {e.args[0]}") from None
    try:
        rows = diff_campaigns(Path(args.a), Path(args.b), implementations=args.impl.split(",") if args.impl else None,
                              metric_names=names, threshold=threshold, target_bpb=target)
    except DiffError as e:
        raise UsageError(str(e)) from None
    table = [("arm", "metric", "A", "B", "B ÷ A [95 % CI or range]", "verdict")]
    for r in rows:
        kind = metric_registry.get(r.metric).kind
        verdict = r.result.verdict or f"no verdict: {r.result.reason}"
        table.append((r.implementation, r.label, f"{fmt.by_kind(r.a_mean, kind)} (n={r.n[0]})",
                      f"{fmt.by_kind(r.b_mean, kind)} (n={r.n[1]})",
                      fmt.ratio_interval(r.result.ratio, r.result.ci95, r.result.range, min(r.n)), verdict))
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths + [0])).rstrip())
    regressed = [f"{r.implementation} {r.label}" for r in rows if r.regressed]
    print(f"verdict words need the CI to exclude 1 and |ratio - 1| > {threshold:.1%}; ~ = no clear change")
    if regressed:
        print(f"regressed: {', '.join(regressed)}")
        return 1
    return 0


def parse_threshold(text: str) -> float:
    """'5%' or '0.05' -> 0.05; a finite fraction in [0, 1)."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < 1:   # also false for nan
        raise UsageError(f"--threshold {text}: give a percentage such as 5% (or a fraction such as 0.05)")
    return value


VERB = Verb(add_arguments=add_compare_options, handler=handle_compare, example=EXAMPLE)
