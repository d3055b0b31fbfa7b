"""Reading one finished campaign from disk: campaign.json, each run's RunResult, events and telemetry.

This is the report's only input; nothing here runs or re-computes a training run. Missing optional files
(a run that crashed before writing events) give empty lists; a damaged file fails with its path and line.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from protocol.events import Event, EvalEvent, StepEvent, read_events
from harness.results import Campaign, RunResult, run_file


class ReportInputError(ValueError):
    """A campaign directory the report cannot read; the message names the file and the fix."""


@dataclass
class RunData:
    result: RunResult
    events: list[Event] = field(default_factory=list)
    telemetry: list[dict] = field(default_factory=list)

    @property
    def steps(self) -> list[StepEvent]:
        return [e for e in self.events if isinstance(e, StepEvent)]

    @property
    def evals(self) -> list[EvalEvent]:
        return [e for e in self.events if isinstance(e, EvalEvent)]


@dataclass
class CampaignData:
    campaign_dir: Path
    campaign: Campaign
    runs: list[RunData]


def load_campaign(campaign_dir: str | Path) -> CampaignData:
    """Everything the report shows, read from ``campaign_dir``."""
    campaign_dir = Path(campaign_dir)
    if not (campaign_dir / "campaign.json").is_file():
        raise ReportInputError(f"{campaign_dir}: no campaign.json here; pass a campaign directory "
                               f"(campaigns/<campaign_id>)")
    campaign = Campaign.load(campaign_dir)
    runs = [_load_run(campaign_dir, r) for r in campaign.results(campaign_dir)]
    return CampaignData(campaign_dir=campaign_dir, campaign=campaign, runs=runs)


def _load_run(campaign_dir: Path, result: RunResult) -> RunData:
    events = _optional(run_file(campaign_dir, result, "events_path"), read_events) or []
    telemetry = _optional(run_file(campaign_dir, result, "telemetry_path"), read_jsonl) or []
    return RunData(result=result, events=events, telemetry=telemetry)


def _optional(path: Path | None, reader):
    if path is None or not path.is_file():
        return None
    return reader(path)


def need(d: dict, key: str, where: str):
    """``d[key]``, or a one-line error naming the file section and the missing field."""
    if key not in d:
        raise ReportInputError(f"{where} has no {key!r}; the campaign was compared by another version: "
                               f"compare the campaign again with this nanochat-bench version")
    return d[key]


def read_jsonl(path: str | Path) -> list[dict]:
    """A JSON-lines file as a list of objects (telemetry samples)."""
    rows = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ReportInputError(f"{path}:{n}: not JSON ({e.msg}); the telemetry file is damaged") from None
    return rows
