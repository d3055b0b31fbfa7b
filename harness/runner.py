"""The campaign runner: plan the runs (arms interleaved A B B A ...), run each as a subprocess, keep every result.

Layout of a campaign directory::

    <root>/<campaign_id>/campaign.json
                         runs/<run_id>/result.json  log.txt  events.jsonl  telemetry.jsonl

campaign.json is rewritten (atomically) after every run, so a crash or Ctrl-C keeps everything that finished.
A failed, killed or timed-out run becomes a RunResult with its error line and log tail and the campaign goes
on; Ctrl-C stops the current run's process tree, records it as interrupted and stops. Resuming skips runs
that already have an ok result.
"""
from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field
from pathlib import Path

from harness import interference
from harness import provenance as prov
from harness.adapters.base import Adapter, AdapterError, Outcome, RunRequest
from harness.budget import Budget
from protocol.events import EventFormatError, FinalEvent, StepEvent, read_events
from harness.lockstep import Lockstep, PairProgress, unpause
from harness.process import ArmProcess, ProcessOptions, ProcessOutcome
from harness.progress import Silent
from harness.results import Campaign, CampaignRun, DataIdentity, Provenance, RunResult, damage
from harness.summarize import PeakFlops, summarize
from protocol.files import DiskFull, check_name


class CampaignInterrupted(Exception):
    """The user pressed Ctrl-C; the campaign directory holds every result up to that point."""


class CampaignDiskFull(Exception):
    """A write of the harness found the disk full: the run was stopped and the campaign ends (one line); every
    file written before is kept, and the campaign resumes once there is space."""


def plan_runs(arms: list[str], seeds: list[int], repeats: int, warmup: bool = False) -> list[CampaignRun]:
    """Every (arm, seed, repeat), arms in alternating order per round (A B, B A, A B ...) so drift hits all arms;
    with ``warmup``, first one unmeasured warm-up run per arm (it fills the compile cache, so every measured
    repeat of both arms starts from the same warm cache)."""
    runs: list[CampaignRun] = []
    if warmup:
        for arm in arms:
            runs.append(CampaignRun(run_id=f"{len(runs) + 1:02d}-{slug(arm)}-warmup", implementation=arm,
                                    seed=seeds[0], repeat=-1, status="pending", phase="warmup"))
    rounds = [(seed, r) for seed in seeds for r in range(repeats)]
    for k, (seed, r) in enumerate(rounds):
        for arm in (arms if k % 2 == 0 else arms[::-1]):
            run_id = f"{len(runs) + 1:02d}-{slug(arm)}-s{seed}-r{r}"
            runs.append(CampaignRun(run_id=run_id, implementation=arm, seed=seed, repeat=r, status="pending"))
    return runs


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")


def new_campaign(root: str | Path, budget: Budget, preset: str, arms: list[str],
                 arms_config: dict[str, dict] | None = None, campaign_id: str | None = None) -> tuple[Path, Campaign]:
    """A fresh campaign directory under ``root`` with its planned runs saved in campaign.json."""
    root = Path(root).expanduser().resolve()
    campaign_id = check_name(campaign_id or unique_id(root, preset), "campaign id")
    cdir = root / campaign_id
    if (cdir / "campaign.json").exists():
        raise FileExistsError(f"campaign {cdir} already exists; resume it with --resume {cdir} or choose another id")
    campaign = Campaign(campaign_id=campaign_id, preset=preset, budget=budget.to_dict(),
                        runs=plan_runs(arms, budget.seeds, budget.repeats, warmup=budget.warmup_iterations > 0),
                        created_utc=prov.utc_now(),
                        arms=dict(arms_config or {a: {} for a in arms}))
    campaign.save(cdir)
    return cdir, campaign


def unique_id(root: Path, preset: str) -> str:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    base, n = f"{stamp}-{slug(preset)}", 1
    while (root / (base if n == 1 else f"{base}-{n}")).exists():
        n += 1
    return base if n == 1 else f"{base}-{n}"


def runs_to_do(cdir: Path, campaign: Campaign) -> list[str]:
    """The run ids, in plan order, without an ok result whose files still hold up (results.damage); each damaged
    ok run gets a note (once) in the campaign's notes and is run again."""
    todo = []
    for planned in campaign.runs:
        why = damage(cdir, planned) if planned.status == "ok" else "not ok"
        if why is None:
            continue
        todo.append(planned.run_id)
        note = f"{planned.run_id} was ok but {why}: run again"
        if planned.status == "ok" and note not in campaign.notes:
            campaign.notes.append(note)
    return todo


@dataclass
class RunnerContext:
    """What every run of a campaign shares."""
    base_dir: Path | None = None                 # the data workspace
    data: DataIdentity = field(default_factory=DataIdentity)
    options: ProcessOptions = field(default_factory=ProcessOptions)
    rdzv_endpoint: str | None = None
    peak: PeakFlops | None = None                # for MFU
    provenance: Provenance = field(default_factory=Provenance)
    progress: object = field(default_factory=Silent)


