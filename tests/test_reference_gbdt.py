"""The GBDT yardstick: any prepared dataset (feseq_tf.yardstick) and the synthetic
dataset's original one (benchmarks/reference_gbdt.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks import reference_gbdt


def test_history_features_count_and_decay_matches():
    # One sample, max_len 4, left-padded: [pad, shop 5 @ t=0, shop 7 @ t=1000, shop 5 @ t=1900].
    t = {
        "times": np.array([2000]),
        "times_list": np.array([[0, 0, 1000, 1900]]),
        "shop_id": np.array([5]),
        "shop_id_list": np.array([[0, 5, 7, 5]]),
        "category_1_id": np.array([3]),
        "category_1_id_list": np.array([[0, 3, 3, 4]]),
        "hist_len": np.array([3]),
    }
    shop, cat, shop_w, cat_w, hist_len = reference_gbdt.history_features(t, 0.25, 0.7)
    assert shop[0] == 2 and cat[0] == 2 and hist_len[0] == 3
    # Most recent (j=1, dt=100) and third most recent (j=3, dt=2000) match the shop.
    expected_shop = math.exp(-0.7 * 0.1) + math.exp(-0.25 * 2 - 0.7 * 2.0)
    # Second (j=2, dt=1000) and third most recent match the category; padding never does.
    expected_cat = math.exp(-0.25 - 0.7 * 1.0) + math.exp(-0.25 * 2 - 0.7 * 2.0)
    assert shop_w[0] == pytest.approx(expected_shop)
    assert cat_w[0] == pytest.approx(expected_cat)


def test_target_encoding_is_out_of_fold_on_train():
    ids = np.array([2, 2, 2, 2, 2, 3, 3, 3, 3, 3])
    y = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0], np.float64)
    oof = reference_gbdt.target_encoding(ids, y, None)
    full = reference_gbdt.target_encoding(ids, y, np.array([2, 3, 9]))
    # A row's own label is never in its encoding: with 5 folds each id keeps 4 of its 5 rows.
    prior, w = 0.5, reference_gbdt.PRIOR_WEIGHT
    assert oof[0] == pytest.approx((4 + w * prior) / (4 + w))
    assert full[0] == pytest.approx((5 + w * prior) / (5 + w))
    assert full[1] == pytest.approx((0 + w * prior) / (5 + w))
    assert full[2] == pytest.approx(prior)  # unseen id: the prior


@pytest.mark.slow
def test_runs_on_tiny_synthetic_data(tmp_path, capsys):
    from pipelines import synthetic

    data = str(tmp_path / "synthetic")
    synthetic.make_synthetic_dataset(data, num_rows=4000, seed=5, progress=False)
    out = reference_gbdt.main(
        ["--dataset-dir", data, "--max-iter", "15", "--json", str(tmp_path / "r.json")]
    )
    printed = capsys.readouterr().out
    assert "GBDT with history" in printed and "GBDT without history" in printed
    assert "GBDT yardstick (seed 1" in printed
    # On the generator's data the yardstick is also handed the generator's statistics.
    assert "generator_shops_decayed" in out["yardstick"]["features"]
    assert 1 <= out["yardstick"]["trees"] <= 15
    assert math.isfinite(out["yardstick"]["test"]["captured_lift"])
    for key in ("with_history", "without_history"):
        r = out[key]
        assert 1 <= r["trees"] <= 15
        assert 0.0 <= r["test_auc"] <= 1.0
        assert r["captured_lift"] == pytest.approx(
            (r["test_auc"] - 0.5) / (out["oracle_auc"] - 0.5)
        )
    assert (tmp_path / "r.json").exists()


def test_missing_dataset_is_explained(tmp_path):
    with pytest.raises(SystemExit, match="No prepared dataset"):
        reference_gbdt.main(["--dataset-dir", str(tmp_path / "missing")])


# ---- the yardstick of every benchmark table (feseq_tf.yardstick) -----------------------------
def test_match_features_count_real_matches_and_the_most_recent_position():
    from feseq_tf.yardstick import match_features

    target = np.array([5, 5, 0, 7])
    history = np.array(
        [
            [5, 3, 5, 4],  # matches at positions 4 and 2 from the end
            [5, 5, 3, 3],  # hist_len 2: the two 5s are padding-side values, not real
            [0, 0, 0, 0],  # empty history: padding never matches, even a target of 0
            [1, 2, 3, 7],  # the last entry matches
        ]
    )
    count, last = match_features(target, history, np.array([4, 2, 0, 4]))
    np.testing.assert_array_equal(count, [2, 0, 0, 1])
    np.testing.assert_array_equal(last[[0, 3]], [2, 1])
    assert np.isnan(last[1]) and np.isnan(last[2])


def test_feedback_share_counts_known_labels_of_real_entries_only():
    from feseq_tf.yardstick import feedback_share

    # ids: 0 padding, 1 label unknown, 2 not clicked, 3 clicked.
    feedback = np.array([[0, 3, 2, 3], [0, 0, 1, 3], [3, 3, 1, 1], [0, 0, 0, 0]])
    share = feedback_share(feedback, np.array([3, 2, 2, 0]))
    np.testing.assert_allclose(share[:2], [2 / 3, 1.0])
    assert np.isnan(share[2]) and np.isnan(share[3])  # no known label among real entries


def test_seeded_target_encoding_folds_are_out_of_fold_and_reproducible():
    rng = np.random.default_rng(0)
    ids, y = rng.integers(2, 6, 50), rng.integers(0, 2, 50).astype(np.float64)
    a = reference_gbdt.target_encoding(ids, y, None, seed=3)
    np.testing.assert_array_equal(a, reference_gbdt.target_encoding(ids, y, None, seed=3))
    assert not np.array_equal(a, reference_gbdt.target_encoding(ids, y, None, seed=4))
    # Every row's encoding is the smoothed rate of its id among the other folds' rows.
    fold = np.random.default_rng(3).permutation(50) % reference_gbdt.FOLDS
    prior, w = y.mean(), reference_gbdt.PRIOR_WEIGHT
    for i in range(50):
        other = (fold != fold[i]) & (ids == ids[i])
        assert a[i] == pytest.approx((y[other].sum() + w * prior) / (other.sum() + w))


@pytest.fixture(scope="module")
def click_datasets(tmp_path_factory):
    from tests.test_model_lr import prepare_click_log

    root = tmp_path_factory.mktemp("clicks")
    return {
        "feedback": prepare_click_log(str(root / "feedback"), feedback=True),
        "plain": prepare_click_log(str(root / "plain"), oracle=False),
    }


@pytest.mark.slow
def test_gbdt_metrics_reach_the_oracle_on_a_log_with_feedback(click_datasets):
    from feseq_tf.yardstick import gbdt_metrics, gbdt_run

    result = gbdt_run(click_datasets["feedback"], seed=1, max_iter=60)
    assert {
        "matches_item",
        "last_match_item",
        "matches_category",
        "feedback_share",
        "te_user",
        "te_item",
        "price",
        "hist_len",
    } <= set(result["features"])
    assert not any(n.startswith("generator_") for n in result["features"])
    test = result["test"]
    assert {"auc", "gauc", "logloss", "oracle_auc", "captured_lift"} <= set(test)
    # Item effect plus "seen in the last 5": the features spell both out.
    assert test["captured_lift"] > 0.8 and test["auc"] > 0.7
    assert test["captured_lift"] == pytest.approx((test["auc"] - 0.5) / (test["oracle_auc"] - 0.5))
    assert 1 <= result["trees"] <= 60
    assert gbdt_metrics(click_datasets["feedback"], seed=1, max_iter=60) == test  # seeded


def test_gbdt_metrics_without_oracle_or_feedback(click_datasets):
    from feseq_tf.yardstick import gbdt_run

    result = gbdt_run(click_datasets["plain"], seed=2, max_iter=30)
    assert "feedback_share" not in result["features"] and "matches_item" in result["features"]
    assert {"auc", "gauc", "logloss"} <= set(result["test"])
    assert "oracle_auc" not in result["test"] and "captured_lift" not in result["test"]
    assert 0.6 < result["test"]["auc"] <= 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seed": -1}, "seed must be an integer >= 0, got -1"),
        ({"seed": 1, "max_iter": 0}, "max_iter must be an integer >= 1, got 0"),
    ],
)
def test_gbdt_run_validates_its_arguments(click_datasets, kwargs, message):
    from feseq_tf.yardstick import gbdt_run

    with pytest.raises(ValueError, match=message):
        gbdt_run(click_datasets["plain"], **kwargs)


def test_cli_on_a_dataset_that_is_not_synthetic_prints_the_yardstick_only(click_datasets, capsys):
    out = reference_gbdt.main(
        ["--dataset-dir", click_datasets["plain"], "--max-iter", "20", "--seed", "2"]
    )
    printed = capsys.readouterr().out
    assert "GBDT yardstick (seed 2" in printed and "GBDT with history" not in printed
    assert "with_history" not in out and 0.0 <= out["yardstick"]["test"]["auc"] <= 1.0
