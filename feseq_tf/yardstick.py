"""The GBDT yardstick: gradient-boosted trees on hand-made features of a prepared dataset.

A reference row for every benchmark table, not a product model: scikit-learn's
``HistGradientBoostingClassifier`` on features that spell out what the sequence models
have to learn by themselves, computed from the prepared TFRecords
(:func:`feseq_tf.data.read_columns`):

* out-of-fold target encodings of every categorical target-side field (5 folds on the
  training split, assigned by a seeded permutation; validation and test use the whole
  training split), and the raw ids of those with at most :data:`MAX_CATEGORIES` ids as
  native categorical features;
* the numeric target-side fields and the history length;
* for every sequential categorical field, the number of real history entries equal to
  the target's value and the position of the most recent one (1 = the last entry, NaN
  when none matches);
* with the labels of the history (the history-only field ``feedback``), the share of
  clicked impressions among the history entries whose label is known (NaN when none);
* on the synthetic generator's datasets (optional, by default on), the generator's own
  history statistics: same-shop and same-category counts, plain and weighted with the
  generator's position and time decays (knowledge no learned model is given).

Trees are fitted on the training split, 10 at a time, and stop when the validation AUC
has not improved for :data:`PATIENCE` trees; the number of trees with the best
validation AUC is kept. The test metrics have the form of
:func:`feseq_tf.training.evaluate_split`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from feseq_tf import metrics as metrics_lib
from feseq_tf.schema import FEEDBACK_FIELD, GROUP_KEY, HIST_LEN, ORACLE_KEY, DatasetSpec

FOLDS = 5
PRIOR_WEIGHT = 20.0
#: Categorical fields with at most this many ids also enter as native categorical features.
MAX_CATEGORIES = 255
#: Trees fitted between two validation checks, and trees without improvement that stop it.
CHUNK = 10
PATIENCE = 50
MAX_ITER = 400
#: Feedback ids (see :data:`feseq_tf.schema.FEEDBACK_VALUES`): not clicked, clicked.
FEEDBACK_NOT_CLICKED, FEEDBACK_CLICKED = 2, 3
#: The generator's fields its history statistics use.
GENERATOR_FIELDS = ("shop_id", "category_1_id")


def target_encoding(
    train_ids: np.ndarray,
    train_y: np.ndarray,
    ids: np.ndarray | None,
    seed: int | None = None,
) -> np.ndarray:
    """Smoothed click rate of each id; out-of-fold on the training split when ``ids`` is None.

    Args:
        train_ids: int array [N]. The field's ids in the training split.
        train_y: float array [N]. The training labels.
        ids: int array or None. Ids to encode with the whole training split; None
            encodes the training rows out of fold.
        seed: int or None. Folds by a permutation seeded with it; None: row ``i`` is in
            fold ``i % FOLDS``.

    Returns:
        float64 array: ``(clicks + PRIOR_WEIGHT * ctr) / (impressions + PRIOR_WEIGHT)``.
    """
    train_ids = np.asarray(train_ids, np.int64)
    size = int(train_ids.max(initial=0)) + 2
    prior = float(np.mean(train_y)) if len(train_y) else 0.5

    def rate(fit_ids: np.ndarray, fit_y: np.ndarray, query: np.ndarray) -> np.ndarray:
        n = np.bincount(fit_ids, minlength=size).astype(np.float64)
        c = np.bincount(fit_ids, weights=fit_y, minlength=size)
        query = np.clip(np.asarray(query, np.int64), 0, size - 1)
        return (c[query] + PRIOR_WEIGHT * prior) / (n[query] + PRIOR_WEIGHT)

    if ids is not None:
        return rate(train_ids, train_y, ids)
    order = np.arange(len(train_ids))
    if seed is not None:
        order = np.random.default_rng(seed).permutation(len(train_ids))
    fold = order % FOLDS
    out = np.zeros(len(train_ids))
    for k in range(FOLDS):
        held = fold == k
        out[held] = rate(train_ids[~held], train_y[~held], train_ids[held])
    return out


def real_entries(hist_len: np.ndarray, max_len: int) -> np.ndarray:
    """bool [N, L]: the real (trailing ``hist_len``) entries of left-padded histories."""
    return np.arange(max_len)[None, :] >= max_len - np.asarray(hist_len)[:, None]


def match_features(
    target: np.ndarray, history: np.ndarray, hist_len: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """How often the target's value is in its history, and how recently.

    Args:
        target: int [N]. The target values.
        history: int [N, L]. The left-padded histories (the last column is the most
            recent entry).
        hist_len: int [N]. Number of real entries.

    Returns:
        ``count`` (float64 [N], real entries equal to the target) and ``last``
        (float64 [N], position of the most recent such entry, 1 = the last one; NaN
        when none matches).
    """
    length = history.shape[1]
    match = (history == np.asarray(target)[:, None]) & real_entries(hist_len, length)
    count = match.sum(axis=1).astype(np.float64)
    # Index of the last True per row, counted from the right, plus one.
    from_right = np.argmax(match[:, ::-1], axis=1) + 1.0
    last = np.where(count > 0, from_right, np.nan)
    return count, last


def feedback_share(feedback: np.ndarray, hist_len: np.ndarray) -> np.ndarray:
    """Share of clicked impressions among the real history entries with a known label
    (ids :data:`FEEDBACK_NOT_CLICKED` / :data:`FEEDBACK_CLICKED`); NaN when none."""
    real = real_entries(hist_len, feedback.shape[1])
    clicked = ((feedback == FEEDBACK_CLICKED) & real).sum(axis=1)
    known = (((feedback == FEEDBACK_CLICKED) | (feedback == FEEDBACK_NOT_CLICKED)) & real).sum(
        axis=1
    )
    return np.where(known > 0, clicked / np.maximum(known, 1), np.nan)


def generator_history_features(
    t: dict[str, np.ndarray], position_decay: float, time_decay: float
) -> list[np.ndarray]:
    """Same-shop / same-category counts of the history, plain and decayed as the
    synthetic generator weighs them (``pipelines.synthetic.Effects``), and the history
    length."""
    length = t["shop_id_list"].shape[1]
    j = np.arange(length, 0, -1)[None, :]  # left-padded: the last column is the most recent
    dt = (t["times"][:, None] - t["times_list"]).astype(np.float64)
    decay = np.exp(-position_decay * (j - 1) - time_decay * dt / 1000.0)
    real = t["shop_id_list"] > 0
    shop = (t["shop_id_list"] == t["shop_id"][:, None]) & real
    cat = (t["category_1_id_list"] == t["category_1_id"][:, None]) & real
    return [shop.sum(1), cat.sum(1), (shop * decay).sum(1), (cat * decay).sum(1), t["hist_len"]]


def generator_decays(spec: DatasetSpec) -> tuple[float, float] | None:
    """The synthetic generator's (position, time) history decays, or None when the
    dataset is not the generator's (no generator record with its effect strengths, or
    not its fields). The generator records every strength it used."""
    generator = spec.extra.get("generator")
    names = {f.name for f in spec.fields if f.sequential}
    if not isinstance(generator, dict) or not set(GENERATOR_FIELDS) <= names:
        return None
    effects = generator.get("effects")
    keys = ("history_position_decay", "history_time_decay")
    if not isinstance(effects, dict) or not all(k in effects for k in keys):
        return None
    return effects[keys[0]], effects[keys[1]]


class _Features:
    """The feature columns of the three splits, built one group of columns at a time."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.categorical: list[bool] = []
        self.columns: dict[str, list[np.ndarray]] = {}

    def add(self, name: str, values: dict[str, np.ndarray], categorical: bool = False) -> None:
        self.names.append(name)
        self.categorical.append(categorical)
        for split, v in values.items():
            self.columns.setdefault(split, []).append(np.asarray(v, np.float64))

    def matrix(self, split: str) -> np.ndarray:
        return np.stack(self.columns[split], axis=1)


