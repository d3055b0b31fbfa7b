"""Two campaigns side by side: for each arm they share, every compared metric of B against A (ratio B ÷ A, CI,
verdict), the way asv compare and pytest-benchmark's compare-fail judge two versions.

Only like with like: both campaigns must have the same preset, budget and machine identity (CPU model and count,
GPU, torch), because a ratio across machines or budgets measures the machine, not the change. Runs are the unit:
the ok measured runs (warm-up runs left out) of one arm in A are one sample, in B the other (independent samples:
the two campaigns ran apart).
Matched-quality metrics (time/tokens/FLOPs to target, harness/targets.py) are read at one target BPB for both
campaigns: the one given, else A's (its stored comparison's target), recomputed from the stored events.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness import metrics as metric_registry
from harness import stats
from harness.frames import runs_frame
from harness.results import Campaign

IDENTITY = ("cpu_model", "cpu_count", "gpu_name", "torch")   # what must match for B ÷ A to mean anything


class DiffError(ValueError):
    """Two campaigns that cannot be compared, or an arm or metric that is not in both."""


@dataclass(frozen=True)
class MetricDiff:
    implementation: str
    metric: str
    label: str
    a_mean: float | None
    b_mean: float | None
    n: tuple[int, int]
    result: stats.RatioResult
    regressed: bool              # clearly worse and beyond the threshold


def diff_campaigns(a: Path, b: Path, *, implementations: list[str] | None = None,
                   metric_names: list[str] | None = None,
                   threshold: float = stats.PRACTICAL_THRESHOLD,
                   target_bpb: float | None = None) -> list[MetricDiff]:
    runs_a, runs_b = _ok_runs(a), _ok_runs(b)
    _check_like_with_like(a, runs_a, b, runs_b)
    target = target_bpb if target_bpb is not None else _stored_target(a)
    runs_a, runs_b = _at_target(a, runs_a, target), _at_target(b, runs_b, target)
    shared = sorted(set(runs_a.implementation) & set(runs_b.implementation))
    arms = implementations or shared
    missing = sorted(set(arms) - set(shared))
    if missing:
        raise DiffError(f"--impl {','.join(missing)}: not an ok arm of both campaigns (shared: {', '.join(shared)})")
    chosen = [metric_registry.get(n) for n in metric_names] if metric_names else metric_registry.compared()
    rows = []
    for impl in arms:
        sa, sb = runs_a[runs_a.implementation == impl], runs_b[runs_b.implementation == impl]
        for m in chosen:
            va, vb = _values(sa, m.name), _values(sb, m.name)
            r = stats.compare_samples(va, vb, m.direction, threshold=threshold)
            da, db = stats.describe(va), stats.describe(vb)
            if da.n == db.n == 0:
                continue   # measured by neither (e.g. GPU memory on a CPU machine)
            rows.append(MetricDiff(impl, m.name, m.label, da.mean, db.mean, (da.n, db.n), r,
                                   regressed=r.verdict == m.direction.down_word))
    return rows


def _stored_target(path: Path) -> float | None:
    return ((Campaign.load(path).comparison or {}).get("targets") or {}).get("target_bpb")


def _at_target(path: Path, runs, target: float | None):
    """``runs`` with the per-target metrics recomputed at ``target`` (None: as stored), nothing saved."""
    if target is None:
        return runs
    from harness.compare import compare_campaign_dir   # scipy: only when a target is in play
    per_run = (compare_campaign_dir(path, save=False, target_bpb=target).targets or {}).get("runs") or {}
    runs = runs.copy()
    for m in metric_registry.all_metrics():
        if m.per_target:
            runs[m.name] = [(per_run.get(rid) or {}).get(m.name) for rid in runs.run_id]
    return runs


def _ok_runs(path: Path):
    runs = runs_frame(path)
    if runs.campaign_id.nunique() != 1:
        raise DiffError(f"{path}: holds {runs.campaign_id.nunique()} campaigns; give one campaign folder")
    # measured runs only: a warm-up run (phase "warmup") fills the compile cache and is never compared
    ok = runs[(runs.status == "ok") & (runs.phase.fillna("measure") == "measure")]
    if ok.empty:
        raise DiffError(f"{path}: no ok measured run to compare")
    return ok


def _check_like_with_like(a: Path, runs_a, b: Path, runs_b) -> None:
    for key in ("preset", *IDENTITY):
        va, vb = set(runs_a[key].dropna()), set(runs_b[key].dropna())
        if va != vb:
            raise DiffError(f"{a.name} and {b.name} differ in {key} ({_one(va)} vs {_one(vb)}): "
                            "compare campaigns of the same preset on the same machine")
    budget_cols = [c for c in runs_a.columns if c.startswith("budget.") and c in runs_b.columns
                   and c not in ("budget.run_timeout_s",)]
    for col in budget_cols:
        va, vb = set(map(str, runs_a[col])), set(map(str, runs_b[col]))
        if va != vb:
            raise DiffError(f"{a.name} and {b.name} ran different budgets ({col[7:]}: {_one(va)} vs {_one(vb)})")


def _values(frame, name: str) -> list[float | None]:
    return [None if v is None or v != v else float(v) for v in frame[name]] if name in frame else []


def _one(values: set) -> str:
    return ", ".join(sorted(map(str, values))) or "none"
