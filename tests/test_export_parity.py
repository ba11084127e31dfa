"""Train/serve parity: the SavedModel on raw rows == the Keras model on the TFRecords.

The raw rows are rebuilt from the synthetic raw Ele.me-layout files the training
dataset was prepared from (the same read as the pipeline, histories as each user's
earlier impressions), so the test covers the whole path raw value -> id / scaled number.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import tensorflow as tf

from export import archive, contract, raw_encoder, savedmodel
from export.client import canonical_string
from feseq_tf.data import make_dataset
from feseq_tf.schema import HIST_LEN, OOV_ID, DatasetSpec
from pipelines import eleme, generic

ATOL = 1e-5
EXTRA_HISTORY = 3  # raw histories keep up to max_len + 3 entries: truncation is tested


def _raw_test_rows(dataset_dir: str, spec: DatasetSpec) -> tuple[list[dict], np.ndarray]:
    """Raw request rows of the test split, in record order, and their raw timestamps."""
    extra = spec.extra
    df, _ = eleme.read_days(
        os.path.join(dataset_dir, "raw"),
        extra["days"],
        sample_frac=extra["sample_frac"],
        seed=extra["seed"],
        progress=False,
    )
    n = len(df)
    users = df[spec.user_key].astype(str).to_numpy()
    times = df[spec.time_field].to_numpy(np.int64)
    columns = {
        f.name: (
            df[f.name].astype(str).to_numpy()
            if f.is_categorical
            else df[f.name].to_numpy(np.float64)
        )
        for f in spec.fields
    }
    # Each impression's history: the same user's earlier impressions (time, then file order).
    history: dict[int, list[int]] = {}
    previous: list[int] = []
    order = np.lexsort((np.arange(n), times, users))
    for k, r in enumerate(order):
        if k == 0 or users[order[k - 1]] != users[r]:
            previous = []
        history[int(r)] = previous[-(spec.max_len + EXTRA_HISTORY) :]
        previous = previous + [int(r)]
    time_order = np.argsort(times, kind="stable")
    _, end_valid = generic.split_bounds(n, extra["pipeline"]["split_ratios"])
    rows = []
    for r in time_order[end_valid:]:
        row = {f.name: columns[f.name][r] for f in spec.fields}
        row[spec.time_field] = int(times[r])
        for f in spec.sequential_fields:
            row[f.hist_name] = [columns[f.name][h] for h in history[r]]
        row[spec.time_hist_name] = [int(times[h]) for h in history[r]]
        rows.append(row)
    return rows, times[time_order[end_valid:]]


def _columnar(spec: DatasetSpec, rows: list[dict]) -> dict[str, tf.Tensor]:
    """Rows -> the serving signature's tensors (histories as '^'-joined strings)."""
    signature = contract.serving_input_signature(spec)
    joined = [contract.to_request_row(spec, r) for r in rows]
    return {
        name: tf.constant([r[name] for r in joined], dtype=ts.dtype)
        for name, ts in signature.items()
    }


def _records(dataset_dir: str, split: str = "test") -> dict[str, np.ndarray]:
    features, _ = next(iter(make_dataset(dataset_dir, split, batch_size=1_000_000)))
    return {k: v.numpy() for k, v in features.items()}


@pytest.fixture(scope="module")
def parity_setup(tiny_trained_run, tmp_path_factory):
    """A perturbed copy of the tiny model (so that wrong ids change the output), its
    raw-feature SavedModel, the raw test rows and the matching records."""
    model, spec = savedmodel.load_run(tiny_trained_run.run_dir)
    rng = np.random.default_rng(7)
    for w in model.weights:  # trained embeddings are ~1e-4: make every id matter
        if "embedding" in w.path:
            w.assign(rng.normal(0.0, 0.05, size=w.shape).astype(w.dtype))
        elif w.path == "probability/bias":  # away from the 4% CTR, where outputs saturate
            w.assign(np.zeros(w.shape, w.dtype))
    path = str(tmp_path_factory.mktemp("parity") / "saved_model")
    archive.write_saved_model(model, spec, os.path.join(tiny_trained_run.run_dir, "vocab"), path)
    rows, raw_times = _raw_test_rows(tiny_trained_run.dataset_dir, spec)
    records = _records(tiny_trained_run.dataset_dir)
    np.testing.assert_array_equal(records[spec.time_field], raw_times)  # same rows, same order
    loaded = tf.saved_model.load(path)
    encoder = raw_encoder.RawFeatureEncoder(spec, os.path.join(tiny_trained_run.run_dir, "vocab"))
    return {
        "model": model,
        "spec": spec,
        "path": path,
        "rows": rows,
        "records": records,
        "loaded": loaded,
        "encoder": encoder,
    }