def _splits(
    dataset_dir: str, spec: DatasetSpec, names: list[str]
) -> dict[str, dict[str, np.ndarray]]:
    from feseq_tf.data import read_columns

    names = list(dict.fromkeys(names))
    return {s: read_columns(dataset_dir, s, names, spec=spec) for s in ("train", "valid", "test")}


def build_features(
    dataset_dir: str, spec: DatasetSpec, *, seed: int, generator_features: bool
) -> tuple[_Features, dict[str, dict[str, np.ndarray]]]:
    """The yardstick's features of every split, and the label/group/oracle columns."""
    base = [spec.label, GROUP_KEY, HIST_LEN] + ([ORACLE_KEY] if spec.has_oracle else [])
    target_fields = [f for f in spec.fields if not f.history_only]
    cols = _splits(dataset_dir, spec, base + [f.name for f in target_fields])
    y_train = np.asarray(cols["train"][spec.label], np.float64)
    feats = _Features()
    for f in target_fields:
        if f.is_categorical:
            train_ids = cols["train"][f.name]
            feats.add(
                f"te_{f.name}",
                {
                    s: target_encoding(
                        train_ids, y_train, None if s == "train" else c[f.name], seed
                    )
                    for s, c in cols.items()
                },
            )
            if f.vocab_size <= MAX_CATEGORIES:
                feats.add(f.name, {s: c[f.name] for s, c in cols.items()}, categorical=True)
        else:
            feats.add(f.name, {s: c[f.name] for s, c in cols.items()})
    feats.add(HIST_LEN, {s: c[HIST_LEN] for s, c in cols.items()})
    # One read per history field keeps the memory to one [N, L] column at a time.
    for f in spec.sequential_fields:
        if not f.is_categorical or f.history_only:
            continue
        hist = _splits(dataset_dir, spec, [f.hist_name])
        matches = {
            s: match_features(cols[s][f.name], hist[s][f.hist_name], cols[s][HIST_LEN])
            for s in cols
        }
        feats.add(f"matches_{f.name}", {s: m[0] for s, m in matches.items()})
        feats.add(f"last_match_{f.name}", {s: m[1] for s, m in matches.items()})
    feedback = next((f for f in spec.history_only_fields if f.name == FEEDBACK_FIELD), None)
    if feedback is not None:
        hist = _splits(dataset_dir, spec, [feedback.hist_name])
        feats.add(
            "feedback_share",
            {s: feedback_share(hist[s][feedback.hist_name], cols[s][HIST_LEN]) for s in cols},
        )
    decays = generator_decays(spec) if generator_features else None
    if decays is not None:
        names = [
            "times",
            "times_list",
            "shop_id",
            "shop_id_list",
            "category_1_id",
            "category_1_id_list",
            HIST_LEN,
        ]
        t = _splits(dataset_dir, spec, names)
        stats = {s: generator_history_features(t[s], *decays) for s in t}
        for i, name in enumerate(("shops", "categories", "shops_decayed", "categories_decayed")):
            feats.add(f"generator_{name}", {s: v[i] for s, v in stats.items()})
    return feats, cols


