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
