"""The labels of the history (the pipelines' ``feedback`` option, ``use_feedback``).

A hand-made impression log of a few users, with impressions that share a timestamp,
is prepared with and without the option; the expected histories are rebuilt here by a
plain loop over each user's impressions.
"""

from __future__ import annotations

import dataclasses
import glob
import os

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from export import savedmodel
from feseq_tf.config import ModelConfig
from feseq_tf.data import make_dataset
from feseq_tf.models.registry import build_model
from feseq_tf.schema import (
    FEEDBACK_FIELD,
    FEEDBACK_UNKNOWN_ID,
    FEEDBACK_VALUES,
    HIST_LEN,
    PAD_ID,
    DatasetSpec,
    FieldSpec,
    read_vocab,
)
from pipelines import generic

MAX_LEN = 4
FEEDBACK_LIST = FEEDBACK_FIELD + "_list"
TINY = dict(
    embedding_dim=4,
    mlp_units=[8],
    pooling_hidden=8,
    transformer_heads=2,
    input_interaction_layers=1,
    target_interaction_layers=1,
    embedding_l2=0.0,
    embedding_stddev=0.5,
    dropout=0.0,
)


def _log(num_users: int = 6, seed: int = 0) -> pd.DataFrame:
    """Impressions of ``num_users`` users (2 to 12 each), every third one at the same
    timestamp as the impression before it, rows in a shuffled order."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(num_users):
        t = int(rng.integers(0, 50))
        for k in range(int(rng.integers(2, 13))):
            if k % 3 != 2:  # every third impression ties with the one before
                t += int(rng.integers(1, 20))
            rows.append(
                {
                    "user": f"u{u}",
                    "ts": t,
                    "item": f"i{int(rng.integers(0, 5))}",
                    "price": round(float(rng.uniform(1, 9)), 2),
                    "label": int(rng.random() < 0.4),
                }
            )
    df = pd.DataFrame(rows).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    df["impression"] = np.arange(len(df), dtype=np.float64)  # identifies the record
    return df


def _pipeline_spec(**kwargs) -> generic.PipelineSpec:
    return generic.PipelineSpec(
        name="feedback_test",
        user_key="user",
        timestamp="ts",
        non_sequential_fields=[
            {"name": "user"},
            {"name": "impression", "type": "numeric", "role": "context"},
        ],
        sequential_fields=[{"name": "item"}, {"name": "price", "type": "numeric"}],
        max_len=MAX_LEN,
        min_count=1,
        num_shards=1,
        **kwargs,
    )


def _expected_feedback(df: pd.DataFrame) -> dict[str, list[int]]:
    """Impression -> feedback ids of its history, left-padded, by a plain loop."""
    out = {}
    for _, g in df.assign(pos=np.arange(len(df))).groupby("user"):
        g = g.sort_values(["ts", "pos"], kind="stable")
        rows = list(g.itertuples())
        for k, r in enumerate(rows):
            ids = [
                FEEDBACK_UNKNOWN_ID if p.ts == r.ts else 2 + int(p.label)
                for p in rows[max(0, k - MAX_LEN) : k]
            ]
            out[int(r.impression)] = [PAD_ID] * (MAX_LEN - len(ids)) + ids
    return out


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    return _log()


@pytest.fixture(scope="module")
def prepared(log, tmp_path_factory):
    """The log prepared with feedback (``on``), by default (``default``) and with the
    option explicitly off (``off``)."""
    root = tmp_path_factory.mktemp("feedback")
    out = {}
    for key, kwargs in (("on", {"feedback": True}), ("default", {}), ("off", {"feedback": False})):
        out[key] = generic.build_dataset(
            log, _pipeline_spec(**kwargs), str(root / key), progress=False
        )
    return out


def _impressions(spec: DatasetSpec, scaled: np.ndarray) -> np.ndarray:
    """The raw ``impression`` number of records (undoing the min-max scaling)."""
    f = spec.field("impression")
    return np.round(np.asarray(scaled, np.float64) * (f.max - f.min) + f.min).astype(int)


def _all_records(result) -> dict[str, np.ndarray]:
    return {
        name: np.concatenate([result.tables[s][name] for s in ("train", "valid", "test")])
        for name in result.tables["train"]
    }


def test_feedback_list_holds_the_labels_of_earlier_impressions_only(log, prepared):
    result = prepared["on"]
    records = _all_records(result)
    impressions = _impressions(result.spec, records["impression"])
    expected = _expected_feedback(log)
    got = {
        int(imp): [int(v) for v in row]
        for imp, row in zip(impressions, records[FEEDBACK_LIST], strict=True)
    }
    assert got == expected
    # The log has ties, and they are hidden: a tied earlier impression gives the unknown id.
    assert (records[FEEDBACK_LIST] == FEEDBACK_UNKNOWN_ID).any()
    assert set(np.unique(records[FEEDBACK_LIST])) <= {PAD_ID, FEEDBACK_UNKNOWN_ID, 2, 3}


def test_target_value_is_unknown_and_first_impression_has_empty_feedback(log, prepared):
    records = _all_records(prepared["on"])
    np.testing.assert_array_equal(records[FEEDBACK_FIELD], FEEDBACK_UNKNOWN_ID)
    first = records[HIST_LEN] == 0
    assert first.sum() == log["user"].nunique()  # one first impression per user
    np.testing.assert_array_equal(records[FEEDBACK_LIST][first], PAD_ID)
    # Real history entries and feedback entries line up (padding is padding in both).
    real = np.arange(MAX_LEN)[None, :] >= MAX_LEN - records[HIST_LEN][:, None]
    np.testing.assert_array_equal(records[FEEDBACK_LIST] != PAD_ID, real)


def test_feedback_field_in_spec_vocab_and_not_a_target_item_field(prepared):
    spec, out_dir = prepared["on"].spec, prepared["on"].out_dir
    field = spec.field(FEEDBACK_FIELD)
    assert field.history_only and field.sequential and field.role == "context"
    assert field.vocab_size == len(FEEDBACK_VALUES) + 2
    assert FEEDBACK_FIELD not in [f.name for f in spec.target_item_fields]
    assert read_vocab(out_dir, FEEDBACK_FIELD) == list(FEEDBACK_VALUES)
    assert DatasetSpec.load(out_dir) == spec  # round trip through dataset_spec.json
    assert spec.without_feedback().fields == prepared["default"].spec.fields


def test_option_off_is_byte_identical_and_on_adds_only_the_feedback(prepared):
    default_dir, off_dir = prepared["default"].out_dir, prepared["off"].out_dir
    names = sorted(
        os.path.relpath(p, default_dir)
        for p in glob.glob(os.path.join(default_dir, "**", "*"), recursive=True)
        if os.path.isfile(p) and not p.endswith("report.json")  # report holds timings
    )
    assert any(n.endswith(".tfrecord") for n in names) and "dataset_spec.json" in names
    for name in names:
        with open(os.path.join(default_dir, name), "rb") as a:
            with open(os.path.join(off_dir, name), "rb") as b:
                assert a.read() == b.read(), name
    # Parsed records: feedback on changes nothing but adding the feedback features.
    off_spec = prepared["default"].spec
    for split in ("train", "valid", "test"):
        off, _ = next(iter(make_dataset(default_dir, split, 10_000, spec=off_spec)))
        on, _ = next(iter(make_dataset(prepared["on"].out_dir, split, 10_000)))
        assert set(on) - set(off) == {FEEDBACK_FIELD, FEEDBACK_LIST}
        for name in off:
            np.testing.assert_array_equal(on[name].numpy(), off[name].numpy(), err_msg=name)


def test_old_spec_dicts_without_history_only_load_unchanged():
    d = {
        "name": "old",
        "max_len": 3,
        "fields": [{"name": "item", "role": "item", "type": "categorical", "sequential": True}],
    }
    spec = DatasetSpec.from_dict(d)
    assert not spec.history_only_fields and spec.without_feedback() is spec
    assert "history_only" not in spec.to_dict()["fields"][0]


def test_bad_feedback_options_fail_with_clear_errors():
    with pytest.raises(ValueError, match="history_only needs sequential=True"):
        FieldSpec("feedback", "context", "categorical", sequential=False, history_only=True)
    with pytest.raises(ValueError, match="role other than 'item'"):
        FieldSpec("feedback", "item", "categorical", sequential=True, history_only=True)
    with pytest.raises(ValueError, match="feedback must be true or false"):
        _pipeline_spec(feedback="yes")
    with pytest.raises(ValueError, match="already uses the names \\['feedback'\\]"):
        generic.PipelineSpec(
            name="x", user_key="u", timestamp="t", sequential_fields=["feedback"], feedback=True
        )
    with pytest.raises(ValueError, match="use_feedback must be a bool"):
        ModelConfig(use_feedback="no")


def test_pipeline_spec_file_key_and_cli_flag(log, tmp_path):
    path = str(tmp_path / "spec.yaml")
    _pipeline_spec(feedback=True).save(path)
    assert generic.PipelineSpec.load(path).feedback is True
    _pipeline_spec().save(path)
    assert generic.PipelineSpec.load(path).feedback is False
    csv = str(tmp_path / "log.csv")
    log.to_csv(csv, index=False)
    assert (
        generic.main(
            ["--input", csv, "--spec", path, "--out", str(tmp_path / "d"), "--quiet", "--feedback"]
        )
        == 0
    )
    assert DatasetSpec.load(str(tmp_path / "d")).field(FEEDBACK_FIELD).history_only


# ---- models -------------------------------------------------------------------------------
def _model_inputs(model) -> set[str]:
    return set(model.input) if isinstance(model.input, dict) else {t.name for t in model.inputs}


@pytest.mark.parametrize("model_name", ["feseq", "din", "deepfm"])
def test_models_train_a_step_and_learn_the_feedback_embedding(prepared, model_name):
    keras.utils.set_random_seed(1)
    out_dir = prepared["on"].out_dir
    model = build_model(model_name, prepared["on"].spec, ModelConfig(**TINY))
    assert {FEEDBACK_FIELD, FEEDBACK_LIST} <= _model_inputs(model)
    table = model.get_layer(f"embedding_{FEEDBACK_FIELD}")
    before = table.get_weights()[0].copy()
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy")
    history = model.fit(make_dataset(out_dir, "train", 32, spec=model.spec).take(1), verbose=0)
    assert np.isfinite(history.history["loss"][0])
    moved = np.abs(table.get_weights()[0] - before).max(axis=1)
    assert moved[2] > 0 and moved[3] > 0  # the "not clicked" and "clicked" rows learn


@pytest.mark.parametrize("model_name", ["feseq", "din", "dcnv2"])
def test_use_feedback_false_builds_without_feedback_and_round_trips(prepared, model_name, tmp_path):
    out_dir = prepared["on"].out_dir
    for use_feedback in (False, True):
        config = ModelConfig(**TINY, use_feedback=use_feedback)
        model = build_model(model_name, prepared["on"].spec, config)
        has = {FEEDBACK_FIELD, FEEDBACK_LIST} <= _model_inputs(model)
        assert has == use_feedback
        assert (FEEDBACK_FIELD in [f.name for f in model.spec.fields]) == use_feedback
        features, _ = next(iter(make_dataset(out_dir, "test", 64, spec=model.spec)))
        path = str(tmp_path / f"{model_name}_{use_feedback}.keras")
        model.save(path)
        loaded = keras.saving.load_model(path, compile=False)
        assert loaded.spec == model.spec and loaded.config.use_feedback == use_feedback
        np.testing.assert_allclose(
            loaded(features, training=False), model(features, training=False), atol=1e-6
        )


def test_without_feedback_equals_a_model_built_on_the_dataset_without_it(prepared):
    config = ModelConfig(**TINY, use_feedback=False)
    a = build_model("feseq", prepared["on"].spec, config)
    b = build_model("feseq", prepared["default"].spec, ModelConfig(**TINY))
    assert a.spec.fields == b.spec.fields
    assert [w.shape for w in a.weights] == [w.shape for w in b.weights]


# ---- serving ------------------------------------------------------------------------------
def _raw_rows(log: pd.DataFrame, spec: DatasetSpec, impressions: np.ndarray) -> list[dict]:
    """Raw request rows of the given impressions: each user's earlier impressions as the
    history, their labels as ``feedback_list`` ("NULL" where tied with the target)."""
    rows_of = {}
    for _, g in log.assign(pos=np.arange(len(log))).groupby("user"):
        g = g.sort_values(["ts", "pos"], kind="stable")
        rows = list(g.itertuples())
        for k, r in enumerate(rows):
            earlier = rows[max(0, k - MAX_LEN - 2) : k]  # longer than max_len: truncated
            row = {
                "user": r.user,
                "impression": float(r.impression),
                "item": r.item,
                "price": float(r.price),
                "ts": int(r.ts),
            }
            row["item_list"] = [p.item for p in earlier]
            row["price_list"] = [float(p.price) for p in earlier]
            row["ts_list"] = [int(p.ts) for p in earlier]
            row[FEEDBACK_LIST] = ["NULL" if p.ts == r.ts else str(p.label) for p in earlier]
            rows_of[int(r.impression)] = row
    return [rows_of[i] for i in impressions]


def _columnar(spec: DatasetSpec, rows: list[dict]) -> dict[str, tf.Tensor]:
    signature = savedmodel.serving_input_signature(spec)
    joined = [savedmodel.to_request_row(spec, r) for r in rows]
    return {n: tf.constant([r[n] for r in joined], dtype=ts.dtype) for n, ts in signature.items()}


@pytest.mark.slow
@pytest.mark.parametrize("use_feedback", [True, False])
def test_saved_model_on_raw_rows_equals_keras_on_records(log, prepared, tmp_path, use_feedback):
    keras.utils.set_random_seed(3)
    result = prepared["on"]
    model = build_model("feseq", result.spec, ModelConfig(**TINY, use_feedback=use_feedback))
    spec = result.spec.model_view(model.spec)
    signature = savedmodel.serving_input_signature(spec)
    assert (FEEDBACK_LIST in signature) == use_feedback
    assert FEEDBACK_FIELD not in signature  # the target's label is never a request input
    vocab = os.path.join(result.out_dir, "vocab")
    path = str(tmp_path / "saved_model")
    savedmodel.write_saved_model(model, spec, vocab, path)
    features, _ = next(iter(make_dataset(result.out_dir, "train", 10_000, spec=spec)))
    impressions = _impressions(spec, features["impression"].numpy())
    rows = _raw_rows(log, spec, impressions)
    expected = model(features, training=False).numpy().reshape(-1)
    assert expected.std() > 1e-3  # the random model discriminates: wrong ids would show
    serve = tf.saved_model.load(path).signatures["serving_default"]
    got = serve(**_columnar(spec, rows))["probability"].numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    if use_feedback:  # the labels of the history reach the model
        flipped = [
            {**r, FEEDBACK_LIST: [{"0": "1", "1": "0"}.get(v, v) for v in r[FEEDBACK_LIST]]}
            for r in rows
        ]
        other = serve(**_columnar(spec, flipped))["probability"].numpy()
        assert np.abs(other - got).max() > 1e-4


def test_export_of_a_run_without_feedback_asks_no_feedback(prepared, tmp_path):
    result = prepared["on"]
    model = build_model("din", result.spec, ModelConfig(**TINY, use_feedback=False))
    run = tmp_path / "run"
    os.makedirs(run)
    model.save(str(run / "model.keras"))
    result.spec.save(str(run))
    os.symlink(os.path.join(result.out_dir, "vocab"), run / "vocab")
    loaded, spec = savedmodel.load_run(str(run))
    assert FEEDBACK_FIELD not in [f.name for f in spec.fields]
    assert FEEDBACK_LIST not in savedmodel.serving_input_signature(spec)
    assert dataclasses.replace(spec, fields=result.spec.fields) == result.spec
