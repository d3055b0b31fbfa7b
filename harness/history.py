"""The campaign history: every campaign's per-run metrics in one SQLite file, and trends read back from it.

Rows are keyed by preset, implementation, our SHA, upstream SHA and machine, so the nightly check can compare a
new campaign with earlier ones of the same preset on the same machine. Recording a campaign twice replaces its rows
(idempotent). Every metric of harness/metrics.py is stored. The file is plain SQLite: ``sqlite3 campaigns/history.sqlite`` works for ad-hoc questions.
"""
from __future__ import annotations

import sqlite3
import statistics
from dataclasses import dataclass
from pathlib import Path

from harness import metrics as metric_registry
from harness.report.identity import host_provenance, machine_key
from harness.results import Campaign, RunResult

DEFAULT_DB = Path("campaigns") / "history.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS campaigns (
    campaign_id TEXT PRIMARY KEY, preset TEXT NOT NULL, machine TEXT NOT NULL,
    created_utc TEXT, finished_utc TEXT, campaign_dir TEXT);
CREATE TABLE IF NOT EXISTS runs (
    campaign_id TEXT NOT NULL REFERENCES campaigns(campaign_id) ON DELETE CASCADE,
    run_id TEXT NOT NULL, implementation TEXT NOT NULL, seed INTEGER, repeat INTEGER, status TEXT NOT NULL,
    ours_sha TEXT, ours_dirty INTEGER, upstream_sha TEXT,
    PRIMARY KEY (campaign_id, run_id));
CREATE TABLE IF NOT EXISTS metrics (
    campaign_id TEXT NOT NULL, run_id TEXT NOT NULL, name TEXT NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (campaign_id, run_id, name),
    FOREIGN KEY (campaign_id, run_id) REFERENCES runs(campaign_id, run_id) ON DELETE CASCADE);
CREATE INDEX IF NOT EXISTS campaigns_by_key ON campaigns(preset, machine, created_utc);
CREATE INDEX IF NOT EXISTS runs_by_key ON runs(implementation, ours_sha, upstream_sha);
"""


class HistoryError(RuntimeError):
    """A history database this version cannot use, or a campaign it cannot record."""


def check_db(path: str | Path) -> None:
    """HistoryError now, not after hours of runs, when ``path`` exists but is not a history database we can use."""
    if Path(path).exists():
        with History(path):
            pass


@dataclass(frozen=True)
class Point:
    """One campaign's value of one metric for one implementation: the median over its ok runs."""
    campaign_id: str
    created_utc: str
    preset: str
    machine: str
    implementation: str
    ours_sha: str | None
    upstream_sha: str | None
    metric: str
    value: float
    n_runs: int


class History:
    """An open history database. Use as a context manager, or call close()."""

    def __init__(self, path: str | Path = DEFAULT_DB):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path)
            self.db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.DatabaseError as e:   # not a database, locked, read-only, unopenable
            raise HistoryError(f"{self.path}: not a usable history database ({e}); move it away (a new one is "
                               f"made) or pass another --db") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.db.close()

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise HistoryError(f"{self.path}: history schema version {version}, this nanochat-bench reads "
                               f"{SCHEMA_VERSION}; use a new --db path or the release that wrote it")
        with self.db:
            self.db.executescript(_SCHEMA)
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def record_campaign(self, campaign_dir: str | Path) -> str:
        """Store (or replace) the finished campaign in ``campaign_dir``; returns its id."""
        campaign = Campaign.load(campaign_dir)
        return self.record(campaign, campaign.results(campaign_dir), Path(campaign_dir).resolve())

    def record(self, campaign: Campaign, results: list[RunResult], campaign_dir: Path | None = None) -> str:
        """Store (or replace) a campaign's runs and their metrics; returns the campaign id."""
        if not results:
            raise HistoryError(f"campaign {campaign.campaign_id} has no run results to record; run it first")
        with self.db:
            self.db.execute("DELETE FROM campaigns WHERE campaign_id = ?", (campaign.campaign_id,))
            self.db.execute("INSERT INTO campaigns VALUES (?,?,?,?,?,?)", (
                campaign.campaign_id, campaign.preset, campaign_machine(results), campaign.created_utc,
                campaign.finished_utc, str(campaign_dir) if campaign_dir else None))
            for r in results:
                if r.measured:   # warm-up runs fill the compile cache; their figures are not measurements
                    self._insert_run(campaign.campaign_id, r)
        return campaign.campaign_id

    def _insert_run(self, campaign_id: str, r: RunResult) -> None:
        p = r.provenance
        self.db.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?)", (
            campaign_id, r.run_id, r.implementation, r.seed, r.repeat, r.status, p.ours_sha,
            None if p.ours_dirty is None else int(p.ours_dirty), p.upstream_sha))
        for metric in metric_registry.all_metrics():
            value = metric.value(r)
            if value is not None:
                self.db.execute("INSERT INTO metrics VALUES (?,?,?,?)",
                                (campaign_id, r.run_id, metric.name, float(value)))

    def campaign(self, campaign_id: str) -> dict:
        """The campaigns row of ``campaign_id``, as a dict."""
        row = self.db.execute("SELECT campaign_id, preset, machine, created_utc, finished_utc, campaign_dir "
                              "FROM campaigns WHERE campaign_id = ?", (campaign_id,)).fetchone()
        if row is None:
            raise HistoryError(f"campaign {campaign_id!r} is not in {self.path}; record it first (history --add DIR)")
        keys = ("campaign_id", "preset", "machine", "created_utc", "finished_utc", "campaign_dir")
        return dict(zip(keys, row))

    def points(self, preset: str | None = None, machine: str | None = None, implementation: str | None = None,
               metric: str | None = None) -> list[Point]:
        """Per-campaign medians over ok runs, oldest first, filtered by whichever keys are given."""
        where, args = _filters(preset=preset, machine=machine, implementation=implementation, metric=metric)
        rows = self.db.execute(_POINTS_SQL.format(where=where), args).fetchall()
        return _medians(rows)


