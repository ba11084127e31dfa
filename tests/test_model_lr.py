"""Logistic regression (``--model lr``): exactly linear, serialisable, trains and exports."""

from __future__ import annotations

import json
import math
import os

import keras
import numpy as np
import pandas as pd
import pytest

from feseq_tf.metrics import auc
from feseq_tf.models import LogisticRegression, build_model
from feseq_tf.schema import FEEDBACK_FIELD, HIST_LEN, DatasetSpec, FieldSpec
from tests.test_model_feseq import L, tiny_batch, tiny_config, tiny_spec

FEEDBACK_LIST = FEEDBACK_FIELD + "_list"


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, np.float64).reshape(-1)
    return np.log(p / (1 - p))


def _set_known_weights(model: keras.Model, spec: DatasetSpec, bias: float = 0.25) -> dict:
    """Weight of id ``i`` of the k-th table ``0.05 * ((i * (k + 3)) % 7) - 0.15``, of the
    k-th numeric field ``0.1 * (k + 1) * (-1)^k`` (moderate logits); returns them by
    layer name."""
    known = {}
    tables = [lay for lay in model.layers if lay.name.startswith(("weight_", "history_weight_"))]
    for k, layer in enumerate(tables):
        w = layer.embeddings
        if len(w.shape) == 2:
            value = (0.05 * ((np.arange(w.shape[0]) * (k + 3)) % 7) - 0.15)[:, None]
        else:
            value = np.array([0.1 * (k + 1) * (-1) ** k])
        w.assign(value.astype("float32"))
        known[layer.name] = value.reshape(-1)
    model.get_layer("probability").bias.assign(np.array([bias], "float32"))
    return known


def _hand_logit(spec: DatasetSpec, x: dict, known: dict, bias: float, history: bool) -> np.ndarray:
    logit = np.full(len(x[HIST_LEN]), bias)
    real = np.arange(spec.max_len)[None, :] >= spec.max_len - x[HIST_LEN][:, None]
    n = np.maximum(real.sum(1), 1)
    for f in spec.fields:
        w = known[f"weight_{f.name}"]
        if f.history_only:  # mean one-hot of the real history entries
            logit += np.where(real, w[x[f.hist_name]], 0).sum(1) / n
        else:
            logit += w[x[f.name]] if f.is_categorical else w[0] * x[f.name]
        if history and f.sequential and not f.history_only:
            h = known[f"history_weight_{f.name}"]
            terms = h[x[f.hist_name]] if f.is_categorical else h[0] * x[f.hist_name]
            logit += np.where(real, terms, 0).sum(1) / n
    return logit


def feedback_spec() -> DatasetSpec:
    """The tiny spec with the labels of the history (ids 2 not clicked, 3 clicked)."""
    base = tiny_spec()
    fb = FieldSpec(
        FEEDBACK_FIELD, "context", "categorical", sequential=True, vocab_size=4, history_only=True
    )
    return DatasetSpec(name="tiny_fb", max_len=L, fields=base.fields + (fb,), time_clip=100)


def feedback_batch(spec: DatasetSpec) -> dict[str, np.ndarray]:
    x = tiny_batch(spec)
    real = np.arange(L)[None, :] >= L - x[HIST_LEN][:, None]
    labels = np.random.default_rng(3).integers(2, 4, real.shape)
    x[FEEDBACK_LIST] = np.where(real, labels, 0).astype("int32")
    x[FEEDBACK_FIELD] = np.ones_like(x[FEEDBACK_FIELD])  # the target's label is unknown
    return x


# ---- the model -------------------------------------------------------------------------------
def test_registry_builds_lr_with_one_weight_per_id_and_numeric_field():
    spec = tiny_spec()
    model = build_model("lr", spec, tiny_config())
    assert isinstance(model, LogisticRegression) and model.name == "lr"
    vocab = sum(f.vocab_size for f in spec.fields if f.is_categorical)
    numeric = sum(1 for f in spec.fields if not f.is_categorical)
    assert model.count_params() == vocab + numeric + 1  # + the bias


