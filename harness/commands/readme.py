"""The `readme` verb: rewrite the README's findings section from the published reports (harness/readme.py)."""
from __future__ import annotations

from harness.commands.base import UsageError, Verb
from harness.readme import END, START, ReadmeError, update_readme


def add_arguments(p) -> None:
    p.add_argument("--readme", default="README.md", help="the README to update (default README.md)")
    p.add_argument("--reports", default="reports", help="published reports folder (default reports)")
    p.add_argument("--allow-dirty", action="store_true",
                   help="publish a campaign that ran from a tree with uncommitted changes (its row says -dirty); "
                        "without it such a campaign is refused unless the findings already show it")


def handle(args) -> int:
    try:
        changed = update_readme(args.readme, args.reports, allow_dirty=args.allow_dirty)
    except ReadmeError as e:
        raise UsageError(str(e)) from None
    print(f"{args.readme}: findings {'updated' if changed else 'already up to date'}")
    return 0


VERB = Verb(add_arguments=add_arguments, handler=handle, example="nanochat-bench readme --reports reports",
            description=f"Rewrite the part of the README between {START} and {END} with the latest published "
                        f"campaign of each preset; everything else stays byte for byte.")
