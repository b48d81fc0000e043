"""Accuracy, AUROC and bootstrap CIs on synthetic scores."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from hneurons.errors import HNeuronsError
from hneurons.stats import accuracy, auroc, bootstrap_ci, detection_summary, mean_sd


def test_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    score = np.round(rng.normal(size=300) + y, 1)  # rounding creates ties
    assert auroc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)


def test_auroc_edge_cases():
    assert auroc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert auroc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
    assert auroc([0, 1], [0.5, 0.5]) == 0.5
    assert np.isnan(auroc([1, 1], [0.2, 0.3]))


def test_accuracy_thresholds_at_half():
    assert accuracy([1, 0, 1, 0], [0.5, 0.49, 0.2, 0.9]) == 0.5  # 0.5 counts as positive
    assert np.isnan(accuracy([], []))
    with pytest.raises(HNeuronsError):
        accuracy([1, 0], [0.5])


def test_bootstrap_ci_covers_the_estimate_and_is_deterministic():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    score = 1 / (1 + np.exp(-(rng.normal(size=400) + 1.5 * (2 * y - 1))))
    lo, hi = bootstrap_ci(auroc, y, score, n_boot=300, seed=7)
    point = auroc(y, score)
    assert lo < point < hi
    assert 0.0 < hi - lo < 0.15
    assert (lo, hi) == bootstrap_ci(auroc, y, score, n_boot=300, seed=7)
    assert (lo, hi) != bootstrap_ci(auroc, y, score, n_boot=300, seed=8)
    # a wider level gives a wider interval
    lo99, hi99 = bootstrap_ci(auroc, y, score, n_boot=300, seed=7, level=0.99)
    assert lo99 <= lo and hi99 >= hi


def test_bootstrap_ci_degenerate_inputs():
    assert all(np.isnan(bootstrap_ci(accuracy, [1, 0], [0.9, 0.1], n_boot=0, seed=0)))
    # one class only: every AUROC resample is nan -> (nan, nan)
    assert all(np.isnan(bootstrap_ci(auroc, [1, 1, 1], [0.1, 0.2, 0.3], n_boot=20, seed=0)))
    with pytest.raises(HNeuronsError):
        bootstrap_ci(accuracy, [1], [0.3], n_boot=-1, seed=0)


def test_detection_summary_and_mean_sd():
    y = np.array([0, 0, 1, 1, 1, 0])
    score = np.array([0.1, 0.6, 0.7, 0.8, 0.4, 0.2])
    s = detection_summary(y, score, n_boot=50, seed=0)
    assert s["n"] == 6 and s["n_hallucinated"] == 3 and s["n_faithful"] == 3
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["auroc"] == pytest.approx(roc_auc_score(y, score))
    assert s["accuracy_ci95"][0] <= s["accuracy"] <= s["accuracy_ci95"][1]
    assert mean_sd([1.0, 3.0]) == {"mean": 2.0, "sd": pytest.approx(np.sqrt(2.0))}
    assert np.isnan(mean_sd([1.0])["sd"])


# ---------------------------------------------------------------- floor, cluster bootstrap, paired effects

from hneurons.stats import (  # noqa: E402
    FLOOR_PER_CLASS,
    cluster_bootstrap,
    cluster_weights,
    empirical_p,
    endpoint_slopes,
    flag_small,
    ols_slopes,
    paired_alpha_effects,
    percentile_ci,
    weighted_means,
)


def test_flag_small_names_the_small_classes():
    assert FLOOR_PER_CLASS == 30
    assert flag_small({"faithful": 30, "hallucinated": 31}) is None
    assert flag_small({"faithful": 12, "hallucinated": 40}) == "fewer than 30 rows per class (faithful 12)"
    assert flag_small(29) == "fewer than 30 rows per class (n 29)"
    assert flag_small(np.int64(30)) is None
    assert flag_small({"a": 5, "b": 6}, floor=6) == "fewer than 6 rows per class (a 5)"
    assert flag_small({}) is not None


def test_cluster_weights_count_the_draws_of_a_hand_loop():
    weights = cluster_weights(7, 50, seed=3)
    rng = np.random.default_rng(3)
    for row in weights:
        drawn = rng.integers(0, 7, size=7)
        assert row.tolist() == [float(np.sum(drawn == i)) for i in range(7)]
    assert np.array_equal(weights, cluster_weights(7, 50, seed=3))
    assert not np.array_equal(weights, cluster_weights(7, 50, seed=4))
    assert cluster_weights(0, 4, seed=0).shape == (4, 0)


def test_cluster_bootstrap_carries_every_row_of_a_drawn_item():
    # 4 items with 1-3 rows each, ids deliberately unsorted
    clusters = np.array(["c", "a", "c", "b", "d", "a", "c"])
    values = np.array([1.0, 0.0, 1.0, 5.0, 2.0, 4.0, 0.0])
    got = cluster_bootstrap(lambda rows: float(values[rows].mean()), clusters, n_boot=40, seed=11)
    # hand-written: draw item positions into the sorted ids, concatenate those items' rows
    ids = sorted(set(clusters))
    rows_of = {c: [v for v, k in zip(values, clusters) if k == c] for c in ids}
    rng = np.random.default_rng(11)
    expected = []
    for _ in range(40):
        drawn = rng.integers(0, len(ids), size=len(ids))
        pooled = [v for i in drawn for v in rows_of[ids[i]]]
        expected.append(sum(pooled) / len(pooled))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    # the weights path gives the same resamples: a ratio of weighted sums equals the pooled mean
    sums = np.array([sum(rows_of[c]) for c in ids])
    counts = np.array([len(rows_of[c]) for c in ids], dtype=float)
    w = cluster_weights(len(ids), 40, seed=11)
    np.testing.assert_allclose((w @ sums) / (w @ counts), expected, atol=1e-12)


def test_cluster_ci_is_wider_than_the_row_ci_when_rows_of_an_item_agree():
    # 40 items, each answered identically in 5 conditions: the rows are not independent
    rng = np.random.default_rng(0)
    per_item = (rng.random(40) < 0.4).astype(float)
    rows = np.repeat(per_item, 5)
    clusters = np.repeat(np.arange(40), 5)
    mean = lambda y, s: float(np.mean(s))  # noqa: E731
    row_lo, row_hi = bootstrap_ci(mean, np.zeros(rows.size), rows, n_boot=500, seed=1)
    cl_lo, cl_hi = percentile_ci(cluster_bootstrap(lambda r: float(rows[r].mean()), clusters, 500, seed=1))
    assert (cl_hi - cl_lo) > 1.7 * (row_hi - row_lo)            # ~sqrt(5) = 2.2 in expectation
    # and the cluster CI equals the row CI of one row per item (identical draws, same seed)
    assert (cl_lo, cl_hi) == bootstrap_ci(mean, np.zeros(40), per_item, n_boot=500, seed=1)


def test_percentile_ci_weighted_means_and_slopes_match_direct_computations():
    assert all(np.isnan(percentile_ci(np.array([np.nan, np.nan]))))
    assert percentile_ci(np.array([np.nan, *range(101)])) == pytest.approx((2.5, 97.5))
    x = np.array([[1.0, np.nan], [0.0, 1.0], [np.nan, np.nan], [1.0, 0.0]])
    w = np.array([[2.0, 0.0, 1.0, 1.0], [0.0, 0.0, 4.0, 0.0]])
    got = weighted_means(x, w)
    assert got[0].tolist() == pytest.approx([(2 + 0 + 1) / 3, 0.0 / 1])        # item 2 has no value
    assert np.isnan(got[1]).all()                                             # only item 2 drawn
    alphas = np.array([0.0, 0.5, 1.0, 2.0, 3.0])
    y = np.array([[1.0, 2.0, 2.5, 5.0, 7.0], [1.0, np.nan, 3.0, np.nan, 4.0], [np.nan, 1.0, np.nan, np.nan, np.nan]])
    slopes = ols_slopes(alphas, y)
    assert slopes[0] == pytest.approx(np.polyfit(alphas, y[0], 1)[0])
    keep = ~np.isnan(y[1])
    assert slopes[1] == pytest.approx(np.polyfit(alphas[keep], y[1][keep], 1)[0])
    assert np.isnan(slopes[2])
    ends = endpoint_slopes(alphas, y)
    assert ends[:2].tolist() == pytest.approx([2.0, 1.0]) and np.isnan(ends[2])


def _paired_case():
    """10 items x alphas (0, 1, 3) for H, 3 random sets at (0, 1) only (nan at alpha 3), a few gaps."""
    rng = np.random.default_rng(5)
    alphas = np.array([0.0, 1.0, 3.0])
    h = (rng.random((10, 3)) < [0.2, 0.4, 0.8]).astype(float)
    random = (rng.random((3, 10, 3)) < 0.4).astype(float)
    random[:, :, 1] = h[:, 1]                  # alpha 1 is the unchanged model for every set
    random[:, :, 2] = np.nan                   # the control grid stops at alpha 1
    random[0, 4, 0] = np.nan                   # set 0 has no answer for item 4 at alpha 0
    h[7, 0] = np.nan                           # H has no answer for item 7 at alpha 0
    return alphas, h, random


def test_paired_alpha_effects_match_a_hand_written_item_bootstrap():
    alphas, h, random = _paired_case()
    out = paired_alpha_effects(alphas, h, random, n_boot=200, seed=9)
    by_alpha = {row["alpha"]: row for row in out["by_alpha"]}
    assert set(by_alpha) == {0.0, 1.0}                                        # alpha 3 has no random value
    # point estimates by hand: per item, random = mean over the sets that have it
    def diff_at(items, a):
        pairs = []
        for i in items:
            sets = [random[s, i, a] for s in range(3) if not np.isnan(random[s, i, a])]
            if sets and not np.isnan(h[i, a]):
                pairs.append((h[i, a], sum(sets) / len(sets)))
        return pairs
    pairs0 = diff_at(range(10), 0)
    row0 = by_alpha[0.0]
    assert row0["n"] == 9 == len(pairs0) and row0["n_sets"] == 3
    assert row0["h_pp"] == pytest.approx(100 * np.mean([p[0] for p in pairs0]))
    assert row0["random_pp"] == pytest.approx(100 * np.mean([p[1] for p in pairs0]))
    assert row0["diff_pp"] == pytest.approx(row0["h_pp"] - row0["random_pp"])
    assert by_alpha[1.0]["diff_pp"] == 0.0 and (by_alpha[1.0]["diff_ci_lo"], by_alpha[1.0]["diff_ci_hi"]) == (0, 0)
    # CIs by hand: draw items (same generator), concatenate each drawn item's pairs
    rng = np.random.default_rng(9)
    diffs, h_slopes = [], []
    for _ in range(200):
        drawn = rng.integers(0, 10, size=10)
        pairs = [p for i in drawn for p in diff_at([i], 0)]
        diffs.append(100 * np.mean([a - b for a, b in pairs]) if pairs else np.nan)
        rates = [100 * np.mean([h[i, a] for i in drawn if not np.isnan(h[i, a])]) for a in range(3)]
        h_slopes.append(np.polyfit(alphas, rates, 1)[0])
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    assert (row0["diff_ci_lo"], row0["diff_ci_hi"]) == pytest.approx((lo, hi))
    slopes = {(r["quantity"], r["kind"]): r for r in out["slopes"]}
    h_ols = slopes[("h_neurons", "ols")]
    point = [100 * np.nanmean(h[:, a]) for a in range(3)]
    assert h_ols["slope_pp_per_alpha"] == pytest.approx(np.polyfit(alphas, point, 1)[0])
    assert (h_ols["ci_lo"], h_ols["ci_hi"]) == pytest.approx(tuple(np.percentile(h_slopes, [2.5, 97.5])))
    assert h_ols["n"] == 10 and h_ols["alphas"] == [0.0, 1.0, 3.0]
    # the difference's slope is fitted over the alphas both sides have: (d(1) - d(0)) / 1 with two points
    d = slopes[("h_minus_random", "ols")]
    assert d["alphas"] == [0.0, 1.0]
    assert d["slope_pp_per_alpha"] == pytest.approx(by_alpha[1.0]["diff_pp"] - by_alpha[0.0]["diff_pp"])
    assert slopes[("h_minus_random", "endpoint")]["slope_pp_per_alpha"] == pytest.approx(d["slope_pp_per_alpha"])
    assert slopes[("random", "ols")]["n_alphas"] == 2
    assert out == paired_alpha_effects(alphas, h, random, n_boot=200, seed=9)


def test_paired_alpha_effects_reject_misaligned_inputs():
    alphas, h, random = _paired_case()
    with pytest.raises(HNeuronsError, match="must be"):
        paired_alpha_effects(alphas, h, random[:, :5], n_boot=10, seed=0)
    with pytest.raises(HNeuronsError, match="must be"):
        paired_alpha_effects(alphas[:2], h, random, n_boot=10, seed=0)


def test_empirical_p_counts_ties_and_is_calibrated_under_the_null():
    assert empirical_p(0.6, np.array([0.5, 0.6, 0.7, np.nan])) == pytest.approx(3 / 4)
    assert empirical_p(0.6, np.array([0.5, 0.6, 0.7]), greater=False) == pytest.approx(3 / 4)
    assert empirical_p(0.9, np.array([0.5, 0.6])) == pytest.approx(1 / 3)
    assert np.isnan(empirical_p(float("nan"), np.array([0.1]))) and np.isnan(empirical_p(0.1, np.array([])))
    # no effect: the tested statistic and the null draws come from one distribution
    rng = np.random.default_rng(2026)
    null = rng.standard_t(3, size=1000)
    tested = rng.standard_t(3, size=200)
    p = np.array([empirical_p(t, null) for t in tested])
    assert 0.02 <= np.mean(p < 0.05) <= 0.09
    assert 0.4 <= np.mean(p < 0.5) <= 0.6