@pytest.mark.parametrize("use_history", [False, True])
def test_logit_is_the_bias_plus_the_weights_of_the_inputs(use_history):
    spec = tiny_spec()
    model = LogisticRegression(spec, tiny_config(), use_history=use_history)
    known = _set_known_weights(model, spec, bias=0.25)
    x = tiny_batch(spec, batch=8, seed=4)
    p = model.predict(x, verbose=0)
    assert p.shape == (8, 1) and p.dtype == np.float32
    np.testing.assert_allclose(_logit(p), _hand_logit(spec, x, known, 0.25, use_history), atol=2e-5)


def test_default_model_ignores_the_history_and_history_model_reads_only_real_entries():
    spec = tiny_spec()
    x = tiny_batch(spec)
    changed = {k: v.copy() for k, v in x.items()}
    changed["item_id_list"][1, -1] = x["item_id_list"][1, -1] % 9 + 1  # row 1: full history
    padded = {k: v.copy() for k, v in x.items()}
    padded["item_id_list"][0] = 5  # row 0 has an empty history: all padding
    plain = LogisticRegression(spec, tiny_config())
    with_history = LogisticRegression(spec, tiny_config(), use_history=True)
    _set_known_weights(with_history, spec)
    np.testing.assert_array_equal(plain.predict(changed, verbose=0), plain.predict(x, verbose=0))
    p, q = with_history.predict(x, verbose=0), with_history.predict(changed, verbose=0)
    assert abs(p[1, 0] - q[1, 0]) > 1e-4
    np.testing.assert_array_equal(np.delete(p, 1, 0), np.delete(q, 1, 0))
    np.testing.assert_array_equal(with_history.predict(padded, verbose=0), p)


def test_feedback_enters_as_the_mean_weight_of_the_history_labels():
    spec = feedback_spec()
    model = build_model("lr", spec, tiny_config())
    known = _set_known_weights(model, spec, bias=-0.1)
    x = feedback_batch(spec)
    np.testing.assert_allclose(
        _logit(model.predict(x, verbose=0)), _hand_logit(spec, x, known, -0.1, False), atol=2e-5
    )
    # Labels only: all other weights zero, clicked +1, not clicked -1.
    for w in model.weights:
        w.assign(np.zeros(w.shape, "float32"))
    model.get_layer(f"weight_{FEEDBACK_FIELD}").embeddings.assign(
        np.array([[7.0], [0.0], [-1.0], [1.0]], "float32")  # padding's 7 must not count
    )
    real = np.arange(L)[None, :] >= L - x[HIST_LEN][:, None]
    clicked, seen = ((x[FEEDBACK_LIST] == 3) & real).sum(1), real.sum(1)
    expected = np.where(seen > 0, (2 * clicked - seen) / np.maximum(seen, 1), 0.0)
    np.testing.assert_allclose(_logit(model.predict(x, verbose=0)), expected, atol=2e-5)


def test_use_feedback_false_builds_without_the_feedback_input():
    model = build_model("lr", feedback_spec(), tiny_config(use_feedback=False))
    assert FEEDBACK_LIST not in model.input and FEEDBACK_FIELD not in model.input
    assert not model.spec.history_only_fields


def test_use_history_must_be_a_bool():
    with pytest.raises(ValueError, match="use_history must be a bool, got 'yes'"):
        LogisticRegression(tiny_spec(), tiny_config(), use_history="yes")