_POINTS_SQL = """
SELECT c.campaign_id, COALESCE(c.created_utc, ''), c.preset, c.machine, r.implementation,
       r.ours_sha, r.upstream_sha, m.name, m.value
FROM metrics m
JOIN runs r ON r.campaign_id = m.campaign_id AND r.run_id = m.run_id
JOIN campaigns c ON c.campaign_id = m.campaign_id
WHERE r.status = 'ok' {where}
ORDER BY COALESCE(c.created_utc, ''), c.campaign_id, r.implementation, m.name, r.run_id
"""
_COLUMNS = {"preset": "c.preset", "machine": "c.machine", "implementation": "r.implementation", "metric": "m.name"}


def _filters(**keys) -> tuple[str, list]:
    clauses, args = [], []
    for key, value in keys.items():
        if value is not None:
            clauses.append(f"AND {_COLUMNS[key]} = ?")
            args.append(value)
    return " ".join(clauses), args


def _medians(rows: list[tuple]) -> list[Point]:
    """Group run rows by (campaign, implementation, metric) and take the median; SHAs from the group's first run."""
    groups: dict[tuple, list] = {}
    for cid, created, preset, machine, impl, ours, up, name, value in rows:
        groups.setdefault((cid, impl, name), [cid, created, preset, machine, impl, ours, up, name, []])[8].append(value)
    return [Point(*g[:8], value=statistics.median(g[8]), n_runs=len(g[8])) for g in groups.values()]


def campaign_machine(results: list[RunResult]) -> str:
    """The machine key of a campaign: that of its first run that recorded a host."""
    return machine_key(host_provenance(results))


def trend_frame(points: list[Point], metrics: tuple[str, ...] | None = None):
    """Points as a pandas table: one row per campaign and implementation, one column per metric, oldest first.
    ``metrics``: the column names; default the metrics the history table shows (tracked "table")."""
    import pandas as pd

    metrics = tuple(m.name for m in metric_registry.tracked("table")) if metrics is None else metrics
    keys = ["created_utc", "campaign_id", "preset", "machine", "implementation", "ours_sha", "upstream_sha"]
    # a missing key (no upstream SHA in an ours-only campaign) is "" here: pandas would drop or NaN a None key
    rows = [{**{k: getattr(p, k) or "" for k in keys}, "metric": p.metric, "value": p.value}
            for p in points if p.metric in metrics]
    if not rows:
        return pd.DataFrame(columns=keys + list(metrics))
    # one row per (campaign, implementation, commits) that has a value: a groupby keeps only the combinations
    # that occur, where pivot_table(dropna=False) made every combination of the keys (phantom all-n/a rows)
    frame = pd.DataFrame(rows).groupby(keys + ["metric"], sort=False)["value"].first().unstack("metric")
    frame = frame.reset_index().reindex(columns=keys + [m for m in metrics if m in frame.columns])
    return frame.sort_values(["created_utc", "campaign_id", "implementation"], ignore_index=True)
