"""Statistics over repeats: the bootstrap CI of a ratio of means and the per-metric verdict.

The ratio is candidate/baseline (ours/upstream by default). Its 95 % CI comes from
``scipy.stats.bootstrap`` over the two independent samples (``paired=False``), seeded so a
report re-rendered tomorrow shows the same interval. The default method is the *percentile*
bootstrap: BCa needs a jackknife acceleration estimate, which is unstable (often NaN) with the
2-5 repeats a campaign can afford; the method is recorded next to every interval.

The verdict follows asv's rule: a change is reported only when it is statistically clear (the CI
excludes 1) AND practically relevant (|ratio - 1| above a small threshold, 2 % by default);
otherwise it is ``"~"``. The words are direction-aware: throughput gets "faster"/"slower", a
lower-is-better quantity such as memory or BPB gets "better"/"worse". Fewer than two usable
repeats on either side gives no verdict (``None``) and a reason. Pure functions only.
"""
from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from scipy import stats as sps

from harness.metrics import Direction

CI_METHOD = "percentile"
CONFIDENCE = 0.95
PRACTICAL_THRESHOLD = 0.02
N_RESAMPLES = 9999
SEED = 20240917
MIN_REPEATS = 2


@dataclass
class SampleStats:
    """One arm's usable values of one metric."""
    n: int
    mean: float | None
    std: float | None          # sample standard deviation (ddof=1); None below 2 values
    values: list[float]


@dataclass
class RatioResult:
    """candidate/baseline for one metric: the ratio of means, its CI and the verdict."""
    ratio: float | None
    ci95: list[float] | None   # [low, high]
    ci_method: str
    verdict: str | None        # up_word, down_word, "~", or None (no verdict; see reason)
    reason: str | None

    def to_dict(self) -> dict:
        return asdict(self)


def describe(values: Sequence[float | None]) -> SampleStats:
    """Mean and sample std of the finite values (None/NaN are unmeasured and left out)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    mean = float(np.mean(vals)) if vals else None
    std = float(np.std(vals, ddof=1)) if len(vals) >= 2 else None
    return SampleStats(n=len(vals), mean=mean, std=std, values=vals)


def ratio_of_means_ci(baseline: Sequence[float], candidate: Sequence[float], *, method: str = CI_METHOD,
                      confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
                      seed: int = SEED) -> tuple[float, float]:
    """Bootstrap CI of mean(candidate)/mean(baseline), resampling each arm independently."""
    b, c = np.asarray(baseline, dtype=float), np.asarray(candidate, dtype=float)
    if len(b) < MIN_REPEATS or len(c) < MIN_REPEATS:
        raise ValueError(f"bootstrap needs at least {MIN_REPEATS} values per arm, got {len(b)} and {len(c)}")
    if b.mean() == 0:
        raise ValueError("baseline mean is 0: the ratio of means is undefined")
    if np.all(c == c[0]) and np.all(b == b[0]):
        r = float(c[0] / b[0])  # no spread at all: every resample gives the same ratio
        return r, r
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on degenerate resamples; we check the result below
        res = sps.bootstrap((c, b), _ratio_statistic, paired=False, vectorized=True, axis=-1,
                            confidence_level=confidence, n_resamples=n_resamples, method=method,
                            **_rng_kwarg(seed))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        hint = "; try method='percentile'" if method != "percentile" else " (a resample with a zero baseline mean)"
        raise ValueError(f"the {method} bootstrap gave a non-finite interval ({lo}, {hi}){hint}")
    return lo, hi


def compare_samples(baseline: Sequence[float | None], candidate: Sequence[float | None], direction: Direction,
                    *, threshold: float = PRACTICAL_THRESHOLD, method: str = CI_METHOD,
                    seed: int = SEED) -> RatioResult:
    """Ratio, CI and verdict for one metric; no verdict below two usable repeats per arm."""
    b, c = describe(baseline), describe(candidate)
    if b.mean is None or c.mean is None:
        return RatioResult(None, None, method, None, _missing_reason(b, c))
    if b.mean == 0:
        return RatioResult(None, None, method, None, "baseline mean is 0: the ratio is undefined")
    ratio = c.mean / b.mean
    if b.n < MIN_REPEATS or c.n < MIN_REPEATS:
        why = f"fewer than {MIN_REPEATS} ok repeats per arm (baseline {b.n}, candidate {c.n}): no CI, no verdict"
        return RatioResult(ratio, None, method, None, why)
    try:
        lo, hi = ratio_of_means_ci(b.values, c.values, method=method, seed=seed)
    except ValueError as e:
        return RatioResult(ratio, None, method, None, str(e))
    return RatioResult(ratio, [lo, hi], method, verdict_for(ratio, lo, hi, direction, threshold), None)


def verdict_for(ratio: float, lo: float, hi: float, direction: Direction,
                threshold: float = PRACTICAL_THRESHOLD) -> str:
    """asv's rule: a word only if the CI excludes 1 and the change is beyond the practical threshold."""
    significant = lo > 1.0 or hi < 1.0
    if not significant or abs(ratio - 1.0) <= threshold:
        return "~"
    went_up = ratio > 1.0
    return direction.up_word if went_up == direction.higher_is_better else direction.down_word


def _ratio_statistic(c, b, axis=-1):
    return np.mean(c, axis=axis) / np.mean(b, axis=axis)


def _rng_kwarg(seed: int) -> dict:
    # scipy >= 1.15 takes rng=; older releases only random_state= (pyproject allows scipy >= 1.11)
    params = inspect.signature(sps.bootstrap).parameters
    return {"rng": np.random.default_rng(seed)} if "rng" in params else {"random_state": np.random.default_rng(seed)}


def _missing_reason(b: SampleStats, c: SampleStats) -> str:
    sides = [name for name, s in (("baseline", b), ("candidate", c)) if s.mean is None]
    return f"not measured in any ok run of the {' and '.join(sides)}"
