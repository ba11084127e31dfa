"""The synthetic dataset's GBDT yardstick (benchmarks/reference_gbdt.py)."""

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


def test_runs_on_tiny_synthetic_data(tmp_path, capsys):
    from pipelines import synthetic

    data = str(tmp_path / "synthetic")
    synthetic.make_synthetic_dataset(data, num_rows=4000, seed=5, progress=False)
    out = reference_gbdt.main(["--dataset-dir", data, "--max-iter", "15", "--json", str(tmp_path / "r.json")])
    printed = capsys.readouterr().out
    assert "GBDT with history" in printed and "GBDT without history" in printed
    for key in ("with_history", "without_history"):
        r = out[key]
        assert 1 <= r["trees"] <= 15
        assert 0.0 <= r["test_auc"] <= 1.0
        assert r["captured_lift"] == pytest.approx((r["test_auc"] - 0.5) / (out["oracle_auc"] - 0.5))
    assert (tmp_path / "r.json").exists()


def test_missing_dataset_is_explained(tmp_path):
    with pytest.raises(SystemExit, match="No prepared dataset"):
        reference_gbdt.main(["--dataset-dir", str(tmp_path / "missing")])
