"""The `nightly` verb: under the lock, run (or --check) a campaign against upstream's latest commit, judge it against
the history (harness/nightly.py) and exit 0 (no regression), 1 (regressions), 3 (locked), 4 (runs failed) or 5 (upstream
changed in a way the harness does not know; nothing ran).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands.base import UsageError, Verb
from harness.commands.options import add_run_options, budget_from_args, check_devices, parse_gpus, setup_from_args
from harness.history import DEFAULT_DB, HistoryError, check_db
from harness.nightly import (EXIT_LOCKED, EXIT_UPSTREAM_CHANGED, NightlyLocked, Rule, judge_campaign_dir,
                             nightly_lock, verdict_path)


def _run_campaign(args: argparse.Namespace) -> Path:
    from harness import campaign as camp
    budget, preset = budget_from_args(args, default_preset="smoke")
    gpus = check_devices(budget, parse_gpus(args.gpu))
    cdir, _ = camp.start(setup_from_args(args, budget, preset, gpus))
    return cdir


def _rule(args: argparse.Namespace) -> Rule:
    try:
        return Rule(window=args.window, k=args.k, min_rel=args.min_rel, min_history=args.min_history)
    except ValueError as e:
        raise UsageError(str(e)) from None


def handle(args: argparse.Namespace) -> int:
    if args.resume:
        raise UsageError("nightly does not resume a campaign; judge a finished one with --check CAMPAIGN_DIR")
    rule = _rule(args)
    lock = Path(args.lock) if args.lock else Path(args.out) / "nightly.lock"
    try:
        check_db(args.db)   # a damaged database is said now, not after the campaign ran
        with nightly_lock(lock):
            cdir = Path(args.check) if args.check else _run_campaign(args)
            if not (cdir / "campaign.json").is_file():
                raise UsageError(f"--check {cdir}: no campaign.json there; pass a finished campaign directory")
            code, lines = judge_campaign_dir(cdir, Path(args.db), rule, verdict_path(cdir, bool(args.check)))
            if not args.check:   # a checked campaign is only read: its report is `nanochat-bench report`'s job
                from harness.report.render import write_report
                lines.append(f"report: {write_report(cdir).html}")
    except NightlyLocked as e:
        print(f"nanochat-bench: nightly: {e}", file=sys.stderr)
        return EXIT_LOCKED
    except HistoryError as e:
        raise UsageError(str(e)) from None
    except Exception as e:
        from upstream.revision import UpstreamChanged  # here: the verb's --help stays light
        if not isinstance(e, UpstreamChanged):
            raise
        print(f"UPSTREAM CHANGED {e} (not a regression: nothing ran)")
        return EXIT_UPSTREAM_CHANGED
    print("\n".join(lines))
    return code


def add_arguments(p: argparse.ArgumentParser) -> None:
    from upstream.source import NIGHTLY
    add_run_options(p)
    p.set_defaults(upstream_ref=NIGHTLY, preset="smoke")
    g = p.add_argument_group("nightly")
    g.add_argument("--db", default=str(DEFAULT_DB), help=f"history database (default {DEFAULT_DB})")
    g.add_argument("--lock", help="lock file (default ROOT/nightly.lock, ROOT from --out)")
    g.add_argument("--check", metavar="CAMPAIGN_DIR", help="judge this finished campaign instead of running one; the judgement goes beside "
                        "it (CAMPAIGN_DIR.nightly.json), the campaign is not written to")
    g.add_argument("--window", type=int, default=Rule.window, help="earlier campaigns compared with (default 10)")
    g.add_argument("--k", type=float, default=Rule.k, help="allowed deviation in robust std devs (default 4)")
    g.add_argument("--min-rel", type=float, default=Rule.min_rel, help="smallest relative change flagged (default 0.03)")
    g.add_argument("--min-history", type=int, default=Rule.min_history,
                   help="earlier campaigns needed before a metric is judged (default 3)")


VERB = Verb(add_arguments=add_arguments, handler=handle,
            example="nanochat-bench nightly --preset smoke --upstream-ref nightly --db campaigns/history.sqlite",
            description="Run a preset against upstream's latest commit, store it in the history and exit non-zero "
                        "naming each metric that regressed beyond its recent noise (exit 1), when another nightly "
                        "is running (3), when runs failed (4), or when upstream changed in a way the harness does "
                        "not know (5, before anything runs).")
