"""Statistics over repeats: the ratio candidate/baseline of one metric, its interval, and the verdict.

The unit of evidence is a repeat (one run of one arm). Campaigns interleave the arms (A B, B A, ...), so each
round's two runs are adjacent in time and share whatever drift the machine had then: they are analysed as a
*pair*. The ratio is the geometric mean of the per-pair ratios, and its 95 % interval is a Student t-interval
on the mean log-ratio over pairs, exponentiated (method ``"paired-t-log"``). Where pairing is impossible (runs
of one arm without a partner in the same round), the two arms are compared as independent samples: a Welch
t-interval on the difference of mean logs (``"welch-t-log"``). A percentile/BCa bootstrap of the ratio of means
stays available on request (``method="percentile"`` or ``"BCa"``), as before.

An interval is called a CI only from ``MIN_CI_REPEATS`` (3) pairs (or 3 runs per arm unpaired): with two, a
t-interval has one degree of freedom and a bootstrap only reproduces min/max ratios, so the result carries the
*range* of the observed ratios instead (``interval="range"``), no significance and no verdict word.

Two questions are kept apart, as the words say:
- ``significant``: the 95 % CI excludes 1 (statistically significant), else "inconclusive";
- ``beyond_threshold``: |ratio - 1| exceeds the practical threshold (2 % by default, printed with the result).
The verdict word (direction-aware: "faster"/"slower" for throughput and time, "better"/"worse" for memory or
BPB) is given only when both hold; otherwise it is ``"~"``, and ``words`` spells out which question failed.
Pure functions only.
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

PAIRED = "paired-t-log"
UNPAIRED = "welch-t-log"
BOOTSTRAP_METHODS = ("percentile", "BCa", "basic")
CI_METHOD = "t"                 # the default: PAIRED where pairs exist, UNPAIRED otherwise
CONFIDENCE = 0.95
PRACTICAL_THRESHOLD = 0.02
N_RESAMPLES = 9999
SEED = 20240917
MIN_REPEATS = 2                 # below this per arm (or pairs): a ratio only, no interval at all
MIN_CI_REPEATS = 3              # below this: the range of observed ratios, never called a CI


@dataclass
class SampleStats:
    """One arm's usable values of one metric."""
    n: int
    mean: float | None
    std: float | None          # sample standard deviation (ddof=1); None below 2 values
    values: list[float]


@dataclass
class RatioResult:
    """candidate/baseline for one metric: the ratio, its interval and the verdict."""
    ratio: float | None
    ci95: list[float] | None   # [low, high]: a confidence interval, only when interval == "ci"
    ci_method: str             # PAIRED, UNPAIRED or a bootstrap method: how the ratio and interval were made
    verdict: str | None        # up_word, down_word, "~", or None (no verdict; see reason)
    reason: str | None
    interval: str | None = None          # "ci" | "range" | None
    range: list[float] | None = None     # [min, max] of the observed ratios, when interval == "range"
    n_pairs: int | None = None           # pairs analysed (paired method); None when unpaired
    significant: bool | None = None      # the CI excludes 1; None without a CI
    beyond_threshold: bool | None = None  # |ratio - 1| > threshold
    threshold: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def describe(values: Sequence[float | None]) -> SampleStats:
    """Mean and sample std of the finite values (None/NaN are unmeasured and left out)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    mean = float(np.mean(vals)) if vals else None
    std = float(np.std(vals, ddof=1)) if len(vals) >= 2 else None
    return SampleStats(n=len(vals), mean=mean, std=std, values=vals)


def usable_pairs(pairs: Sequence[tuple[float | None, float | None]] | None) -> list[tuple[float, float]]:
    """(baseline, candidate) pairs with both values finite and positive (a log-ratio exists)."""
    out = []
    for b, c in pairs or []:
        if b is None or c is None:
            continue
        b, c = float(b), float(c)
        if math.isfinite(b) and math.isfinite(c) and b > 0 and c > 0:
            out.append((b, c))
    return out


def paired_log_t(pairs: Sequence[tuple[float, float]], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(ratio, low, high): geometric mean of c/b over pairs and the t-interval of the mean log-ratio."""
    d = np.log([c / b for b, c in pairs])
    if len(d) < 2:
        raise ValueError(f"a paired interval needs at least 2 pairs, got {len(d)}")
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    half = float(sps.t.ppf(0.5 + confidence / 2, len(d) - 1)) * sd / math.sqrt(len(d))
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)


