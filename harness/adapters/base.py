"""The adapter interface: how the runner asks an arm to train one run of a budget, and what it gets back.

An adapter turns (budget, seed, run dir, data dir) into a command line and environment — in exactly one
function per arm — and says where its events come from: a JSONL file the arm writes itself (``ours``,
``command``) or lines of its stdout that the adapter parses (``upstream``). After the run it may add audit
lines (budget mismatches found in the arm's own output). The runner does everything else the same way for
every arm: subprocess, timeout, log, telemetry, summary.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from harness.budget import Budget
from protocol.events import Event

LineParser = Callable[[str, float], list[Event]]   # (line, seconds since start) -> new events


class AdapterError(ValueError):
    """An arm cannot run this budget or configuration; the message says why and what to change."""


@dataclass
class RunRequest:
    """Everything an arm needs to start one run."""
    budget: Budget
    seed: int
    repeat: int
    run_id: str
    run_dir: Path
    campaign_dir: Path
    base_dir: Path | None = None            # the nanochat data workspace both arms read (shards + tokenizer)
    rdzv_endpoint: str | None = None        # host:port for multi-node torchrun; None = standalone

    @property
    def events_path(self) -> Path:
        return self.run_dir / "events.jsonl"

    @property
    def checkpoint_dir(self) -> Path | None:
        return self.run_dir / "checkpoint" if self.budget.keep_checkpoints else None


@dataclass
class Launch:
    """A command to run, the environment it needs on top of the harness's own, and where."""
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None


@dataclass
class Outcome:
    """What an arm says about a finished run beyond its events."""
    audit: list[str] = field(default_factory=list)   # budget mismatches found in the arm's own output
    notes: dict = field(default_factory=dict)        # arm-specific facts for provenance (e.g. upstream's SHA)


class Adapter:
    """One training arm. Subclasses set ``name`` and implement ``launch``; the class attributes and the
    ``from_setup`` / ``config`` / ``setup_fields`` trio let a campaign build, record and rebuild the arm without
    knowing which arm it is (harness/adapters/registry.py lists the arms)."""
    name: str = "?"
    role: str | None = None            # "baseline" or "candidate": its side of a comparison by default
    needs_checkout: bool = False       # the campaign checks out upstream's source and sets ``checkout`` first
    prints_rounded_lrm: bool = False   # its lrm trace is printed with 2 decimals (the audit's tolerance)

    @classmethod
    def from_setup(cls, setup) -> "Adapter":
        """The arm for a campaign's setup (harness.campaign.CampaignSetup)."""
        return cls()

    def config(self) -> dict:
        """What campaign.json records about this arm (campaign.arms[name]), enough to rebuild it on resume."""
        return {}

    @staticmethod
    def setup_fields(config: dict) -> dict:
        """CampaignSetup fields that rebuild this arm from its recorded ``config`` (the inverse of ``config``)."""
        return {}

    def check(self, budget: Budget) -> None:
        """Raise AdapterError when this arm cannot run ``budget`` (called once, before any run)."""

    def check_checkout(self) -> None:
        """Raise when the attached ``checkout`` cannot run (called once it is set, before data or any run)."""

    def launch(self, req: RunRequest) -> Launch:
        raise NotImplementedError

    def line_parser(self, req: RunRequest) -> LineParser | None:
        """A parser of stdout lines into events, or None when the arm writes ``req.events_path`` itself."""
        return None

    def finish(self, req: RunRequest, events: list[Event], returncode: int | None) -> Outcome:
        """Called after the process ended (also when it failed), with the events seen so far, before the runner
        reads ``req.events_path``: an arm may complete that file here. Raise AdapterError to fail the run."""
        return Outcome()

    def provenance(self) -> dict:
        """Facts about this arm's code for every RunResult (e.g. upstream's SHA); empty by default."""
        return {}


def torchrun_prefix(budget: Budget, rdzv_endpoint: str | None) -> list[str]:
    """The torchrun launcher words for a multi-process budget, or [] for one process."""
    if budget.world_size == 1:
        return []
    words = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={budget.nproc_per_node}",
             f"--nnodes={budget.nnodes}"]
    if rdzv_endpoint:
        words += ["--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv_endpoint}"]
    elif budget.nnodes == 1:
        words += ["--standalone"]
    else:
        raise AdapterError(f"nnodes={budget.nnodes} needs a rendezvous: pass --rdzv-endpoint HOST:PORT")
    return words