def gbdt_run(
    dataset_dir: str,
    *,
    seed: int,
    max_iter: int = MAX_ITER,
    generator_features: bool = True,
) -> dict[str, Any]:
    """Fit the yardstick on a prepared dataset and evaluate it.

    Args:
        dataset_dir: str. A prepared dataset directory.
        seed: int. Seeds the target encodings' folds and the trees.
        max_iter: int. Most trees. Defaults to :data:`MAX_ITER`.
        generator_features: bool. Add the synthetic generator's history statistics when
            the dataset is the generator's (ignored otherwise). Defaults to True.

    Returns:
        A dict: ``test`` and ``valid`` (metrics as
        :func:`feseq_tf.training.evaluate_split` returns them), ``trees`` (kept),
        ``features`` (names), ``seconds``.

    Raises:
        ValueError: ``max_iter`` or ``seed`` not an integer of the right range.
    """
    for name, value, low in (("max_iter", max_iter, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
    from sklearn.ensemble import HistGradientBoostingClassifier

    start = time.perf_counter()
    spec = DatasetSpec.load(dataset_dir)
    feats, cols = build_features(
        dataset_dir, spec, seed=seed, generator_features=generator_features
    )
    x = {s: feats.matrix(s) for s in cols}
    y = {s: np.asarray(c[spec.label]).astype(np.int64) for s, c in cols.items()}
    model = HistGradientBoostingClassifier(
        max_iter=CHUNK,
        learning_rate=0.05,
        max_leaf_nodes=31,
        early_stopping=False,
        categorical_features=np.asarray(feats.categorical),
        warm_start=True,
        random_state=seed,
    )
    best_auc, best_trees = -np.inf, 0
    while True:
        model.fit(x["train"], y["train"])
        trees = model.n_iter_
        valid_auc = metrics_lib.auc(y["valid"], model.predict_proba(x["valid"])[:, 1])
        if valid_auc > best_auc:
            best_auc, best_trees = valid_auc, trees
        if trees >= max_iter or trees - best_trees >= PATIENCE:
            break
        model.set_params(max_iter=min(trees + CHUNK, max_iter))
    # The best number of trees, to the tree, among those fitted.
    valid_aucs = [
        metrics_lib.auc(y["valid"], p[:, 1]) for p in model.staged_predict_proba(x["valid"])
    ]
    best = int(np.argmax(valid_aucs))
    out: dict[str, Any] = {"trees": best + 1, "features": feats.names}
    for split in ("valid", "test"):
        probs = next(p for i, p in enumerate(model.staged_predict_proba(x[split])) if i == best)
        c = cols[split]
        out[split] = metrics_lib.evaluate_predictions(
            c[spec.label],
            probs[:, 1],
            groups=c[GROUP_KEY],
            oracle=c[ORACLE_KEY] if spec.has_oracle else None,
        )
    out["seconds"] = round(time.perf_counter() - start, 1)
    return out


def gbdt_metrics(dataset_dir: str, *, seed: int, **kwargs: Any) -> dict[str, float]:
    """The yardstick's test metrics (``auc``, ``gauc``, ``logloss``, and ``oracle_auc`` /
    ``captured_lift`` when the dataset has an oracle), as
    :func:`feseq_tf.training.evaluate_split` returns them. ``kwargs`` go to
    :func:`gbdt_run`."""
    return gbdt_run(dataset_dir, seed=seed, **kwargs)["test"]
