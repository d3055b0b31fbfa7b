"""What `run` and `benchmark` print when a campaign ends, and its entry in the history database beside it."""
from __future__ import annotations

from pathlib import Path

from harness.commands.base import UsageError


def report_outcome(cdir: Path, campaign) -> int:
    """Print where the campaign is and how its runs ended; exit 0 when every run is ok, else 1."""
    counts = status_counts(campaign)
    print(f"campaign {campaign.campaign_id}: {fmt_counts(counts)}")
    print(f"results: {cdir / 'campaign.json'}")
    record_history(cdir)
    for note in campaign.notes:
        print(f"note: {note}")
    disturbed = (campaign.comparison or {}).get("disturbed_runs") or []
    if disturbed:
        print(f"DISTURBED: other processes used the machine during {', '.join(disturbed)}: their timings are "
              f"suspect; re-run on an idle machine (--require-idle waits for one)")
    return 0 if counts.get("ok", 0) == len(campaign.runs) else 1


def check_history_beside(root: Path) -> None:
    """The history database the campaign will be added to (ROOT/history.sqlite) is checked before any run."""
    from harness.history import HistoryError, check_db
    try:
        check_db(root / "history.sqlite")
    except HistoryError as e:
        raise UsageError(str(e)) from None


def record_history(cdir: Path) -> None:
    """Add the campaign to the history database beside it (ROOT/history.sqlite), for trends and nightly checks."""
    from harness.history import History, HistoryError
    try:
        with History(cdir.parent / "history.sqlite") as h:
            h.record_campaign(cdir)
        print(f"history: {cdir.parent / 'history.sqlite'}")
    except HistoryError as e:  # the results are safe on disk; only the trend database missed them
        print(f"note: not added to the history: {e}")


def status_counts(campaign) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in campaign.runs:
        counts[r.status] = counts.get(r.status, 0) + 1
    return counts


def fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
