"""The package's logistic regression against a plain one from scikit-learn, same fields and split.

    python -m benchmarks.linear_yardstick --dataset DIR [--seeds 3] [--output-dir OUT]

``--model lr`` (:class:`feseq_tf.models.LogisticRegression`, trained by the package's loop
as every benchmark table's linear row: Adam at 1e-2, batch 2048, early stopping) is the linear
yardstick of the tables, so it should reach what any plain logistic regression reaches on
the same inputs. The reference here is scikit-learn's ``LogisticRegression`` (L-BFGS) on
the one-hot target-side fields of the prepared dataset: every categorical field's target
value (the prepared ids, so values rarer than the pipeline's ``min_count`` already share
the OOV id, as ``OneHotEncoder(min_frequency=min_count)`` would make them), every numeric
field's scaled value, and for a history-only field (the labels of the history) the share
of each value among the real history entries. Its L2 strength ``C`` is chosen on the
validation split from a grid; the test AUC of that fit is reported. ``--model lr`` runs
through ``feseq_tf.benchmark`` (seeds 1..N, its ``lr`` row) into ``OUT``; the script
prints both and the difference.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import numpy as np

#: Inverse L2 strengths tried on the validation split.
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


def _design(dataset_dir: str, spec, split: str):
    """The sparse one-hot design matrix of a split, its labels and its user groups."""
    import scipy.sparse as sp

    from feseq_tf.data import read_columns
    from feseq_tf.schema import GROUP_KEY, HIST_LEN

    fields = spec.fields
    names = [spec.label, GROUP_KEY, HIST_LEN]
    for f in fields:
        names.append(f.hist_name if f.history_only else f.name)
    cols = read_columns(dataset_dir, split, list(dict.fromkeys(names)), spec=spec)
    n = len(cols[spec.label])
    blocks = []
    for f in fields:
        if not f.is_categorical:
            blocks.append(sp.csr_matrix(cols[f.name].astype(np.float64).reshape(n, 1)))
        elif f.history_only:  # the share of each value among the real history entries
            hist = cols[f.hist_name].astype(np.int64)
            real = np.arange(spec.max_len)[None, :] >= (spec.max_len - cols[HIST_LEN])[:, None]
            counts = np.zeros((n, f.vocab_size))
            rows = np.repeat(np.arange(n), spec.max_len)
            np.add.at(counts, (rows, hist.ravel()), real.ravel().astype(np.float64))
            blocks.append(sp.csr_matrix(counts / np.maximum(real.sum(1, keepdims=True), 1)))
        else:
            ids = cols[f.name].astype(np.int64)
            blocks.append(sp.csr_matrix(
                (np.ones(n), (np.arange(n), ids)), shape=(n, f.vocab_size)
            ))
    return sp.hstack(blocks).tocsr(), cols[spec.label].astype(np.int64), cols[GROUP_KEY]


def sklearn_reference(dataset_dir: str) -> dict[str, Any]:
    """scikit-learn's logistic regression with ``C`` chosen on validation: its metrics."""
    from sklearn.linear_model import LogisticRegression

    from feseq_tf import metrics
    from feseq_tf.schema import DatasetSpec

    spec = DatasetSpec.load(dataset_dir)
    splits = {s: _design(dataset_dir, spec, s) for s in ("train", "valid", "test")}
    x, y, _ = splits["train"]
    best: dict[str, Any] | None = None
    for c in C_GRID:
        fit = LogisticRegression(C=c, max_iter=2000).fit(x, y)
        xv, yv, _ = splits["valid"]
        val_auc = metrics.auc(yv, fit.predict_proba(xv)[:, 1])
        print(f"  scikit-learn C={c:g}: validation AUC {val_auc:.5f}", flush=True)
        if best is None or val_auc > best["valid_auc"]:
            best = {"C": c, "valid_auc": val_auc, "fit": fit}
    xt, yt, gt = splits["test"]
    p = best["fit"].predict_proba(xt)[:, 1]
    return {"C": best["C"], "valid_auc": best["valid_auc"], "test_auc": metrics.auc(yt, p),
            "test_gauc": metrics.group_auc(yt, p, gt)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.linear_yardstick", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dataset", required=True, help="a prepared dataset directory")
    p.add_argument("--seeds", type=int, default=3, help="seeds 1..N of --model lr (default: 3)")
    p.add_argument("--output-dir", default=os.path.join("runs", "linear_yardstick"))
    args = p.parse_args(argv)
    if not os.path.isfile(os.path.join(args.dataset, "dataset_spec.json")):
        raise SystemExit(f"error: {args.dataset} is not a prepared dataset (no dataset_spec.json)")

    from feseq_tf import benchmark

    reference = sklearn_reference(args.dataset)
    rows = benchmark.main(["--suite", "baselines", "--models", "lr", "--dataset", args.dataset,
                           "--seeds", str(args.seeds), "--output-dir", args.output_dir])
    lr = rows[0]
    result = {
        "dataset": args.dataset,
        "lr_test_auc_mean": lr["auc_mean"], "lr_test_auc_std": lr["auc_std"],
        "lr_test_gauc_mean": lr["gauc_mean"], "seeds": lr["seeds"],
        "sklearn_test_auc": reference["test_auc"], "sklearn_test_gauc": reference["test_gauc"],
        "sklearn_C": reference["C"],
        "difference": lr["auc_mean"] - reference["test_auc"],
    }
    print(f"--model lr ({lr['seeds']} seeds): test AUC {lr['auc_mean']:.4f} ± {lr['auc_std']:.4f}"
          f" (gAUC {lr['gauc_mean']:.4f})")
    print(f"scikit-learn, C={reference['C']:g} chosen on validation: test AUC "
          f"{reference['test_auc']:.4f} (gAUC {reference['test_gauc']:.4f})")
    print(f"difference (lr - scikit-learn): {result['difference']:+.4f}")
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "linear_yardstick.json"), "w") as fh:
        json.dump(result, fh, indent=2)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