@pytest.mark.parametrize("use_history", [False, True])
def test_config_round_trip_and_keras_save_load_give_identical_outputs(use_history, tmp_path):
    spec = feedback_spec()
    model = LogisticRegression(spec, tiny_config(), use_history=use_history, name="lr")
    _set_known_weights(model, spec)
    x = feedback_batch(spec)
    clone = LogisticRegression.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    assert clone.use_history is use_history
    np.testing.assert_array_equal(clone.predict(x, verbose=0), model.predict(x, verbose=0))
    path = os.path.join(tmp_path, "lr.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is LogisticRegression and loaded.name == "lr"
    assert loaded.spec == model.spec and loaded.use_history is use_history
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_embedding_l2_penalises_the_weights_a_batch_uses():
    spec = tiny_spec()
    model = build_model("lr", spec, tiny_config(embedding_l2=1.0))
    _set_known_weights(model, spec)
    model(tiny_batch(spec), training=True)
    assert sum(float(v) for v in model.losses) > 0
    plain = build_model("lr", spec, tiny_config(embedding_l2=0.0))
    plain(tiny_batch(spec), training=True)
    assert not plain.losses


def test_bfloat16_policy_still_computes_the_logit_in_float32():
    from feseq_tf import testing

    spec = tiny_spec()
    with testing.dtype_policy("mixed_bfloat16"):
        model = build_model("lr", spec, tiny_config())
    known = _set_known_weights(model, spec, bias=0.25)
    x = tiny_batch(spec)
    np.testing.assert_allclose(
        _logit(model.predict(x, verbose=0)), _hand_logit(spec, x, known, 0.25, False), atol=2e-5
    )


# ---- learning --------------------------------------------------------------------------------
@pytest.mark.slow
def test_learns_a_logistic_function_of_one_categorical_field():
    """label ~ Bernoulli(sigmoid(effect[item_id])), every other field noise."""
    from feseq_tf import testing

    spec = tiny_spec()
    effect = np.linspace(-2.0, 2.0, spec.field("item_id").vocab_size - 1)  # ids 1..10
    rng = np.random.default_rng(0)

    def sample(n: int, seed: int) -> tuple[dict, np.ndarray, np.ndarray]:
        x = testing.random_features(spec, n, seed)
        prob = 1 / (1 + np.exp(-effect[x["item_id"] - 1]))
        return x, (rng.random(n) < prob).astype("float32"), prob

    x, y, _ = sample(6000, 1)
    test_x, test_y, test_prob = sample(4000, 2)
    keras.utils.set_random_seed(0)
    model = build_model("lr", spec, tiny_config())
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy")
    before = auc(test_y, model.predict(test_x, verbose=0).reshape(-1))
    model.fit(x, y, batch_size=256, epochs=4, verbose=0)
    learned = auc(test_y, model.predict(test_x, verbose=0).reshape(-1))
    oracle = auc(test_y, test_prob)
    assert learned > 0.75 and learned > oracle - 0.03 and learned > before + 0.1
    # The learned item weights are in the order of the planted effects.
    weights = model.get_layer("weight_item_id").embeddings.numpy()[1:, 0]
    assert np.corrcoef(weights, effect)[0, 1] > 0.95


# ---- end to end: the training loop and the export --------------------------------------------
def click_log(num_users: int = 120, per_user: int = 25, seed: int = 0) -> pd.DataFrame:
    """An impression log whose click probability (``oracle_prob``) is a logistic function
    of the item's own effect and of whether the user saw the item in the last 5
    impressions: what a linear model partly and a history-aware model fully can learn."""
    rng = np.random.default_rng(seed)
    items = 24
    effect = np.linspace(-1.5, 1.5, items)
    rows = []
    for u in range(num_users):
        t = int(rng.integers(0, 1000))
        seen: list[int] = []
        for _ in range(per_user):
            t += int(rng.integers(1, 100))
            # Users come back to the items they saw half of the time.
            item = (
                int(rng.choice(seen[-5:]))
                if seen and rng.random() < 0.5
                else int(rng.integers(items))
            )
            z = effect[item] + (2.0 if item in seen[-5:] else -1.0)
            prob = 1 / (1 + math.exp(-z))
            rows.append(
                {
                    "user": f"u{u}",
                    "ts": t,
                    "item": f"i{item}",
                    "category": f"c{item % 4}",
                    "price": float(item % 7),
                    "label": int(rng.random() < prob),
                    "oracle_prob": prob,
                }
            )
            seen.append(item)
    return pd.DataFrame(rows)


def prepare_click_log(
    out_dir: str, *, feedback: bool = False, oracle: bool = True, seed: int = 0
) -> str:
    """:func:`click_log` prepared by the generic pipeline (max_len 5), with the labels of
    the history if ``feedback``, without ``oracle_prob`` unless ``oracle``; returns
    ``out_dir``."""
    from pipelines import generic

    spec = generic.PipelineSpec(
        name="clicks",
        user_key="user",
        timestamp="ts",
        non_sequential_fields=[{"name": "user"}],
        sequential_fields=[
            {"name": "item"},
            {"name": "category"},
            {"name": "price", "type": "numeric"},
        ],
        max_len=5,
        min_count=1,
        num_shards=1,
        feedback=feedback,
    )
    log = click_log(seed=seed)
    generic.build_dataset(
        log if oracle else log.drop(columns="oracle_prob"), spec, out_dir, progress=False
    )
    return out_dir


@pytest.mark.slow
def test_lr_trains_through_the_training_loop_and_exports_a_serving_savedmodel(tmp_path):
    import tensorflow as tf

    from export.savedmodel import (
        CONTRACT_FILE,
        RawFeatureEncoder,
        example_rows,
        export_run,
        serving_input_signature,
        to_request_row,
    )
    from feseq_tf import train
    from feseq_tf.schema import read_vocab

    data = prepare_click_log(str(tmp_path / "clicks"))
    run_dir = str(tmp_path / "run")
    metrics = train.main(
        [
            "--dataset",
            data,
            "--model",
            "lr",
            "--epochs",
            "3",
            "--batch-size",
            "128",
            "--output-dir",
            run_dir,
            "--learning-rate",
            "0.05",
            "--no-export",
            "--no-attention-summaries",
        ]
    )
    assert metrics["model"] == "lr" and metrics["epochs_run"] >= 1
    assert metrics["test"]["auc"] > 0.6 and math.isfinite(metrics["test"]["captured_lift"])
    with open(os.path.join(run_dir, "config.json")) as fh:
        assert json.load(fh)["model_name"] == "lr"

    path = export_run(run_dir, str(tmp_path / "export"), name="lr")
    with open(os.path.join(path, CONTRACT_FILE)) as fh:
        assert list(json.load(fh)["signatures"]) == ["serving_default"]
    loaded = tf.saved_model.load(path)
    assert list(loaded.signatures) == ["serving_default"]
    spec = DatasetSpec.load(run_dir)
    vocabs = {f.name: read_vocab(run_dir, f.name) for f in spec.fields if f.is_categorical}
    rows = [to_request_row(spec, r) for r in example_rows(spec, vocabs, 5, seed=1)]
    raw = {}
    for name, ts in serving_input_signature(spec).items():
        values = [r[name] for r in rows]
        raw[name] = tf.constant(
            [v.encode() for v in values] if ts.dtype == tf.string else values, dtype=ts.dtype
        )
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"), compile=False)
    expected = model(RawFeatureEncoder(spec, os.path.join(run_dir, "vocab"))(raw), training=False)
    got = loaded.signatures["serving_default"](**raw)["probability"]
    np.testing.assert_allclose(got.numpy(), np.asarray(expected).reshape(-1), atol=1e-6)


def test_id_dropout_trains_the_user_weight_of_the_oov_id_and_predicts_with_the_ids_given():
    spec = tiny_spec()
    keras.utils.set_random_seed(3)
    model = LogisticRegression(spec, tiny_config(id_dropout={"user_id": 0.999}))
    known = _set_known_weights(model, spec, bias=0.25)
    x = tiny_batch(spec, batch=8, seed=4)
    x["user_id"][:] = np.arange(8) % 5 + 2  # known users
    oov = dict(x, user_id=np.ones_like(x["user_id"]))
    np.testing.assert_allclose(_logit(model(x, training=False).numpy()),
                               _hand_logit(spec, x, known, 0.25, False), atol=2e-5)
    np.testing.assert_allclose(_logit(model(x, training=True).numpy()),
                               _hand_logit(spec, oov, known, 0.25, False), atol=2e-5)
