"""The `run` verb: turn command-line options into a CampaignSetup, then start or resume the campaign."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands.base import UsageError, Verb
from harness.commands.options import (add_run_options, budget_from_args, check_devices, parse_gpus, resume_dir,
                                      setup_from_args, target_from_args)
from harness.commands.outcome import check_history_beside, report_outcome

EXAMPLE = "nanochat-bench run --preset smoke --impl ours,upstream --set num_iterations=100 --repeats 3"


def handle_run(args: argparse.Namespace) -> int:
    from harness import campaign as camp
    if args.resume:
        given = [f for f, v in (("--upstream", args.upstream), ("--upstream-ref", args.upstream_ref)) if v]
        if given:
            raise UsageError(f"{' and '.join(given)} with --resume: a resumed campaign keeps the upstream commit it "
                             f"recorded; leave {' and '.join(given)} out, or start a new campaign")
        cdir = resume_dir(args)
        check_history_beside(cdir.resolve().parent)
        overrides = dict(verbose=args.verbose, quiet=args.quiet, argv=list(sys.argv), gpus=parse_gpus(args.gpu),
                         rdzv_endpoint=args.rdzv_endpoint,
                         workspace_root=Path(args.workspace) if args.workspace else None,
                         compile_cache=Path(args.compile_cache).resolve() if args.compile_cache else None,
                         target_bpb=target_from_args(args))
        cdir, campaign = camp.resume(cdir, overrides)
    else:
        budget, preset = budget_from_args(args)
        gpus = check_devices(budget, parse_gpus(args.gpu))
        check_history_beside(Path(args.out).expanduser())
        cdir, campaign = camp.start(setup_from_args(args, budget, preset, gpus))
    return report_outcome(cdir, campaign)


VERB = Verb(add_arguments=add_run_options, handler=handle_run, example=EXAMPLE,
            description="Run every (arm, seed, repeat) of a budget as a subprocess, arms interleaved, and keep each "
                        "result under ROOT/<campaign id>/.")