def _assert_inputs_equal(spec: DatasetSpec, got: dict, expected: dict) -> None:
    for name in spec.model_input_names():
        g, e = np.asarray(got[name]), np.asarray(expected[name])
        assert g.dtype == e.dtype, f"{name}: dtype {g.dtype} != {e.dtype}"
        if g.dtype.kind == "f":
            np.testing.assert_allclose(g, e, rtol=0, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(g, e, err_msg=name)


def test_raw_rows_encode_to_the_recorded_model_inputs(parity_setup):
    s = parity_setup
    encoded = s["encoder"](_columnar(s["spec"], s["rows"]))
    _assert_inputs_equal(s["spec"], {k: v.numpy() for k, v in encoded.items()}, s["records"])
    # The test split has rows whose raw history is longer than max_len, and empty ones.
    lengths = np.array([len(r[s["spec"].time_hist_name]) for r in s["rows"]])
    assert (lengths > s["spec"].max_len).any() and (lengths == 0).any()
    assert (s["records"]["user_id"] == OOV_ID).any() or (s["records"]["item_id"] == OOV_ID).any()


def test_saved_model_probabilities_equal_keras_on_records(parity_setup):
    s = parity_setup
    expected = s["model"](s["records"], training=False).numpy().reshape(-1)
    assert expected.std() > 1e-2, (
        "the perturbed model must discriminate for the test to mean anything"
    )
    got = s["loaded"].signatures["serving_default"](**_columnar(s["spec"], s["rows"]))
    np.testing.assert_allclose(got["probability"].numpy(), expected, rtol=0, atol=ATOL)


def _edge_cases(spec: DatasetSpec, rows: list[dict], records: dict) -> tuple[list[dict], dict]:
    """Raw rows with unseen values, missing values, an empty history and a history longer
    than max_len, and the model inputs they must encode to."""
    L = spec.max_len
    with_history = [i for i, r in enumerate(rows) if 0 < len(r[spec.time_hist_name]) < L]
    full_history = [i for i, r in enumerate(rows) if len(r[spec.time_hist_name]) >= L]
    i, j, k = with_history[0], with_history[1], full_history[0]
    out_rows, picks = [], []
    expected = {name: [] for name in spec.model_input_names()}

    def add(row: dict, index: int, changes: dict) -> None:
        out_rows.append(row)
        picks.append(index)
        for name in expected:
            value = np.array(records[name][index], copy=True)
            if name in changes:
                value = changes[name](value)
            expected[name].append(value)

    def set_last(value_id):
        def change(v):
            v[-1] = value_id
            return v

        return change

    # Unseen categories, padded whitespace, missing-value tokens.
    row = dict(rows[i])
    row["shop_id"] = "never-seen-shop"
    row["user_id"] = f"  {row['user_id']}\t"
    row["gender"] = "NULL"
    row["avg_price"] = float("nan")
    row["item_id_list"] = list(row["item_id_list"][:-1]) + ["never-seen-item"]
    add(
        row,
        i,
        {
            "shop_id": lambda v: np.int32(OOV_ID),
            "gender": lambda v: np.int32(OOV_ID),
            "avg_price": lambda v: np.float32(0.0),
            "item_id_list": set_last(OOV_ID),
        },
    )
    # An empty history.
    row = dict(rows[j])
    for name in contract.history_input_names(spec):
        row[name] = []
    zero = {f.hist_name: np.zeros_like for f in spec.sequential_fields}
    zero[spec.time_hist_name] = np.zeros_like
    add(row, j, {**zero, HIST_LEN: lambda v: np.int32(0)})
    # A history longer than max_len: the oldest (made-up) entries are dropped.
    row = dict(rows[k])
    extra = L + 4
    first = min(row[spec.time_hist_name])
    for f in spec.sequential_fields:
        row[f.hist_name] = ["older-value"] * extra + list(row[f.hist_name])
    row[spec.time_hist_name] = list(range(first - extra, first)) + list(row[spec.time_hist_name])
    add(row, k, {})
    return out_rows, {name: np.stack(v) for name, v in expected.items()}


def test_edge_rows_unseen_values_empty_and_long_histories(parity_setup):
    s = parity_setup
    spec, model = s["spec"], s["model"]
    rows, expected_inputs = _edge_cases(spec, s["rows"], s["records"])
    expected_inputs[HIST_LEN] = expected_inputs[HIST_LEN].astype(np.int32)
    # Expected after truncation: the long row's record already holds its last max_len.
    assert len(rows[2][spec.time_hist_name]) > spec.max_len
    encoded = s["encoder"](_columnar(spec, rows))
    _assert_inputs_equal(spec, {k: v.numpy() for k, v in encoded.items()}, expected_inputs)
    expected = model(expected_inputs, training=False).numpy().reshape(-1)
    got = s["loaded"].signatures["serving_default"](**_columnar(spec, rows))["probability"].numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)


