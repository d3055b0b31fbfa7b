"""Paired t-intervals on log-ratios, the unpaired fallback, the range below three repeats and the verdict words,
on samples whose answer is known."""
from __future__ import annotations

import math

import numpy as np
import pytest

from harness import stats
from harness.metrics import COST, DURATION, THROUGHPUT
from harness.stats import compare_samples, describe, judgement, ratio_of_means_ci, verdict_for


def test_clearly_separated_throughput_samples_are_faster():
    r = compare_samples([100.0, 101.0, 99.0], [120.0, 121.0, 119.0], THROUGHPUT)
    assert r.verdict == "faster" and r.interval == "ci" and r.ci_method == stats.UNPAIRED
    assert r.ratio == pytest.approx(1.2, rel=1e-3)
    assert r.ci95[0] <= r.ratio <= r.ci95[1] and r.ci95[0] > 1.0
    assert r.significant and r.beyond_threshold


def test_lower_throughput_is_slower_and_lower_time_is_faster():
    assert compare_samples([100.0, 101.0, 99.0], [80.0, 81.0, 79.0], THROUGHPUT).verdict == "slower"
    assert compare_samples([10.0, 10.1, 9.9], [8.0, 8.1, 7.9], DURATION).verdict == "faster"


def test_lower_is_better_metrics_say_better_and_worse():
    assert compare_samples([1e9, 1.01e9, 0.99e9], [0.5e9, 0.51e9, 0.49e9], COST).verdict == "better"
    assert compare_samples([1e9, 1.01e9, 0.99e9], [2e9, 2.02e9, 1.98e9], COST).verdict == "worse"


def test_pairs_remove_drift_shared_by_both_arms_of_a_round():
    # the machine drifts 20 % between rounds; within a round the candidate is always 5 % faster
    base = [100.0, 110.0, 120.0, 105.0]
    cand = [b * 1.05 for b in base]
    paired = compare_samples(base, cand, THROUGHPUT, pairs=list(zip(base, cand)))
    unpaired = compare_samples(base, cand, THROUGHPUT)
    assert paired.ci_method == stats.PAIRED and paired.n_pairs == 4
    assert paired.ci95 == pytest.approx([1.05, 1.05])
    assert paired.verdict == "faster"
    assert unpaired.ci95[0] < 1.0 < unpaired.ci95[1] and unpaired.verdict == "~"


def test_paired_interval_is_the_t_interval_of_the_mean_log_ratio():
    pairs = [(100.0, 102.0), (100.0, 99.0), (100.0, 104.0)]
    d = np.log([c / b for b, c in pairs])
    half = 4.302652729911275 * d.std(ddof=1) / math.sqrt(3)      # t(0.975, df=2)
    r = compare_samples([p[0] for p in pairs], [p[1] for p in pairs], THROUGHPUT, pairs=pairs)
    assert r.ratio == pytest.approx(math.exp(d.mean()))
    assert r.ci95 == pytest.approx([math.exp(d.mean() - half), math.exp(d.mean() + half)])


def test_pairing_falls_back_to_unpaired_when_too_few_pairs_are_usable():
    r = compare_samples([100.0, 101.0, 99.0], [120.0, 121.0, 119.0], THROUGHPUT, pairs=[(100.0, None)])
    assert r.ci_method == stats.UNPAIRED and r.n_pairs is None and r.interval == "ci"


def test_two_repeats_give_a_range_never_a_ci():
    r = compare_samples([100.0, 104.0], [101.0, 103.0], THROUGHPUT, pairs=[(100.0, 101.0), (104.0, 103.0)])
    assert r.interval == "range" and r.ci95 is None and r.verdict is None and r.significant is None
    assert r.range == pytest.approx([103.0 / 104.0, 1.01])
    assert "range only, n=2" in r.reason
    assert judgement(r.verdict, r.interval, r.significant, r.beyond_threshold, r.threshold).startswith(
        "inconclusive (range only")


def test_two_unpaired_repeats_per_arm_give_the_min_max_range():
    r = compare_samples([100.0, 104.0], [101.0, 103.0], THROUGHPUT)
    assert r.interval == "range" and r.range == pytest.approx([101.0 / 104.0, 1.03])


def test_samples_from_one_distribution_are_inconclusive():
    rng = np.random.default_rng(0)
    r = compare_samples(list(rng.normal(100, 1, 10)), list(rng.normal(100, 1, 10)), THROUGHPUT)
    assert r.verdict == "~" and not r.significant
    assert r.ci95[0] < 1.0 < r.ci95[1]
    assert judgement(r.verdict, r.interval, r.significant, r.beyond_threshold, r.threshold) == \
        "inconclusive (the 95 % CI includes 1)"


