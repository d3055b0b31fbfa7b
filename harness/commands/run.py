"""The `run` verb: turn command-line options into a CampaignSetup, then start or resume the campaign."""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands.base import Verb
from harness.commands.options import (add_run_options, budget_from_args, check_devices, parse_gpus,
                                      resume_from_args, setup_from_args)
from harness.commands.outcome import check_history_beside, report_outcome

EXAMPLE = "nanochat-bench run --preset smoke --impl ours,upstream --set num_iterations=100 --repeats 3"


def handle_run(args: argparse.Namespace) -> int:
    from harness import campaign as camp
    if args.resume:
        cdir, campaign = resume_from_args(args)
    else:
        budget, preset = budget_from_args(args)
        gpus = check_devices(budget, parse_gpus(args.gpu))
        check_history_beside(Path(args.out).expanduser())
        cdir, campaign = camp.start(setup_from_args(args, budget, preset, gpus))
    return report_outcome(cdir, campaign)


VERB = Verb(add_arguments=add_run_options, handler=handle_run, example=EXAMPLE,
            description="Run every (arm, seed, repeat) of a budget as a subprocess, arms interleaved, and keep each "
                        "result under ROOT/<campaign id>/.")