def welch_log_t(baseline: Sequence[float], candidate: Sequence[float],
                confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(ratio, low, high): exp of the difference of mean logs and its Welch t-interval (independent samples)."""
    lb, lc = np.log(np.asarray(baseline, float)), np.log(np.asarray(candidate, float))
    nb, nc = len(lb), len(lc)
    if nb < 2 or nc < 2:
        raise ValueError(f"an unpaired interval needs at least 2 values per arm, got {nb} and {nc}")
    diff = float(lc.mean() - lb.mean())
    vb, vc = float(lb.var(ddof=1)) / nb, float(lc.var(ddof=1)) / nc
    se = math.sqrt(vb + vc)
    if se == 0:
        return math.exp(diff), math.exp(diff), math.exp(diff)
    df = (vb + vc) ** 2 / ((vb ** 2 / (nb - 1) if vb else 0.0) + (vc ** 2 / (nc - 1) if vc else 0.0))
    half = float(sps.t.ppf(0.5 + confidence / 2, df)) * se
    return math.exp(diff), math.exp(diff - half), math.exp(diff + half)


def ratio_of_means_ci(baseline: Sequence[float], candidate: Sequence[float], *, method: str = "percentile",
                      confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
                      seed: int = SEED) -> tuple[float, float]:
    """Bootstrap CI of mean(candidate)/mean(baseline), resampling each arm independently (on request only)."""
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
                    *, pairs: Sequence[tuple[float | None, float | None]] | None = None,
                    threshold: float = PRACTICAL_THRESHOLD, method: str = CI_METHOD,
                    seed: int = SEED) -> RatioResult:
    """Ratio, interval and verdict for one metric.

    ``pairs``: (baseline, candidate) values of the same round; when at least ``MIN_REPEATS`` of them are usable
    the paired analysis is used, otherwise the arms are compared as independent samples."""
    b, c = describe(baseline), describe(candidate)
    if b.mean is None or c.mean is None:
        return RatioResult(None, None, method, None, _missing_reason(b, c), threshold=threshold)
    if b.mean == 0:
        return RatioResult(None, None, method, None, "baseline mean is 0: the ratio is undefined",
                           threshold=threshold)
    if method in BOOTSTRAP_METHODS:
        return _bootstrap(b, c, direction, threshold, method, seed)
    if method != CI_METHOD:
        raise ValueError(f"method={method!r}: use {CI_METHOD!r} (paired/Welch t on log ratios) or one of "
                         f"{BOOTSTRAP_METHODS}")
    good = usable_pairs(pairs)
    if len(good) >= MIN_REPEATS:
        return _paired(good, direction, threshold)
    return _unpaired(b, c, direction, threshold)


def _paired(pairs: list[tuple[float, float]], direction: Direction, threshold: float) -> RatioResult:
    n = len(pairs)
    ratios = [c / b for b, c in pairs]
    if n < MIN_CI_REPEATS:
        ratio = math.exp(float(np.mean(np.log(ratios))))
        return _range_result(ratio, ratios, PAIRED, n, threshold)
    ratio, lo, hi = paired_log_t(pairs)
    return _ci_result(ratio, lo, hi, PAIRED, n, direction, threshold)


def _unpaired(b: SampleStats, c: SampleStats, direction: Direction, threshold: float) -> RatioResult:
    positive = all(v > 0 for v in b.values + c.values)
    if b.n < MIN_REPEATS or c.n < MIN_REPEATS or not positive:
        why = (f"fewer than {MIN_REPEATS} ok repeats per arm (baseline {b.n}, candidate {c.n}): no interval, "
               f"no verdict") if positive else "a value <= 0: no log-ratio interval"
        return RatioResult(c.mean / b.mean, None, UNPAIRED, None, why, threshold=threshold)
    if min(b.n, c.n) < MIN_CI_REPEATS:
        ratio = math.exp(float(np.mean(np.log(c.values)) - np.mean(np.log(b.values))))
        ratios = [min(c.values) / max(b.values), max(c.values) / min(b.values)]
        return _range_result(ratio, ratios, UNPAIRED, None, threshold)
    ratio, lo, hi = welch_log_t(b.values, c.values)
    return _ci_result(ratio, lo, hi, UNPAIRED, None, direction, threshold)


def _range_result(ratio: float, ratios: list[float], method: str, n_pairs: int | None,
                  threshold: float) -> RatioResult:
    n = n_pairs if n_pairs is not None else "2 per arm"
    return RatioResult(ratio, None, method, None,
                       f"range only, n={n}: a CI needs at least {MIN_CI_REPEATS} repeats per arm",
                       interval="range", range=[min(ratios), max(ratios)], n_pairs=n_pairs,
                       beyond_threshold=abs(ratio - 1.0) > threshold, threshold=threshold)


def _ci_result(ratio: float, lo: float, hi: float, method: str, n_pairs: int | None, direction: Direction,
               threshold: float) -> RatioResult:
    return RatioResult(ratio, [lo, hi], method, verdict_for(ratio, lo, hi, direction, threshold), None,
                       interval="ci", n_pairs=n_pairs, significant=lo > 1.0 or hi < 1.0,
                       beyond_threshold=abs(ratio - 1.0) > threshold, threshold=threshold)


def _bootstrap(b: SampleStats, c: SampleStats, direction: Direction, threshold: float, method: str,
               seed: int) -> RatioResult:
    ratio = c.mean / b.mean
    if b.n < MIN_REPEATS or c.n < MIN_REPEATS:
        why = f"fewer than {MIN_REPEATS} ok repeats per arm (baseline {b.n}, candidate {c.n}): no CI, no verdict"
        return RatioResult(ratio, None, method, None, why, threshold=threshold)
    try:
        lo, hi = ratio_of_means_ci(b.values, c.values, method=method, seed=seed)
    except ValueError as e:
        return RatioResult(ratio, None, method, None, str(e), threshold=threshold)
    if min(b.n, c.n) < MIN_CI_REPEATS:
        return _range_result(ratio, [lo, hi], method, None, threshold)
    return _ci_result(ratio, lo, hi, method, None, direction, threshold)


def verdict_for(ratio: float, lo: float, hi: float, direction: Direction,
                threshold: float = PRACTICAL_THRESHOLD) -> str:
    """A direction word only if the CI excludes 1 (significant) and the change is beyond the practical threshold."""
    significant = lo > 1.0 or hi < 1.0
    if not significant or abs(ratio - 1.0) <= threshold:
        return "~"
    went_up = ratio > 1.0
    return direction.up_word if went_up == direction.higher_is_better else direction.down_word


def judgement(verdict: str | None, interval: str | None, significant: bool | None,
              beyond_threshold: bool | None, threshold: float | None) -> str:
    """The verdict in words, keeping "statistically significant", "beyond the practical threshold" and
    "inconclusive" apart; the threshold is printed."""
    thr = f"{threshold:.0%}".replace("%", " %") if threshold is not None else "practical"
    if interval == "range":
        return "inconclusive (range only: too few repeats for a CI)"
    if interval != "ci" or significant is None:
        return "no verdict"
    if not significant:
        return "inconclusive (the 95 % CI includes 1)"
    if beyond_threshold:
        return f"{verdict}: statistically significant, beyond the {thr} practical threshold"
    return f"statistically significant, within the {thr} practical threshold"


def _ratio_statistic(c, b, axis=-1):
    return np.mean(c, axis=axis) / np.mean(b, axis=axis)


def _rng_kwarg(seed: int) -> dict:
    # scipy >= 1.15 takes rng=; older releases only random_state= (pyproject allows scipy >= 1.11)
    params = inspect.signature(sps.bootstrap).parameters
    return {"rng": np.random.default_rng(seed)} if "rng" in params else {"random_state": np.random.default_rng(seed)}


def _missing_reason(b: SampleStats, c: SampleStats) -> str:
    sides = [name for name, s in (("baseline", b), ("candidate", c)) if s.mean is None]
    return f"not measured in any ok run of the {' and '.join(sides)}"
