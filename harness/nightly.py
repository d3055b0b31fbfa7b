"""The nightly regression check: run a preset against upstream's latest commit, store it in the history, and flag
each metric that moved outside the noise of its own history.

``nanochat-bench nightly`` (``make nightly``, harness/commands/nightly.py) holds a lock (a second nightly exits 3 at once), runs the campaign
through the harness runner (upstream at the head of its default branch unless --upstream-ref says otherwise),
records it in the history database, judges it with ``check_campaign`` (a function of the database alone), writes
the report and nightly.json beside the results, and exits 0 (no regression), 1 (regressions, each named with its
old and new value), 3 (another nightly holds the lock), 4 (runs failed: nothing trustworthy to judge) or 5 (upstream
changed in a way the harness does not know: upstream/revision.py refused the revision before any data or run).
``--check CAMPAIGN_DIR`` judges a campaign that already ran, without running anything.

The rule: for each metric and implementation, the last ``window`` earlier campaigns of the same preset on the same machine
give a centre (median) and a spread (1.4826 × median absolute deviation, a robust standard deviation). The new
value regresses when it is worse than the centre by more than ``max(k × spread, min_rel × |centre|)``: a noisy
metric needs a bigger change to be flagged, a quiet one cannot trip on a change too small to matter. With fewer
than ``min_history`` earlier campaigns a metric is not judged (and the check says so).

The A/A noise floor: where the history holds an A/A campaign of the same preset and machine (``--impl ours,ours``:
implementations ``X`` and ``X:aa``), the relative difference between its two sides is the noise of one campaign of
that preset on that machine; the allowed change is then never below ``aa_factor`` × that difference × |centre|.
"""
from __future__ import annotations

import math
import statistics
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness import metrics as metric_registry
from harness.history import History, Point
from harness.lock import Locked, exclusive
from harness.results import Campaign
from protocol.files import write_json_atomic

EXIT_OK, EXIT_REGRESSED, EXIT_LOCKED, EXIT_RUNS_FAILED = 0, 1, 3, 4
# upstream's revision differs in a way the harness does not know (upstream/revision.py refused it before any run)
EXIT_UPSTREAM_CHANGED = 5

MAD_TO_SIGMA = 1.4826  # MAD × this estimates the standard deviation of normally distributed noise


@dataclass(frozen=True)
class Rule:
    window: int = 10      # earlier campaigns to compare with
    k: float = 4.0        # allowed deviation in robust standard deviations
    min_rel: float = 0.03  # and never less than this relative change
    min_history: int = 3  # fewer earlier campaigns: the metric is not judged
    aa_factor: float = 2.0  # allowed change >= this x the A/A campaign's relative difference, where one exists

    def __post_init__(self):
        if self.window < 1 or self.min_history < 2 or self.min_history > self.window:
            raise ValueError(f"nightly rule window={self.window}, min_history={self.min_history}: "
                             f"need 2 <= min_history <= window")
        if not (math.isfinite(self.k) and self.k > 0) or not 0 <= self.min_rel < 1:
            raise ValueError(f"nightly rule k={self.k}, min_rel={self.min_rel}: need a finite k > 0 and 0 <= min_rel < 1")


@dataclass
class Finding:
    """One metric of one implementation, judged against its history."""
    metric: str
    implementation: str
    new: float
    centre: float
    allowed: float        # how far from the centre a value may be (worse side) before it regresses
    history: list[float]
    regressed: bool
    noise_floor_rel: float | None = None   # the latest A/A campaign's relative difference for this metric

    def line(self) -> str:
        change = (self.new - self.centre) / self.centre * 100 if self.centre else float("inf")
        return (f"{self.metric} ({self.implementation}): {_num(self.centre)} -> {_num(self.new)} "
                f"({change:+.1f} %; allowed ±{_num(self.allowed)}, median of {len(self.history)} earlier campaigns)")


@dataclass
class CheckResult:
    campaign_id: str
    preset: str
    machine: str
    rule: Rule
    findings: list[Finding] = field(default_factory=list)
    not_judged: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Finding]:
        return [f for f in self.findings if f.regressed]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["regressions"] = [f.line() for f in self.regressions]
        return d


def judge(history: list[float], new: float, higher_is_better: bool, rule: Rule,
          noise_floor_rel: float | None = None) -> tuple[bool, float, float]:
    """(regressed, centre, allowed) of ``new`` against ``history`` (oldest first) under ``rule``; an A/A noise
    floor (relative) widens ``allowed`` to at least ``rule.aa_factor`` times it."""
    recent = history[-rule.window:]
    centre = statistics.median(recent)
    spread = MAD_TO_SIGMA * statistics.median(abs(v - centre) for v in recent)
    allowed = max(rule.k * spread, rule.min_rel * abs(centre),
                  rule.aa_factor * (noise_floor_rel or 0.0) * abs(centre))
    worse_by = (centre - new) if higher_is_better else (new - centre)
    return worse_by > allowed, centre, allowed