class CampaignRunner:
    def __init__(self, campaign_dir: str | Path, campaign: Campaign, adapters: dict[str, Adapter],
                 ctx: RunnerContext):
        self.cdir, self.campaign, self.adapters, self.ctx = Path(campaign_dir).resolve(), campaign, adapters, ctx
        self.budget = Budget.from_dict(campaign.budget, source=str(self.cdir / "campaign.json"))
        missing = sorted({r.implementation for r in campaign.runs} - set(adapters))
        if missing:
            raise ValueError(f"no adapter for implementation(s) {missing} of campaign {campaign.campaign_id}")

    def run(self) -> Campaign:
        """Run every run without an ok result, in plan order; returns the campaign (also saved). With a budget's
        ``interleave_steps`` > 0 the two measured runs of a round run in lock-step (harness/lockstep.py)."""
        todo = set(runs_to_do(self.cdir, self.campaign))
        self.ctx.progress.campaign(len(self.campaign.runs), len(todo))
        runs = self.campaign.runs
        try:
            i = 0
            while i < len(runs):
                if runs[i].run_id not in todo:
                    i += 1
                elif self._round_mates(runs, i, todo):
                    self._run_pair((i + 1, runs[i]), (i + 2, runs[i + 1]))
                    i += 2
                else:
                    self._run_one(i + 1, runs[i])
                    i += 1
        finally:
            try:
                self.campaign.save(self.cdir)
            except DiskFull:
                pass    # the campaign.json on disk stays as last written, whole (atomic writes)
            self.ctx.progress.close()
        return self.campaign

    def _round_mates(self, runs: list[CampaignRun], i: int, todo: set[str]) -> bool:
        """Whether runs i and i+1 are the two arms of one measured round, both to run, in a lock-step budget."""
        if self.budget.interleave_steps < 1 or i + 1 >= len(runs):
            return False
        a, b = runs[i], runs[i + 1]
        return (b.run_id in todo and a.phase == b.phase == "measure" and a.implementation != b.implementation
                and (a.seed, a.repeat) == (b.seed, b.repeat))

    def _request(self, planned: CampaignRun) -> RunRequest:
        budget = self.budget.warmup_budget() if planned.phase == "warmup" else self.budget
        return RunRequest(budget=budget, seed=planned.seed, repeat=planned.repeat, run_id=planned.run_id,
                          run_dir=self.cdir / "runs" / planned.run_id, campaign_dir=self.cdir,
                          base_dir=self.ctx.base_dir, rdzv_endpoint=self.ctx.rdzv_endpoint)

    def _run_one(self, index: int, planned: CampaignRun) -> RunResult:
        req = self._request(planned)
        adapter = self.adapters[planned.implementation]
        self.ctx.progress.run_started(index, len(self.campaign.runs), planned.run_id, req.budget.iterations)
        started = prov.utc_now()
        try:
            outcome = ArmProcess(req, adapter, self.ctx.options, self.ctx.progress).run()
        except DiskFull as e:
            raise self._disk_full(planned, str(e)) from None
        return self._record(req, planned, adapter, outcome, started)

    def _run_pair(self, *pair: tuple[int, CampaignRun]) -> list[RunResult]:
        """The two arms of a round in lock-step; each gets its own result, corrected for the pauses."""
        reqs = [self._request(planned) for _, planned in pair]
        adapters = [self.adapters[planned.implementation] for _, planned in pair]
        (i, a), (_, b) = pair
        progress = PairProgress(self.ctx.progress)
        progress.run_started(i, len(self.campaign.runs), f"{a.run_id} + {b.run_id} (lock-step)",
                             2 * reqs[0].budget.iterations)
        started = prov.utc_now()
        procs = [ArmProcess(req, adapter, self.ctx.options, progress.arm(k))
                 for k, (req, adapter) in enumerate(zip(reqs, adapters))]
        try:
            outcomes = Lockstep(*procs, steps_per_slice=self.budget.interleave_steps).run()
        except DiskFull as e:
            raise self._disk_full(a, str(e)) from None
        results = [self._record(req, planned, adapter, out, started, lockstep=proc, stop_if_interrupted=False)
                   for (_, planned), req, adapter, proc, out in zip(pair, reqs, adapters, procs, outcomes)]
        if any(r.status == "interrupted" for r in results):
            raise CampaignInterrupted(f"interrupted during {a.run_id} + {b.run_id}; results so far are in {self.cdir}")
        return results

    def _record(self, req: RunRequest, planned: CampaignRun, adapter: Adapter, outcome: ProcessOutcome,
                started: str, lockstep: ArmProcess | None = None, stop_if_interrupted: bool = True) -> RunResult:
        result = self._result(req, planned, adapter, outcome, started, lockstep)
        try:
            result.save(req.run_dir / "result.json")
            planned.status, planned.result_path = result.status, f"runs/{planned.run_id}/result.json"
            self.campaign.save(self.cdir)
        except DiskFull as e:
            raise self._disk_full(planned, result.error if outcome.disk_full else str(e)) from None
        if outcome.disk_full:
            raise self._disk_full(planned, result.error)
        self.ctx.progress.run_finished(planned.run_id, result.status, _detail(result))
        if result.status == "interrupted" and stop_if_interrupted:
            raise CampaignInterrupted(f"interrupted during {planned.run_id}; results so far are in {self.cdir}")
        return result

    def _disk_full(self, planned: CampaignRun, what: str | None) -> CampaignDiskFull:
        return CampaignDiskFull(f"{what} ({planned.run_id}); the results so far are kept in {self.cdir}: free "
                                f"space, then nanochat-bench run --resume {self.cdir}")

    def _result(self, req: RunRequest, planned: CampaignRun, adapter: Adapter, out: ProcessOutcome,
                started: str, lockstep: ArmProcess | None = None) -> RunResult:
        try:
            arm = adapter.finish(req, out.events, out.returncode)
        except AdapterError as e:   # e.g. upstream's log no longer parses: the run failed, whatever its exit code
            arm = Outcome()
            if out.status == "ok":
                out.status, out.error = "failed", str(e)
        if lockstep is not None:    # the arm's own record is final now: take the harness's pauses out of it
            unpause(req.events_path, lockstep, out)
        events, status, error = _final_events(req, out)
        provenance = Provenance(**{**vars(self.ctx.provenance), **_provenance_patch(adapter, started)})
        summary = summarize(req.budget, events, out.samples, wall_time_s=out.wall_time_s,
                            eval_memory=out.eval_memory, peak=self.ctx.peak, first_step_s=out.first_step_s,
                            trainer_hwm_bytes=out.trainer_hwm_bytes, helper_hwm_bytes=out.helper_hwm_bytes)
        rel = f"runs/{planned.run_id}"
        return RunResult(
            run_id=planned.run_id, implementation=planned.implementation, seed=planned.seed, repeat=planned.repeat,
            status=status, budget=req.budget.to_dict(), provenance=provenance, data=self.ctx.data, summary=summary,
            error=error, log_tail=out.log_tail if status != "ok" else None, audit=arm.audit,
            valid_for_parity=status == "ok" and not arm.audit, log_path=f"{rel}/log.txt",
            events_path=f"{rel}/events.jsonl", telemetry_path=f"{rel}/telemetry.jsonl",
            checkpoint_dir=_checkpoint_rel(req, events), phase=planned.phase,
            interference=interference.judge(out.samples), lockstep_paused_s=round(out.paused_s, 3) or None)


