"""The nightly regression rule: is a new campaign's metric outside the noise of its own history?

For each metric and implementation, the last ``window`` earlier campaigns of the same preset on the same machine
give a centre (median) and a spread (1.4826 × median absolute deviation, a robust standard deviation). The new
value regresses when it is worse than the centre by more than ``max(k × spread, min_rel × |centre|)``: a noisy
metric needs a bigger change to be flagged, a quiet one cannot trip on a change too small to matter. With fewer
than ``min_history`` earlier campaigns a metric is not judged (and the check says so).
"""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field

from harness.history import METRICS, History, Point

MAD_TO_SIGMA = 1.4826  # MAD × this estimates the standard deviation of normally distributed noise
NIGHTLY_METRICS = ("tokens_per_s", "final_val_bpb", "peak_rss_bytes", "peak_gpu_mem_bytes",
                   "torch_peak_mem_bytes", "energy_per_token_j")


@dataclass(frozen=True)
class Rule:
    window: int = 10      # earlier campaigns to compare with
    k: float = 4.0        # allowed deviation in robust standard deviations
    min_rel: float = 0.03  # and never less than this relative change
    min_history: int = 3  # fewer earlier campaigns: the metric is not judged

    def __post_init__(self):
        if self.window < 1 or self.min_history < 2 or self.min_history > self.window:
            raise ValueError(f"nightly rule window={self.window}, min_history={self.min_history}: "
                             f"need 2 <= min_history <= window")
        if self.k <= 0 or not 0 <= self.min_rel < 1:
            raise ValueError(f"nightly rule k={self.k}, min_rel={self.min_rel}: need k > 0 and 0 <= min_rel < 1")


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


def judge(history: list[float], new: float, higher_is_better: bool, rule: Rule) -> tuple[bool, float, float]:
    """(regressed, centre, allowed) of ``new`` against ``history`` (oldest first) under ``rule``."""
    recent = history[-rule.window:]
    centre = statistics.median(recent)
    spread = MAD_TO_SIGMA * statistics.median(abs(v - centre) for v in recent)
    allowed = max(rule.k * spread, rule.min_rel * abs(centre))
    worse_by = (centre - new) if higher_is_better else (new - centre)
    return worse_by > allowed, centre, allowed


def check_campaign(db: History, campaign_id: str, rule: Rule = Rule(),
                   metrics: tuple[str, ...] = NIGHTLY_METRICS) -> CheckResult:
    """Judge every metric of ``campaign_id`` against earlier campaigns of its preset and machine in ``db``."""
    info = db.campaign(campaign_id)
    result = CheckResult(campaign_id, info["preset"], info["machine"], rule)
    points = [p for p in db.points(preset=info["preset"], machine=info["machine"]) if p.metric in metrics]
    order = _campaign_order(points)
    if campaign_id not in order:
        result.not_judged.append(f"campaign {campaign_id} has no ok run with metrics: nothing to judge")
        return result
    earlier = set(order[:order.index(campaign_id)])
    for (impl, metric), pts in sorted(_by_series(points).items()):
        _judge_series(result, impl, metric, pts, earlier, rule)
    return result


def _judge_series(result: CheckResult, impl: str, metric: str, pts: list[Point], earlier: set, rule: Rule) -> None:
    new = next((p.value for p in pts if p.campaign_id == result.campaign_id), None)
    if new is None:
        return
    history = [p.value for p in pts if p.campaign_id in earlier][-rule.window:]
    if len(history) < rule.min_history:
        result.not_judged.append(f"{metric} ({impl}): {len(history)} earlier campaign(s), "
                                 f"need {rule.min_history} to judge")
        return
    regressed, centre, allowed = judge(history, new, METRICS[metric] == "higher", rule)
    result.findings.append(Finding(metric, impl, new, centre, allowed, history, regressed))


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