def check_campaign(db: History, campaign_id: str, rule: Rule = Rule(),
                   metrics: tuple[str, ...] | None = None) -> CheckResult:
    """Judge every metric of ``campaign_id`` against earlier campaigns of its preset and machine in ``db``.
    ``metrics``: names to judge; default the metrics tracked "nightly" in harness/metrics.py."""
    metrics = tuple(m.name for m in metric_registry.tracked("nightly")) if metrics is None else metrics
    info = db.campaign(campaign_id)
    result = CheckResult(campaign_id, info["preset"], info["machine"], rule)
    points = [p for p in db.points(preset=info["preset"], machine=info["machine"]) if p.metric in metrics]
    order = _campaign_order(points)
    if campaign_id not in order:
        result.not_judged.append(f"campaign {campaign_id} has no ok run with metrics: nothing to judge")
        return result
    earlier = set(order[:order.index(campaign_id)])
    noise = aa_noise_floor(points)
    for (impl, metric), pts in sorted(_by_series(points).items()):
        _judge_series(result, impl, metric, pts, earlier, rule, noise.get(metric))
    return result


def aa_noise_floor(points: list[Point]) -> dict[str, float]:
    """metric -> |X:aa / X - 1| in the latest A/A campaign among ``points`` (arms ``X`` and ``X:aa``)."""
    out: dict[str, float] = {}
    by_campaign: dict[str, dict[tuple[str, str], float]] = {}
    for p in points:   # oldest first: a later A/A campaign overwrites an earlier one
        by_campaign.setdefault(p.campaign_id, {})[(p.implementation, p.metric)] = p.value
    for values in by_campaign.values():
        for (impl, metric), v in values.items():
            if impl.endswith(":aa"):
                base = values.get((impl[:-3], metric))
                if base:
                    out[metric] = abs(v / base - 1.0)
    return out


def _judge_series(result: CheckResult, impl: str, metric: str, pts: list[Point], earlier: set, rule: Rule,
                  noise_floor_rel: float | None = None) -> None:
    new = next((p.value for p in pts if p.campaign_id == result.campaign_id), None)
    if new is None:
        return
    history = [p.value for p in pts if p.campaign_id in earlier][-rule.window:]
    if len(history) < rule.min_history:
        result.not_judged.append(f"{metric} ({impl}): {len(history)} earlier campaign(s), "
                                 f"need {rule.min_history} to judge")
        return
    regressed, centre, allowed = judge(history, new, metric_registry.get(metric).higher_is_better, rule,
                                       noise_floor_rel)
    result.findings.append(Finding(metric, impl, new, centre, allowed, history, regressed, noise_floor_rel))


def _campaign_order(points: list[Point]) -> list[str]:
    order: list[str] = []
    for p in points:  # points come oldest first
        if p.campaign_id not in order:
            order.append(p.campaign_id)
    return order


def _by_series(points: list[Point]) -> dict[tuple[str, str], list[Point]]:
    groups: dict[tuple[str, str], list[Point]] = {}
    for p in points:
        groups.setdefault((p.implementation, p.metric), []).append(p)
    return groups


def _num(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}"


# ---------------------------------------------------------------- the lock

class NightlyLocked(RuntimeError):
    """Another nightly holds the lock."""


@contextmanager
def nightly_lock(path: str | Path):
    """An exclusive, non-blocking flock on ``path``; the kernel frees it when the holder exits, even on a crash."""
    try:
        with exclusive(path, "another nightly is running"):
            yield Path(path)
    except Locked as e:
        raise NightlyLocked(str(e)) from None


# ---------------------------------------------------------------- the run

def verdict_path(campaign_dir: Path, checked: bool) -> Path:
    """Where the judgement goes: ``<id>/nightly.json`` inside a campaign nightly ran itself; beside a campaign it
    only checks (``--check``), as ``<id>.nightly.json`` next to the folder, so a checked campaign stays as it was."""
    campaign_dir = Path(campaign_dir)
    return campaign_dir.parent / f"{campaign_dir.resolve().name}.nightly.json" if checked else \
        campaign_dir / "nightly.json"


def judge_campaign_dir(campaign_dir: Path, db_path: Path, rule: Rule, out: Path | None = None
                       ) -> tuple[int, list[str]]:
    """Record a finished campaign, judge it, write the judgement to ``out`` (default ``verdict_path(campaign_dir,
    False)``): (exit code, lines to print)."""
    campaign = Campaign.load(campaign_dir)
    failed = [r for r in campaign.runs if r.status != "ok"]
    with History(db_path) as db:
        cid = db.record_campaign(campaign_dir)
        result = check_campaign(db, cid, rule)
    out = out or verdict_path(campaign_dir, checked=False)
    write_json_atomic(out, result.to_dict())
    lines = [f"nightly {cid} ({result.preset} on {result.machine}): {len(result.findings)} metric(s) judged",
             f"judgement: {out}"]
    lines += [f"REGRESSION {f.line()}" for f in result.regressions]
    lines += [f"not judged: {n}" for n in result.not_judged]
    lines += [f"FAILED run {r.run_id} ({r.implementation}): {r.status}" for r in failed]
    if failed:
        return EXIT_RUNS_FAILED, lines
    return (EXIT_REGRESSED if result.regressions else EXIT_OK), lines
