"""Quality report of a prepared synthetic dataset: oracle AUC, a single-field baseline, per-term AUCs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipelines.synthetic.dataset import RAW_SUBDIR, prepare
from pipelines.synthetic.effects import MAIN_EFFECTS
from pipelines.synthetic.raw import file_rows, read_generator_info, simulation_from_info
from pipelines.synthetic.simulation import Simulation

REPORT_FILE = "synthetic_report.json"


def _auc(label: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(label, score))


def _single_field_matrix(table: dict[str, np.ndarray], spec: Any) -> Any:
    """One-hot of every categorical non-sequential/target field plus the numeric fields."""
    import scipy.sparse as sp

    n = len(table[spec.label])
    blocks = []
    for f in spec.fields:
        values = np.asarray(table[f.name])
        if f.is_categorical:
            ids = values.astype(np.int64)
            blocks.append(sp.csr_matrix((np.ones(n), (np.arange(n), ids)), shape=(n, max(f.vocab_size, ids.max() + 1))))
        else:
            blocks.append(sp.csr_matrix(values.astype(np.float64).reshape(-1, 1)))
    return sp.hstack(blocks, format="csr")


def logistic_regression_auc(tables: dict[str, dict[str, np.ndarray]], spec: Any,
                            *, cs: Sequence[float] = (0.03, 0.1, 0.3)) -> dict[str, Any]:
    """Test AUC of a single-field logistic regression (no history, no crosses).

    Features: one-hot of the vocabulary id of every categorical non-sequential and
    target field, and every numeric field as is (already min-max scaled). The inverse
    regularisation ``C`` is picked on the validation split.

    Args:
        tables: dict. Split -> feature -> array (a prepared dataset's tables).
        spec: DatasetSpec. The prepared dataset's spec.
        cs: sequence of float. Candidate values of ``C``. Defaults to (0.03, 0.1, 0.3).

    Returns:
        dict with ``auc`` (test), ``valid_auc``, ``C``.
    """
    from sklearn.linear_model import LogisticRegression

    x = {s: _single_field_matrix(tables[s], spec) for s in ("train", "valid", "test")}
    width = max(m.shape[1] for m in x.values())
    for s, m in x.items():
        if m.shape[1] < width:
            import scipy.sparse as sp

            x[s] = sp.hstack([m, sp.csr_matrix((m.shape[0], width - m.shape[1]))], format="csr")
    y = {s: np.asarray(tables[s][spec.label]) for s in x}
    best = None
    for c in cs:
        model = LogisticRegression(C=c, max_iter=300)
        model.fit(x["train"], y["train"])
        valid = _auc(y["valid"], model.decision_function(x["valid"]))
        if best is None or valid > best[0]:
            best = (valid, c, model)
    valid, c, model = best
    return {"auc": _auc(y["test"], model.decision_function(x["test"])), "valid_auc": valid, "C": c}


def _test_rows(sim: Simulation, num_test: int) -> np.ndarray:
    """Valid impressions of the test split, in the pipeline's order (stable time sort)."""
    file_order = np.concatenate(file_rows(sim))
    file_order = file_order[file_order < sim.num_valid]
    by_time = file_order[np.argsort(sim.times[file_order], kind="stable")]
    return by_time[len(by_time) - num_test:]


def report(dataset_dir: str, *, raw_dir: str | None = None, result: Any = None,
           effects_off: bool = True) -> dict[str, Any]:
    """Quality report of a prepared synthetic dataset.

    Args:
        dataset_dir: str. Prepared dataset directory.
        raw_dir: str. Raw directory of the generator. Defaults to ``<dataset_dir>/raw``.
        result: PrepareResult. The pipeline's result (its ``tables`` are used); when
            None the pipeline is re-run in memory to get them.
        effects_off: bool. Also compute the oracle test AUC with each logit term
            switched off (re-runs the simulation). Defaults to True.

    Returns:
        dict with ``oracle_auc``, ``lr_auc``, ``lr_C``, ``captured_lift`` (of the
        logistic regression), ``ctr`` per split, ``hist_len_distribution`` (share of
        samples per history length), ``split_sizes``, ``oracle_auc_without`` (term ->
        oracle test AUC with that term removed), ``oracle_auc_observable`` (the oracle
        without its unobservable noise: what a model that knew the click model and
        every id's effect would reach), ``oracle_auc_main_effects`` (the intercept and
        the one-field terms :data:`MAIN_EFFECTS` alone: the same for a perfect linear
        model on one-hot fields), ``beyond_main_effects`` (the difference of the two:
        the most any model can gain over a perfect linear one on this data) and
        ``test_rows_matched``.
    """
    raw_dir = raw_dir or os.path.join(dataset_dir, RAW_SUBDIR)
    info = read_generator_info(raw_dir)
    if result is None:
        from feseq_tf.schema import DatasetSpec

        pipeline = DatasetSpec.load(dataset_dir).extra.get("pipeline", {})
        result = prepare(raw_dir, None, max_len=pipeline.get("max_len"),
                         min_count=pipeline.get("min_count"), progress=False)
    tables, spec = result.tables, result.spec
    test = tables["test"]
    oracle_auc = _auc(test[spec.label], test["oracle_prob"])
    lr = logistic_regression_auc(tables, spec)
    hist = np.concatenate([np.asarray(tables[s]["hist_len"]) for s in ("train", "valid", "test")])
    out: dict[str, Any] = {
        "num_rows": info["num_rows"],
        "seed": info["seed"],
        "oracle_auc": oracle_auc,
        "lr_auc": lr["auc"],
        "lr_C": lr["C"],
        "captured_lift": (lr["auc"] - 0.5) / (oracle_auc - 0.5),
        "ctr": {s: float(np.mean(tables[s][spec.label])) for s in ("train", "valid", "test")},
        "split_sizes": {s: int(len(tables[s][spec.label])) for s in ("train", "valid", "test")},
        "hist_len_distribution": (np.bincount(hist, minlength=spec.max_len + 1) / len(hist)).round(4).tolist(),
        "generator_intercept": info["intercept"],
    }
    if effects_off:
        sim = simulation_from_info(info)
        rows = _test_rows(sim, len(test[spec.label]))
        matched = np.allclose(np.sort(sim.prob[rows]), np.sort(np.asarray(test["oracle_prob"], np.float64)),
                              rtol=1e-4, atol=1e-7)
        out["test_rows_matched"] = bool(matched)
        y = sim.label[rows]
        out["oracle_auc_without"] = {
            c: _auc(y, sim.logit[rows] - v[rows])
            for c, v in sim.components.items() if np.any(v[rows] != 0)
        }
        others = {c: v[rows] for c, v in sim.components.items() if c not in MAIN_EFFECTS}
        observable = sim.logit[rows] - others.get("noise", 0.0)
        main_only = sim.logit[rows] - sum(others.values())
        out["oracle_auc_observable"] = _auc(y, observable)
        out["oracle_auc_main_effects"] = _auc(y, main_only)
        out["beyond_main_effects"] = out["oracle_auc_observable"] - out["oracle_auc_main_effects"]
    return out


def format_report(rep: dict[str, Any]) -> str:
    """The lines :func:`report`'s result is printed as."""
    lines = [
        f"rows {rep['num_rows']}  seed {rep['seed']}  split sizes {rep['split_sizes']}",
        f"CTR train/valid/test: {rep['ctr']['train']:.4f} / {rep['ctr']['valid']:.4f} / {rep['ctr']['test']:.4f}",
        "history length distribution (0..L): " + " ".join(f"{x:.3f}" for x in rep["hist_len_distribution"]),
        f"oracle test AUC:                 {rep['oracle_auc']:.4f}",
        f"single-field LR test AUC:        {rep['lr_auc']:.4f}  (C={rep['lr_C']})",
        f"captured lift of the LR:         {rep['captured_lift']:.3f}",
    ]
    if "oracle_auc_without" in rep:
        lines.append(f"oracle test AUC with one term switched off (test rows matched: {rep['test_rows_matched']}):")
        for c, auc in rep["oracle_auc_without"].items():
            lines.append(f"  - {c:<18} {auc:.4f}  ({auc - rep['oracle_auc']:+.4f})")
    if "oracle_auc_main_effects" in rep:
        lines += [
            f"oracle without its noise:        {rep['oracle_auc_observable']:.4f}",
            f"oracle of the main effects only: {rep['oracle_auc_main_effects']:.4f}"
            f"  (the most any model gains over a perfect linear one: {rep['beyond_main_effects']:+.4f})",
        ]
    return "\n".join(lines)
