"""The comparison of a campaign's arms as typed records, and its one serialisation (``to_dict`` / ``from_dict``).

harness/compare.py computes a ``Comparison``; campaign.json stores ``to_dict()`` under "comparison"; the report,
the parity verb and the README read it back with ``from_dict``. Every value is a number, a bool, None or a plain
word: formatting happens only in the report layer. ``schema_version`` 2 adds, per metric, how the interval was
made (``interval`` "ci" or "range", ``range``, ``n_pairs``, ``significant``, ``beyond_threshold``, ``threshold``)
and, for the whole campaign, the disturbed runs, the noise floor and ``targets`` (matched quality,
harness/targets.py: the target BPB and how it was chosen, each run's reach, the compute multipliers, which runs
did not reach it; absent before issue 14, read back as None); a version-1 comparison (bootstrap CIs, from
before) still reads back, those fields None. The budget audit and the exact-parity check keep
their own shapes (harness/audit.py, harness/parity.py) and ride along as dicts.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from harness.stats import SampleStats

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)


class ComparisonFormatError(ValueError):
    """A stored comparison this version cannot read; the message names the missing field and the fix."""


@dataclass
class MetricComparison:
    """One metric: each arm's ok-run values, the ratio candidate/baseline with its CI, and the verdict."""
    label: str
    unit: str
    better: str                            # "higher" | "lower"
    words: list[str]                       # [word for a clear gain, word for a clear loss]
    baseline: SampleStats
    candidate: SampleStats
    ratio: float | None = None
    ci95: list[float] | None = None
    ci_method: str | None = None
    verdict: str | None = None             # "faster" | "slower" | "better" | "worse" | "~" | None (see reason)
    reason: str | None = None
    interval: str | None = None            # "ci" (a 95 % CI in ci95) | "range" (too few repeats: range) | None
    range: list[float] | None = None       # [min, max] observed ratio when interval == "range"
    n_pairs: int | None = None             # adjacent (candidate, baseline) pairs analysed; None = unpaired
    significant: bool | None = None        # the CI excludes 1
    beyond_threshold: bool | None = None   # |ratio - 1| > threshold
    threshold: float | None = None         # the practical threshold the verdict used


@dataclass
class BpbParity:
    """Is the candidate's mean final val BPB within ``tolerance_rel`` of the baseline's?"""
    metric: str
    tolerance_rel: float
    baseline_mean: float | None = None
    candidate_mean: float | None = None
    rel_diff: float | None = None
    within: bool | None = None
    reason: str | None = None


@dataclass
class FailedRun:
    run_id: str
    implementation: str
    seed: int
    repeat: int
    status: str
    error: str | None = None


@dataclass
class Comparison:
    """The whole comparison (field order = key order in campaign.json)."""
    baseline: str
    candidate: str | None                  # None: only one arm ran
    ratio: str | None                      # "candidate/baseline", e.g. "ours/upstream"
    statistics: dict                       # how the CIs were made: method, confidence, resamples, seed, threshold
    arms: dict                             # {impl: {"ok": [run_id], "not_ok": [run_id]}}
    metrics: dict[str, MetricComparison]   # every compared metric of harness/metrics.py, in registry order
    bpb_parity: BpbParity | None           # None only in a stored comparison that lacks it
    audit: dict                            # harness.audit.audit_runs; shape in its docstring
    failed_runs: list[FailedRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    parity: dict | None = None             # harness.parity.compare_runs (CPU, both arms); absent when None
    headline: str = ""                     # one line for terminals
    disturbed_runs: list[str] = field(default_factory=list)   # runs marked disturbed (harness/interference.py)
    noise_floor: dict | None = None        # the latest A/A campaign of this preset on this machine, if known
    targets: dict | None = None            # matched quality (harness/targets.py): target BPB, per-run reach, CM
    schema_version: int = SCHEMA_VERSION

    def metric(self, name: str) -> MetricComparison | None:
        return self.metrics.get(name)

    def to_dict(self) -> dict:
        d = {"schema_version": self.schema_version}
        d.update((f.name, getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "schema_version")
        if self.parity is None:
            del d["parity"]
        return json_safe(d)

    @classmethod
    def from_dict(cls, d: dict, where: str = "campaign.json comparison") -> "Comparison":
        version = d.get("schema_version", SCHEMA_VERSION)
        if version not in READABLE_VERSIONS:
            raise ComparisonFormatError(f"{where} has schema_version {version!r}, this nanochat-bench reads "
                                        f"{' or '.join(map(str, READABLE_VERSIONS))}: compare the campaign again (nanochat-bench report "
                                        f"--recompare)")
        metrics = _need(d, "metrics", where)
        bpb = d.get("bpb_parity") or {}
        return cls(
            baseline=d.get("baseline"), candidate=d.get("candidate"), ratio=d.get("ratio"),
            statistics=d.get("statistics") or {}, arms=d.get("arms") or {},
            metrics={name: _metric(m) for name, m in metrics.items()},
            bpb_parity=BpbParity(**{k: bpb.get(k) for k in _names(BpbParity)}) if bpb else None,
            audit=d.get("audit"), failed_runs=[FailedRun(**{k: r.get(k) for k in _names(FailedRun)})
                                               for r in d.get("failed_runs") or []],
            notes=list(d.get("notes") or []), parity=d.get("parity"), headline=d.get("headline") or "",
            disturbed_runs=list(d.get("disturbed_runs") or []), noise_floor=d.get("noise_floor"),
            targets=d.get("targets"), schema_version=version)


def _need(d: dict, key: str, where: str):
    if key not in d:
        raise ComparisonFormatError(f"{where} has no {key!r}; the campaign was compared by another version: "
                                    f"compare the campaign again with this nanochat-bench version")
    return d[key]


def _names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _sample(d: dict | None) -> SampleStats:
    d = d or {}
    return SampleStats(n=d.get("n", 0), mean=d.get("mean"), std=d.get("std"), values=list(d.get("values") or []))


def _metric(d: dict) -> MetricComparison:
    plain = {k: d.get(k) for k in _names(MetricComparison) if k not in ("baseline", "candidate")}
    return MetricComparison(**plain, baseline=_sample(d.get("baseline")), candidate=_sample(d.get("candidate")))


def json_safe(value: Any) -> Any:
    """Recursively: dataclasses -> dicts, non-finite floats -> None, numpy scalars -> Python numbers, tuples -> lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
