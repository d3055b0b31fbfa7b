"""The `history` verb: record campaigns into the history database and print metric trends as a table."""
from __future__ import annotations

from pathlib import Path

from harness import metrics as metric_registry
from harness.commands.base import UsageError, Verb
from harness.history import DEFAULT_DB, History, HistoryError, trend_frame
from harness.report import fmt


def history_table(frame, title: str):
    """A rich Table of a trend frame: tokens/s with its change from the previous campaign of the same series."""
    from rich.table import Table

    table = Table(title=title)
    for col in ("created (UTC)", "campaign", "preset", "machine", "impl", "ours", "upstream"):
        table.add_column(col, no_wrap=col in ("created (UTC)", "campaign"))
    shown = metric_registry.tracked("table")
    for metric in shown:
        table.add_column(metric.label, justify="right")
    table.add_column("Δ tokens/s vs previous", justify="right")
    previous: dict[tuple, float] = {}
    for row in frame.itertuples(index=False):
        d = row._asdict()
        key = (d["preset"], d["machine"], d["implementation"])
        cells = [_cell(d.get(metric.name), metric.kind) for metric in shown]
        table.add_row((d["created_utc"] or fmt.NA)[:16].replace("T", " "), d["campaign_id"], d["preset"], d["machine"], d["implementation"],
                      _sha(d["ours_sha"]), _sha(d["upstream_sha"]), *cells,
                      _delta(previous.get(key, FIRST), d.get("tokens_per_s")))
        if _present(d.get("tokens_per_s")):
            previous[key] = d["tokens_per_s"]
    return table


def _sha(x) -> str:
    """A SHA cell; a campaign without that arm has none (None, "" or pandas' NaN)."""
    return fmt.short_sha(x if isinstance(x, str) else None)


def _present(x) -> bool:
    return x is not None and x == x  # NaN (a metric a campaign lacks) is not present


def _cell(x, kind: str) -> str:
    return fmt.by_kind(x, kind) if _present(x) else fmt.NA


def _delta(old, new) -> str:
    """The change from the previous campaign of the same preset, machine and implementation; "first" for the
    first one, n/a when either has no tokens/s."""
    if old is FIRST:
        return "first" if _present(new) else fmt.NA
    if not (_present(old) and _present(new)) or not old:
        return fmt.NA
    return f"{(new - old) / old * 100:+.1f} %"


FIRST = object()   # no earlier campaign in the series


def add_arguments(p) -> None:
    p.add_argument("--db", default=str(DEFAULT_DB), help=f"history database (default {DEFAULT_DB})")
    p.add_argument("--add", metavar="CAMPAIGN_DIR", action="append", default=[],
                   help="record a finished campaign first (repeatable; recording again replaces it)")
    p.add_argument("--preset", help="only this preset")
    p.add_argument("--machine", help="only this machine key (host/device, as shown)")
    p.add_argument("--impl", help="only this implementation (ours, upstream, command:<name>)")
    p.add_argument("--last", type=int, default=30, help="show the newest N rows (default 30)")


def handle(args) -> int:
    from rich.console import Console

    if not args.add and not Path(args.db).is_file():
        raise UsageError(f"--db {args.db}: no history database yet; record a campaign with --add CAMPAIGN_DIR")
    try:
        with History(args.db) as h:
            for cdir in args.add:
                print(f"recorded {h.record_campaign(cdir)}")
            frame = trend_frame(h.points(preset=args.preset, machine=args.machine, implementation=args.impl))
    except HistoryError as e:
        raise UsageError(str(e)) from None
    if frame.empty:
        print(f"no campaign in {args.db} matches")
        return 0
    Console(width=200).print(history_table(frame.tail(args.last), f"history: {args.db}"))
    return 0


VERB = Verb(add_arguments=add_arguments, handler=handle,
            example="nanochat-bench history --add campaigns/20260710-120000-smoke --preset smoke",
            description="Print metric trends across the campaigns stored in the history database "
                        "(medians over each campaign's ok runs, per implementation).")
