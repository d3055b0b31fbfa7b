"""The `report` verb: render a finished campaign's report, optionally publish it into the site and the history."""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands.base import UsageError, Verb
from harness.commands.options import add_target_option, target_from_args
from harness.history import DEFAULT_DB, History, HistoryError
from harness.report.load import ReportInputError

EXAMPLE = "nanochat-bench report campaigns/20260710-120000-smoke --out reports/20260710-120000-smoke --site"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("campaign_dir", metavar="CAMPAIGN_DIR", help="a campaign directory (holds campaign.json)")
    p.add_argument("--out", metavar="DIR", help="write the report here, with a copy of the small raw files "
                                                "(default: into the campaign directory itself)")
    p.add_argument("--recompare", action="store_true",
                   help="recompute campaign.comparison from the stored results first (nothing is re-run)")
    add_target_option(p)
    p.add_argument("--db", default=str(DEFAULT_DB), help=f"history database to record the campaign in "
                                                         f"(default {DEFAULT_DB})")
    p.add_argument("--no-history", action="store_true", help="do not record the campaign in the history")
    p.add_argument("--site", action="store_true", help="also rebuild index.html in the folder above --out")


def handle(args: argparse.Namespace) -> int:
    from harness.report.render import write_report
    cdir = Path(args.campaign_dir)
    try:
        target = target_from_args(args)
        if args.recompare or target is not None:   # a new target is a new comparison (nothing is re-run)
            from harness.compare import compare_campaign_dir
            compare_campaign_dir(cdir, target_bpb=target)
        files = write_report(cdir, args.out)
        if not args.no_history:
            with History(args.db) as h:
                h.record_campaign(cdir)
    except (ReportInputError, HistoryError) as e:
        raise UsageError(str(e)) from None
    print(f"report: {files.html}\nreport (Markdown): {files.markdown}")
    if args.site:
        from harness.report.findings import FindingsError
        try:
            _rebuild_site(args, files.html.parent.parent)
        except FindingsError as e:
            raise UsageError(str(e)) from None
    return 0


def _rebuild_site(args: argparse.Namespace, site_dir: Path) -> None:
    from harness.site import build_index
    print(f"site index: {build_index(site_dir, None if args.no_history else args.db)}")


VERB = Verb(add_arguments=add_arguments, handler=handle, example=EXAMPLE,
            description="Render a finished campaign's HTML and Markdown report from its stored results; nothing is "
                        "re-run. With --out the report and the small raw files go to DIR (e.g. reports/<id>).")
