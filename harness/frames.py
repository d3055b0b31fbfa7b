"""Campaign results as tidy pandas DataFrames: one row per run, or one row per step/eval record.

The analyst's entry point (and the `export` verb's): point it at campaign folders, or at folders holding them
(a results root such as ``campaigns/``, or ``reports/``), and get every run in one frame::

    from harness.frames import runs_frame, records_frame
    runs = runs_frame("campaigns", "reports")       # one row per run: identity, status, every summary metric
    steps = records_frame("reports")                # one row per step/eval event of every run

Values are read from the stored files as they are (SI units, the metric registry's names); nothing is re-run or
re-computed. Column order: campaign and run identity, status, the registry's metrics, the other summary fields,
then provenance and data identity, then the budget (``budget.<field>``).
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Iterable

import pandas as pd

from harness import metrics as metric_registry
from harness.results import Campaign, RunResult, SchemaError
from protocol.events import EventFormatError, read_events

RUN_KEYS = ("campaign_id", "preset", "created_utc", "run_id", "implementation", "seed", "repeat", "phase", "status",
            "error")
PROVENANCE_KEYS = ("ours_sha", "ours_dirty", "upstream_sha", "upstream_ref", "upstream_clean", "python", "torch",
                   "cuda", "driver", "gpu_name", "gpu_count", "cpu_model", "cpu_count", "hostname", "utc_started",
                   "utc_finished")
DATA_KEYS = ("dataset", "vocab_size", "shards_sha256", "tokenizer_sha256")


class FramesError(ValueError):
    """A path that holds no campaign, or a campaign file that cannot be read."""


def campaign_dirs(*roots: str | Path) -> list[Path]:
    """Every campaign folder at or under ``roots`` (a folder with a campaign.json), each once, sorted by path."""
    found: dict[Path, None] = {}
    for root in map(Path, roots):
        if (root / "campaign.json").is_file():
            found[root.resolve()] = None
        elif root.is_dir():
            for path in sorted(root.rglob("campaign.json")):
                found[path.parent.resolve()] = None
        else:
            raise FramesError(f"{root}: no such campaign or folder")
    return sorted(found)


def runs_frame(*roots: str | Path) -> pd.DataFrame:
    """One row per run of every campaign under ``roots`` (runs without a result, e.g. pending, included)."""
    rows = [row for cdir in campaign_dirs(*roots) for row in _campaign_rows(cdir)]
    frame = pd.DataFrame(rows)
    return frame if rows else pd.DataFrame(columns=list(RUN_KEYS))


def records_frame(*roots: str | Path) -> pd.DataFrame:
    """One row per step or eval event of every run with an events file (the final record is in ``runs_frame``)."""
    rows = []
    for cdir in campaign_dirs(*roots):
        campaign = _load(cdir)
        for run, result in _results(cdir, campaign):
            if result is None or not result.events_path or not (cdir / result.events_path).is_file():
                continue
            try:
                events = read_events(cdir / result.events_path)
            except EventFormatError as e:
                raise FramesError(f"{cdir / result.events_path}: {e}") from None
            for event in events:
                record = asdict(event)
                if record["event"] not in ("step", "eval"):
                    continue
                rows.append({"campaign_id": campaign.campaign_id, "run_id": run.run_id,
                             "implementation": run.implementation, "seed": run.seed, "repeat": run.repeat,
                             **{k: v for k, v in record.items() if not isinstance(v, (dict, list))}})
    return pd.DataFrame(rows)


def _campaign_rows(cdir: Path) -> Iterable[dict]:
    campaign = _load(cdir)
    targets = ((campaign.comparison or {}).get("targets") or {}).get("runs")   # per-target metrics' values
    for run, result in _results(cdir, campaign):
        row = {"campaign_id": campaign.campaign_id, "preset": campaign.preset, "created_utc": campaign.created_utc,
               "run_id": run.run_id, "implementation": run.implementation, "seed": run.seed, "repeat": run.repeat,
               "phase": run.phase, "status": result.status if result else run.status,
               "error": result.error if result else None}
        if result is not None:
            row.update({m.name: m.value(result, targets) for m in metric_registry.all_metrics()})
            row.update(disturbed=result.disturbed, lockstep_paused_s=result.lockstep_paused_s)
            summary = vars(result.summary)
            row.update({k: v for k, v in summary.items() if k not in row and not isinstance(v, (dict, list))})
            row.update({k: getattr(result.provenance, k) for k in PROVENANCE_KEYS})
            row.update({k: getattr(result.data, k) for k in DATA_KEYS})
            row.update({f"budget.{k}": v for k, v in result.budget.items() if not isinstance(v, (dict, list))})
        yield row


def _load(cdir: Path) -> Campaign:
    try:
        return Campaign.load(cdir)
    except (SchemaError, OSError) as e:
        raise FramesError(f"{cdir / 'campaign.json'}: {e}") from None


def _results(cdir: Path, campaign: Campaign) -> Iterable[tuple]:
    for run in campaign.runs:
        if not run.result_path:
            yield run, None
            continue
        try:
            yield run, RunResult.load(cdir / run.result_path)
        except (SchemaError, OSError) as e:
            raise FramesError(f"{cdir / run.result_path}: {e}") from None