def test_significant_but_tiny_change_says_significant_within_the_printed_threshold():
    # 1 % faster with almost no noise: the CI excludes 1 but the change is under the 2 % threshold
    r = compare_samples([100.0, 100.01, 99.99], [101.0, 101.01, 100.99], THROUGHPUT)
    assert r.ci95[0] > 1.0 and r.significant and not r.beyond_threshold
    assert r.verdict == "~"
    words = judgement(r.verdict, r.interval, r.significant, r.beyond_threshold, r.threshold)
    assert words == "statistically significant, within the 2 % practical threshold"


def test_a_clear_change_names_both_significance_and_the_threshold():
    r = compare_samples([100.0, 101.0, 99.0], [120.0, 121.0, 119.0], THROUGHPUT, threshold=0.05)
    assert judgement(r.verdict, r.interval, r.significant, r.beyond_threshold, r.threshold) == \
        "faster: statistically significant, beyond the 5 % practical threshold"


def test_one_repeat_gives_ratio_but_no_interval():
    r = compare_samples([100.0], [120.0, 121.0], THROUGHPUT)
    assert r.verdict is None and r.ci95 is None and r.interval is None
    assert r.ratio == pytest.approx(1.205)
    assert "fewer than 2 ok repeats" in r.reason


def test_unmeasured_metric_has_no_ratio_and_says_which_side():
    r = compare_samples([None, None], [1.0, 2.0], COST)
    assert r.ratio is None and r.verdict is None
    assert "baseline" in r.reason


def test_zero_baseline_mean_is_no_verdict_not_a_crash():
    r = compare_samples([0.0, 0.0], [1.0, 2.0], COST)
    assert r.ratio is None and "undefined" in r.reason


def test_bootstrap_is_reproducible_with_its_seed():
    rng = np.random.default_rng(3)
    a, b = list(rng.normal(10, 1, 8)), list(rng.normal(12, 1, 8))
    assert ratio_of_means_ci(a, b) == ratio_of_means_ci(a, b)
    assert ratio_of_means_ci(a, b, seed=1) != ratio_of_means_ci(a, b, seed=2)


def test_bootstrap_can_still_be_chosen_and_is_recorded():
    r = compare_samples([100.0, 101.0, 99.0, 100.5], [120.0, 121.0, 119.0, 120.5], THROUGHPUT, method="BCa")
    assert r.ci_method == "BCa" and r.verdict == "faster" and r.interval == "ci"


def test_bootstrap_with_two_repeats_is_a_range_not_a_ci():
    r = compare_samples([100.0, 104.0], [101.0, 103.0], THROUGHPUT, method="percentile")
    assert r.interval == "range" and r.ci95 is None


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="method="):
        compare_samples([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], THROUGHPUT, method="magic")


def test_constant_samples_give_a_point_interval():
    assert ratio_of_means_ci([2.0, 2.0], [3.0, 3.0]) == (1.5, 1.5)
    r = compare_samples([2.0, 2.0, 2.0], [3.0, 3.0, 3.0], COST)
    assert r.ci95 == pytest.approx([1.5, 1.5])


def test_verdict_rule_needs_both_significance_and_size():
    assert verdict_for(1.10, 0.95, 1.20, THROUGHPUT) == "~"
    assert verdict_for(1.10, 1.05, 1.20, THROUGHPUT) == "faster"
    assert verdict_for(0.90, 0.85, 0.95, COST) == "better"


def test_describe_leaves_out_missing_values():
    s = describe([1.0, None, float("nan"), 3.0])
    assert s.n == 2 and s.mean == 2.0


def test_paired_interval_covers_a_known_ratio_about_95_percent_of_the_time():
    # 400 seeded campaigns of 3 rounds: each round's machine speed drifts (10 %), the candidate is 3 % faster with
    # 1 % noise per run. The log-ratio is normal, so the t-interval's coverage is exactly 95 % in expectation.
    rng = np.random.default_rng(11)
    true_ratio, hits, n = 1.03, 0, 400
    for _ in range(n):
        drift = rng.lognormal(np.log(100), 0.10, 3)
        b, c = drift * rng.lognormal(0, 0.01, 3), drift * true_ratio * rng.lognormal(0, 0.01, 3)
        r = compare_samples(list(b), list(c), THROUGHPUT, pairs=list(zip(b, c)))
        hits += r.ci95[0] <= true_ratio <= r.ci95[1]
    assert 0.91 <= hits / n <= 0.98


def test_a_non_finite_bootstrap_interval_gives_the_ratio_without_ci_or_verdict_and_says_why():
    # a zero in the baseline: a quarter of the resamples divide by a zero mean
    for method in ("percentile", "BCa"):
        r = compare_samples([0.0, 1.0], [1.0, 1.5], COST, method=method)
        assert r.ratio == pytest.approx(2.5) and r.ci95 is None and r.verdict is None
        assert "non-finite interval" in r.reason and "\n" not in r.reason
        assert ("try method='percentile'" in r.reason) == (method == "BCa")
