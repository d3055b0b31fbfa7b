"""The `report` verb: render a finished campaign's report, optionally publish it into the site and the history."""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands.base import UsageError, Verb
from harness.commands.options import add_target_option, target_from_args
from harness.history import DEFAULT_DB, History, HistoryError
from harness.report.load import ReportInputError

EXAMPLE = "nanochat-bench report campaigns/20260710-120000-smoke --out reports --site"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("campaign_dir", metavar="CAMPAIGN_DIR", help="a campaign directory (holds campaign.json)")
    p.add_argument("--out", metavar="ROOT", help="publish into ROOT/<campaign id>/ (as `run --out ROOT` writes "
                                                 "campaigns): the report and a copy of the small raw files; "
                                                 "ROOT/<campaign id> itself is accepted too (default: into the "
                                                 "campaign directory itself)")
    p.add_argument("--recompare", action="store_true",
                   help="recompute campaign.comparison from the stored results first (nothing is re-run)")
    add_target_option(p)
    p.add_argument("--db", default=str(DEFAULT_DB), help=f"history database to record the campaign in "
                                                         f"(default {DEFAULT_DB})")
    p.add_argument("--no-history", action="store_true", help="do not record the campaign in the history")
    p.add_argument("--site", action="store_true", help="also rebuild ROOT/index.html (the site of --out ROOT)")


def handle(args: argparse.Namespace) -> int:
    from harness.report.render import write_report
    cdir = Path(args.campaign_dir)
    try:
        out = out_dir(cdir, args.out)
        target = target_from_args(args)
        if args.recompare or target is not None:   # a new target is a new comparison (nothing is re-run)
            from harness.compare import compare_campaign_dir
            compare_campaign_dir(cdir, target_bpb=target)
        files = write_report(cdir, out)
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


def out_dir(campaign_dir: Path, out: str | None) -> Path | None:
    """``--out ROOT`` means ROOT/<campaign id>, the one meaning --out has for every verb that writes campaign
    folders; a ROOT that already ends in the campaign's id is that folder (the form older docs used)."""
    if not out:
        return None
    from harness.results import Campaign
    if not (campaign_dir / "campaign.json").is_file():
        raise ReportInputError(f"{campaign_dir}: no campaign.json here; pass a campaign directory "
                               f"(campaigns/<campaign_id>)")
    campaign_id = Campaign.load(campaign_dir).campaign_id
    root = Path(out)
    return root if root.name == campaign_id else root / campaign_id


def _rebuild_site(args: argparse.Namespace, site_dir: Path) -> None:
    from harness.site import build_index
    print(f"site index: {build_index(site_dir, None if args.no_history else args.db)}")


VERB = Verb(add_arguments=add_arguments, handler=handle, example=EXAMPLE,
            description="Render a finished campaign's HTML and Markdown report from its stored results; nothing is "
                        "re-run. With --out ROOT the report and the small raw files go to ROOT/<campaign id> "
                        "(e.g. reports/<id>), as `run --out ROOT` puts campaigns in ROOT/<id>.")
