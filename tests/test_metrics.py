import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from feseq_tf import metrics


def test_auc_matches_pairwise_definition_with_ties():
    # Paper eq. 14-15 computed by brute force over all positive/negative pairs.
    y = np.array([1, 0, 1, 0, 0, 1, 0])
    s = np.array([0.9, 0.9, 0.3, 0.1, 0.3, 0.5, 0.2])
    pos, neg = s[y == 1], s[y == 0]
    brute = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert metrics.auc(y, s) == pytest.approx(brute)


def test_auc_agrees_with_sklearn_on_random_data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 5000)
    s = np.round(rng.random(5000), 2)  # many ties
    assert metrics.auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auc_is_nan_with_one_class():
    assert np.isnan(metrics.auc(np.ones(4), np.arange(4.0)))


def test_group_auc_weights_users_by_impressions_and_skips_single_class_users():
    rng = np.random.default_rng(1)
    groups = rng.integers(0, 50, 3000)
    y = rng.integers(0, 2, 3000)
    s = np.round(rng.random(3000), 1)
    expected_num, expected_den = 0.0, 0.0
    for g in np.unique(groups):
        m = groups == g
        if 0 < y[m].sum() < m.sum():
            expected_num += roc_auc_score(y[m], s[m]) * m.sum()
            expected_den += m.sum()
    assert metrics.group_auc(y, s, groups) == pytest.approx(expected_num / expected_den, abs=1e-12)


def test_group_auc_nan_when_no_user_has_both_classes():
    assert np.isnan(metrics.group_auc(np.array([1, 0]), np.array([0.2, 0.3]), np.array([0, 1])))


def test_logloss_matches_sklearn():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 1000)
    p = rng.random(1000)
    assert metrics.logloss(y, p) == pytest.approx(log_loss(y, p), rel=1e-9)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="differ in length"):
        metrics.auc(np.array([0, 1]), np.array([0.1]))
    with pytest.raises(ValueError, match="non-finite"):
        metrics.auc(np.array([0, 1]), np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="0 or 1"):
        metrics.auc(np.array([0, 2]), np.array([0.1, 0.2]))


def test_captured_lift():
    assert metrics.captured_lift(0.7, 0.8) == pytest.approx(2 / 3)
    assert np.isnan(metrics.captured_lift(0.7, 0.5))