def _final_events(req: RunRequest, out: ProcessOutcome):
    """(events, status, error): the events file is the record; a clean exit without a final event is a failure."""
    try:
        events = read_events(req.events_path) if req.events_path.is_file() else list(out.events)
    except EventFormatError as e:
        return list(out.events), "failed", f"events.jsonl breaks the event contract: {e}"
    if out.status == "ok" and not any(isinstance(e, FinalEvent) for e in events):
        return events, "failed", "exited 0 but wrote no final event to events.jsonl (see docs/protocol.md)"
    if out.status == "ok" and (short := _short_of_budget(req.budget.iterations, events)):
        return events, "failed", short
    return events, out.status, out.error


def _short_of_budget(iterations: int, events) -> str | None:
    """Why an arm that exited 0 did not train the budget's steps (its final record and its step records)."""
    final = next(e for e in reversed(events) if isinstance(e, FinalEvent))
    last = max((e.step for e in events if isinstance(e, StepEvent)), default=-1)
    if final.steps != iterations or last + 1 != iterations:
        return (f"trained {last + 1} step(s) (final record says {final.steps}) of the budget's {iterations}; "
                f"an arm must run exactly num_iterations steps (docs/protocol.md)")
    return None


def _provenance_patch(adapter: Adapter, started: str) -> dict:
    facts = adapter.provenance()
    patch = {"utc_started": started, "utc_finished": prov.utc_now()}
    for key in ("upstream_sha", "upstream_ref", "upstream_clean", "upstream_revision", "ours_sha", "ours_dirty"):
        if key in facts:
            patch[key] = facts[key]
    return patch


def _checkpoint_rel(req: RunRequest, events) -> str | None:
    final = next((e for e in reversed(events) if isinstance(e, FinalEvent)), None)
    where = (final.extra or {}).get("checkpoint_dir") if final else None
    where = where or (str(req.checkpoint_dir) if req.checkpoint_dir and req.checkpoint_dir.exists() else None)
    if not where:
        return None
    try:
        return str(Path(where).resolve().relative_to(req.campaign_dir))
    except ValueError:
        return where


def _detail(r: RunResult) -> str:
    if r.status != "ok":
        return r.error or r.status
    s = r.summary
    bpb = f"{s.final_val_bpb:.4f}" if s.final_val_bpb is not None else "n/a"
    tps = f"{s.tokens_per_s:,.0f}" if s.tokens_per_s is not None else "n/a"
    return f"{tps} tok/s, final val bpb {bpb}, {s.wall_time_s:.0f} s"
