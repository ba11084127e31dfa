"""How much a model that is handed hand-made features (and, on synthetic data, the
generator's form) can reach: the GBDT yardstick of a prepared dataset.

    python -m benchmarks.reference_gbdt [--dataset-dir data/synthetic] [--seed 1]

On any prepared dataset it prints the yardstick of every benchmark table,
:func:`feseq_tf.yardstick.gbdt_metrics` (target encodings, numeric fields, history
matches of the target's values, the history's click share when the dataset has the
labels of the history; see :mod:`feseq_tf.yardstick`).

On the synthetic generator's datasets it also prints the original synthetic-only
yardstick, with and without history (the README's figures): gradient-boosted trees
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
printed with and without the history features (the target encodings' folds are row
``i % 5`` there, as when the README's figures were made). What the history features
add, and how far the whole falls short of the oracle (whose per-impression noise,
per-user propensity and click-boosted history are not observable), bound what a model
can reach on the same rows.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from feseq_tf import cli
from feseq_tf.yardstick import (
    FOLDS,
    PRIOR_WEIGHT,
    gbdt_metrics,
    gbdt_run,
    generator_decays,
    target_encoding,
)
from feseq_tf.yardstick import generator_history_features as history_features

__all__ = [
    "FOLDS",
    "PRIOR_WEIGHT",
    "gbdt_metrics",
    "history_features",
    "main",
    "run",
    "target_encoding",
    "yardstick",
]

ENCODED = ("item_id", "shop_id", "user_id")
NUMERIC = ("avg_price", "ctr_30", "ord_30")
CATEGORICAL = (
    "gender",
    "is_super_vip",
    "category_1_id",
    "rank_7",
    "hours",
    "time_type",
    "weekdays",
)
HISTORY = ("times", "times_list", "shop_id_list", "category_1_id_list", "hist_len")


def features(
    tables: dict[str, dict[str, np.ndarray]],
    split: str,
    label: str,
    history: bool,
    decays: tuple[float, float],
) -> np.ndarray:
    train, t = tables["train"], tables[split]
    cols = [
        target_encoding(
            train[f], train[label].astype(np.float64), None if split == "train" else t[f]
        )
        for f in ENCODED
    ]
    cols += [t[f] for f in NUMERIC + CATEGORICAL]
    if history:
        cols += history_features(t, *decays)
    return np.stack([np.asarray(c, np.float64) for c in cols], axis=1)


def run(dataset_dir: str, max_iter: int = 400) -> dict[str, Any]:
    """The synthetic-only yardstick, with and without the generator's history statistics."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from feseq_tf.data import read_columns
    from feseq_tf.metrics import auc
    from feseq_tf.schema import DatasetSpec

    spec = DatasetSpec.load(dataset_dir)
    decays = generator_decays(spec)
    if not spec.has_oracle or decays is None:
        raise SystemExit(
            f"{dataset_dir} is not the synthetic generator's: this yardstick "
            "is for synthetic data (gbdt_metrics serves any dataset)."
        )
    names = [spec.label, "oracle_prob", *ENCODED, *NUMERIC, *CATEGORICAL, "shop_id", *HISTORY]
    tables = {
        s: read_columns(dataset_dir, s, list(dict.fromkeys(names)))
        for s in ("train", "valid", "test")
    }
    y = {s: np.asarray(tables[s][spec.label]) for s in tables}
    oracle = auc(y["test"], tables["test"]["oracle_prob"])
    out: dict[str, Any] = {
        "dataset_dir": dataset_dir,
        "oracle_auc": oracle,
        "split_sizes": {s: int(len(v)) for s, v in y.items()},
    }
    for history in (False, True):
        start = time.perf_counter()
        x = {s: features(tables, s, spec.label, history, decays) for s in tables}
        categorical = [False] * (len(ENCODED) + len(NUMERIC)) + [True] * len(CATEGORICAL)
        categorical += [False] * (x["train"].shape[1] - len(categorical))
        model = HistGradientBoostingClassifier(
            max_iter=max_iter,
            learning_rate=0.05,
            max_leaf_nodes=31,
            early_stopping=False,
            categorical_features=categorical,
            random_state=0,
        )
        model.fit(x["train"], y["train"])
        valid = [auc(y["valid"], p[:, 1]) for p in model.staged_predict_proba(x["valid"])]
        best = int(np.argmax(valid))
        test_p = next(p for i, p in enumerate(model.staged_predict_proba(x["test"])) if i == best)[
            :, 1
        ]
        test = auc(y["test"], test_p)
        key = "with_history" if history else "without_history"
        out[key] = {
            "trees": best + 1,
            "valid_auc": valid[best],
            "test_auc": test,
            "captured_lift": (test - 0.5) / (oracle - 0.5),
            "seconds": round(time.perf_counter() - start, 1),
        }
        print(
            f"GBDT {key.replace('_', ' ')}: {best + 1} trees, valid AUC {valid[best]:.4f}, "
            f"test AUC {test:.4f}, captured lift {out[key]['captured_lift']:.3f} "
            f"(oracle test AUC {oracle:.4f})",
            flush=True,
        )
    return out


def yardstick(dataset_dir: str, seed: int, max_iter: int = 400) -> dict[str, Any]:
    """The benchmark tables' GBDT yardstick (:func:`feseq_tf.yardstick.gbdt_run`), printed."""
    result = gbdt_run(dataset_dir, seed=seed, max_iter=max_iter)
    test = result["test"]
    lift = f", captured lift {test['captured_lift']:.3f}" if "captured_lift" in test else ""
    print(
        f"GBDT yardstick (seed {seed}, {len(result['features'])} features): "
        f"{result['trees']} trees, valid AUC {result['valid']['auc']:.4f}, test AUC "
        f"{test['auc']:.4f}, gAUC {test['gauc']:.4f}, logloss {test['logloss']:.4f}{lift}",
        flush=True,
    )
    return result


@cli.command
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.reference_gbdt",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--dataset-dir",
        default=os.path.join("data", "synthetic"),
        help="prepared dataset (default: data/synthetic, made by "
        "`python -m feseq_tf.train` or `python -m pipelines.synthetic`)",
    )
    p.add_argument("--max-iter", type=int, default=400, help="most trees (default: 400)")
    p.add_argument("--seed", type=int, default=1, help="seed of the yardstick (default: 1)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    if not os.path.isdir(args.dataset_dir):
        raise SystemExit(
            f"No prepared dataset at {args.dataset_dir}; run `python -m feseq_tf.train` "
            "once (it prepares data/synthetic) or pass --dataset-dir."
        )
    if args.max_iter < 1 or args.seed < 0:
        raise SystemExit(
            f"--max-iter must be >= 1 and --seed >= 0, got {args.max_iter} and {args.seed}."
        )
    from feseq_tf.schema import DatasetSpec

    spec = DatasetSpec.load(args.dataset_dir)
    synthetic = spec.has_oracle and generator_decays(spec) is not None
    result = (
        run(args.dataset_dir, args.max_iter) if synthetic else {"dataset_dir": args.dataset_dir}
    )
    result["yardstick"] = yardstick(args.dataset_dir, args.seed, args.max_iter)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return result


if __name__ == "__main__":
    main()
