"""How much of the oracle's AUC lift a model that is told the generator's form can reach.

    python -m benchmarks.reference_gbdt [--dataset-dir data/synthetic]

A yardstick for the synthetic dataset, not a product model: gradient-boosted trees
(scikit-learn's ``HistGradientBoostingClassifier``) on hand-made features that use
knowledge no learned model is given:

* out-of-fold target encodings of ``item_id``, ``shop_id`` and ``user_id`` (5 folds on
  the training split; validation and test use the whole training split);
* the raw user numbers (``avg_price``, ``ctr_30``, ``ord_30``) and the low-cardinality
  fields the planted crosses use (``gender``, ``is_super_vip``, ``category_1_id``,
  ``rank_7``, ``hours``, ``time_type``, ``weekdays``) as categorical features;
* with history: the generator's own history statistics, i.e. the number of previous
  impressions of the same shop and of the same category, plain and weighted with the
  generator's position and time decays (``pipelines.synthetic.Effects``).

Trees are fitted on the training split; the number of trees is chosen on validation AUC;
the test AUC and its share of the oracle's lift, ``(AUC - 0.5) / (oracle AUC - 0.5)``, are
printed with and without the history features. What the history features add, and how
far the whole falls short of the oracle (whose per-impression noise, per-user propensity
and click-boosted history are not observable), bound what a model can reach on the same
rows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

FOLDS = 5
PRIOR_WEIGHT = 20.0
ENCODED = ("item_id", "shop_id", "user_id")
NUMERIC = ("avg_price", "ctr_30", "ord_30")
CATEGORICAL = ("gender", "is_super_vip", "category_1_id", "rank_7", "hours", "time_type", "weekdays")
HISTORY = ("times", "times_list", "shop_id_list", "category_1_id_list", "hist_len")


def target_encoding(train_ids: np.ndarray, train_y: np.ndarray, ids: np.ndarray | None) -> np.ndarray:
    """Smoothed click rate of each id; out-of-fold on the training split when ``ids`` is None."""
    size = int(train_ids.max()) + 2
    prior = float(train_y.mean())

    def rate(fit_ids: np.ndarray, fit_y: np.ndarray, query: np.ndarray) -> np.ndarray:
        n = np.bincount(fit_ids, minlength=size).astype(np.float64)
        c = np.bincount(fit_ids, weights=fit_y, minlength=size)
        query = np.minimum(query, size - 1)
        return (c[query] + PRIOR_WEIGHT * prior) / (n[query] + PRIOR_WEIGHT)

    if ids is not None:
        return rate(train_ids, train_y, ids)
    out = np.zeros(len(train_ids))
    fold = np.arange(len(train_ids)) % FOLDS
    for k in range(FOLDS):
        held = fold == k
        out[held] = rate(train_ids[~held], train_y[~held], train_ids[held])
    return out


def history_features(t: dict[str, np.ndarray], position_decay: float, time_decay: float) -> list[np.ndarray]:
    """Same-shop / same-category counts of the history, plain and decayed as the generator does."""
    length = t["shop_id_list"].shape[1]
    j = np.arange(length, 0, -1)[None, :]  # left-padded: the last column is the most recent
    dt = (t["times"][:, None] - t["times_list"]).astype(np.float64)
    decay = np.exp(-position_decay * (j - 1) - time_decay * dt / 1000.0)
    real = t["shop_id_list"] > 0
    shop = (t["shop_id_list"] == t["shop_id"][:, None]) & real
    cat = (t["category_1_id_list"] == t["category_1_id"][:, None]) & real
    return [shop.sum(1), cat.sum(1), (shop * decay).sum(1), (cat * decay).sum(1), t["hist_len"]]


def features(tables: dict[str, dict[str, np.ndarray]], split: str, label: str, history: bool,
             decays: tuple[float, float]) -> np.ndarray:
    train, t = tables["train"], tables[split]
    cols = [target_encoding(train[f], train[label].astype(np.float64), None if split == "train" else t[f])
            for f in ENCODED]
    cols += [t[f] for f in NUMERIC + CATEGORICAL]
    if history:
        cols += history_features(t, *decays)
    return np.stack([np.asarray(c, np.float64) for c in cols], axis=1)


def run(dataset_dir: str, max_iter: int = 400) -> dict[str, Any]:
    from sklearn.ensemble import HistGradientBoostingClassifier

    from feseq_tf.data import read_columns
    from feseq_tf.metrics import auc
    from feseq_tf.schema import DatasetSpec
    from pipelines.synthetic import Effects

    spec = DatasetSpec.load(dataset_dir)
    if not spec.has_oracle:
        raise SystemExit(f"{dataset_dir} has no oracle_prob: this yardstick is for synthetic data.")
    effects = spec.extra.get("generator", {}).get("effects", {})
    defaults = Effects()
    decays = (effects.get("history_position_decay", defaults.history_position_decay),
              effects.get("history_time_decay", defaults.history_time_decay))
    names = [spec.label, "oracle_prob", *ENCODED, *NUMERIC, *CATEGORICAL, "shop_id", *HISTORY]
    tables = {s: read_columns(dataset_dir, s, list(dict.fromkeys(names))) for s in ("train", "valid", "test")}
    y = {s: np.asarray(tables[s][spec.label]) for s in tables}
    oracle = auc(y["test"], tables["test"]["oracle_prob"])
    out: dict[str, Any] = {"dataset_dir": dataset_dir, "oracle_auc": oracle,
                           "split_sizes": {s: int(len(v)) for s, v in y.items()}}
    for history in (False, True):
        start = time.perf_counter()
        x = {s: features(tables, s, spec.label, history, decays) for s in tables}
        categorical = [False] * (len(ENCODED) + len(NUMERIC)) + [True] * len(CATEGORICAL)
        categorical += [False] * (x["train"].shape[1] - len(categorical))
        model = HistGradientBoostingClassifier(
            max_iter=max_iter, learning_rate=0.05, max_leaf_nodes=31, early_stopping=False,
            categorical_features=categorical, random_state=0,
        )
        model.fit(x["train"], y["train"])
        valid = [auc(y["valid"], p[:, 1]) for p in model.staged_predict_proba(x["valid"])]
        best = int(np.argmax(valid))
        test_p = next(p for i, p in enumerate(model.staged_predict_proba(x["test"])) if i == best)[:, 1]
        test = auc(y["test"], test_p)
        key = "with_history" if history else "without_history"
        out[key] = {"trees": best + 1, "valid_auc": valid[best], "test_auc": test,
                    "captured_lift": (test - 0.5) / (oracle - 0.5),
                    "seconds": round(time.perf_counter() - start, 1)}
        print(f"GBDT {key.replace('_', ' ')}: {best + 1} trees, valid AUC {valid[best]:.4f}, "
              f"test AUC {test:.4f}, captured lift {out[key]['captured_lift']:.3f} "
              f"(oracle test AUC {oracle:.4f})", flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.reference_gbdt", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset-dir", default=os.path.join("data", "synthetic"),
                   help="prepared synthetic dataset (default: data/synthetic, made by "
                        "`python -m feseq_tf.train` or `python -m pipelines.synthetic`)")
    p.add_argument("--max-iter", type=int, default=400, help="most trees (default: 400)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    if not os.path.isdir(args.dataset_dir):
        raise SystemExit(f"No prepared dataset at {args.dataset_dir}; run `python -m feseq_tf.train` "
                         "once (it prepares data/synthetic) or pass --dataset-dir.")
    result = run(args.dataset_dir, args.max_iter)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
