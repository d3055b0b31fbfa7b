"""The `export` verb: every run of the given campaigns as one table file (CSV or Parquet), and optionally every
step/eval record as a second one, built by harness/frames.py (the same frames a notebook loads)."""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands.base import UsageError, Verb

EXAMPLE = "nanochat-bench export reports campaigns --out runs.csv --records steps.parquet"
FORMATS = (".csv", ".parquet")


def add_export_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="campaign folders, or folders holding them "
                                                            "(e.g. campaigns reports)")
    p.add_argument("--out", required=True, metavar="FILE", help="the runs table: one row per run (.csv or .parquet)")
    p.add_argument("--records", metavar="FILE", help="also write one row per step/eval record (.csv or .parquet)")


def handle_export(args: argparse.Namespace) -> int:
    targets = [("--out", Path(args.out))] + ([("--records", Path(args.records))] if args.records else [])
    for flag, path in targets:
        if path.suffix not in FORMATS:
            raise UsageError(f"{flag} {path}: the file name must end in .csv or .parquet")
        if path.is_dir():
            raise UsageError(f"{flag} {path}: is a folder; give a file name ending in .csv or .parquet")
    from harness.frames import FramesError, records_frame, runs_frame
    try:
        runs = runs_frame(*args.paths)
        records = records_frame(*args.paths) if args.records else None
    except FramesError as e:
        raise UsageError(str(e)) from None
    _write(runs, Path(args.out))
    print(f"{len(runs)} runs of {runs['campaign_id'].nunique()} campaign(s) -> {args.out}")
    if records is not None:
        _write(records, Path(args.records))
        print(f"{len(records)} step/eval records -> {args.records}")
    return 0


def _write(frame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)


VERB = Verb(add_arguments=add_export_options, handler=handle_export, example=EXAMPLE)