def test_history_as_lists_equals_history_as_joined_strings(parity_setup):
    s = parity_setup
    spec = s["spec"]
    rows = s["rows"][:6]
    joined = s["loaded"].signatures["serving_default"](**_columnar(spec, rows))["probability"]
    width = max(len(r[spec.time_hist_name]) for r in rows) + 2
    lists = dict(_columnar(spec, rows))
    for name in contract.history_input_names(spec):
        # Rectangular [B, n] lists: empty-string elements are padding (on either side).
        padded = [[""] + [canonical_string(v) for v in r[name]] for r in rows]
        lists[name] = tf.constant([p + [""] * (width - len(p)) for p in padded])
    got = s["loaded"].signatures["serving_default"](**lists)["probability"]
    np.testing.assert_allclose(got.numpy(), joined.numpy(), rtol=0, atol=1e-7)


def test_attention_signature_returns_pooling_weights(parity_setup):
    s = parity_setup
    spec = s["spec"]
    rows = s["rows"][:8]
    out = s["loaded"].signatures["attention"](**_columnar(spec, rows))
    weights = out["pooling_attention"].numpy()
    assert weights.shape == (len(rows), spec.max_len + 1) and weights.dtype == np.float32
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
    hist_len = np.minimum([len(r[spec.time_hist_name]) for r in rows], spec.max_len)
    for w, n in zip(weights, hist_len, strict=True):  # padded positions get no weight
        np.testing.assert_allclose(w[: spec.max_len - n], 0.0, atol=1e-7)
    serving = s["loaded"].signatures["serving_default"](**_columnar(spec, rows))
    np.testing.assert_allclose(
        out["probability"].numpy(), serving["probability"].numpy(), atol=1e-6
    )


def test_trimming_matches_the_pipelines_unicode_whitespace():
    values = [
        " a",
        "a\t",
        "\u3000a\u00a0",
        "a b",
        "\u200ba",
        "\x0ba\x0c",
        "\x85a",
        "\u2028a\u2029",
        "",
    ]
    expected = pc.utf8_trim_whitespace(pa.array(values)).to_pylist()
    got = [v.decode() for v in raw_encoder._trim(tf.constant(values)).numpy()]
    assert got == expected


@pytest.mark.parametrize(
    "change, message",
    [
        ({"times_list": "1^2"}, "as many entries as times_list.*shop_id_list"),
        ({"times_list": "abc"}, "timestamps must be integers.*times_list"),
        ({"avg_price": float("inf")}, "must be finite.*avg_price"),
    ],
)
def test_bad_raw_values_fail_with_a_message_naming_the_input(parity_setup, change, message):
    s = parity_setup
    spec = s["spec"]
    row = dict(s["rows"][0])
    row.update(change)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        s["loaded"].signatures["serving_default"](**_columnar(spec, [row]))


def test_history_of_wrong_rank_fails_with_a_message_naming_it(parity_setup):
    s = parity_setup
    tensors = _columnar(s["spec"], s["rows"][:1])
    tensors["shop_id_list"] = tf.constant([[["1"]]])
    with pytest.raises(tf.errors.InvalidArgumentError, match="one string per row.*shop_id_list"):
        s["loaded"].signatures["serving_default"](**tensors)
