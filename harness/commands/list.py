"""The `list` verb: the campaigns under a results root, with their preset, start time and run outcomes."""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands.base import UsageError, Verb
from harness.commands.outcome import fmt_counts, status_counts

EXAMPLE = "nanochat-bench list --out campaigns"


def add_list_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", "--campaign-dir", dest="out", default="campaigns", metavar="ROOT",
                   help="results root to list (default ./campaigns)")


def handle_list(args: argparse.Namespace) -> int:
    from harness.results import Campaign, SchemaError
    root = Path(args.out)
    if not root.is_dir():
        raise UsageError(f"--out {root}: no such directory; campaigns are written under ./campaigns by default")
    rows = []
    for path in sorted(root.glob("*/campaign.json")):
        try:
            c = Campaign.load(path.parent)
        except SchemaError as e:
            rows.append((path.parent.name, "?", "?", f"unreadable: {e}"))
            continue
        state = "complete" if c.finished_utc else "incomplete"
        rows.append((c.campaign_id, c.preset, c.created_utc or "?", f"{state}: {fmt_counts(status_counts(c))}"))
    if not rows:
        print(f"no campaigns under {root}")
        return 0
    widths = [max(len(r[i]) for r in rows + [("campaign", "preset", "created (UTC)", "status")]) for i in range(3)]
    for row in [("campaign", "preset", "created (UTC)", "status")] + rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths + [0])).rstrip())
    return 0


VERB = Verb(add_arguments=add_list_options, handler=handle_list, example=EXAMPLE)
