"""Train/serve parity: the SavedModel on raw rows == the Keras model on the TFRecords.

The raw rows are rebuilt from the synthetic raw Ele.me-layout files the training
dataset was prepared from (the same read as the pipeline, histories as each user's
earlier impressions), so the test covers the whole path raw value -> id / scaled number.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import tensorflow as tf

from export import archive, contract, raw_encoder, savedmodel
from export.client import canonical_string
from feseq_tf.config import ModelConfig
from feseq_tf.data import make_dataset
from feseq_tf.models.feseq import FESeq
from feseq_tf.schema import HIST_LEN, NUM_RESERVED_IDS, OOV_ID, DatasetSpec
from pipelines import eleme, generic, synthetic

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


def _perturb(model) -> None:
    """Embeddings large enough that every id matters (trained ones are ~1e-4), and the
    output bias at 0 (away from the 4% CTR, where outputs saturate)."""
    rng = np.random.default_rng(7)
    for w in model.weights:
        if "embedding" in w.path:
            w.assign(rng.normal(0.0, 0.05, size=w.shape).astype(w.dtype))
        elif w.path == "probability/bias":
            w.assign(np.zeros(w.shape, w.dtype))


@pytest.fixture(scope="module")
def parity_setup(tiny_trained_run, tmp_path_factory):
    """A perturbed copy of the tiny model (so that wrong ids change the output), its
    raw-feature SavedModel, the raw test rows and the matching records."""
    model, spec = savedmodel.load_run(tiny_trained_run.run_dir)
    rows, raw_times = _raw_test_rows(tiny_trained_run.dataset_dir, spec)
    records = _records(tiny_trained_run.dataset_dir)
    np.testing.assert_array_equal(records[spec.time_field], raw_times)  # same rows, same order
    setup = _perturbed_export(model, spec, os.path.join(tiny_trained_run.run_dir, "vocab"),
                              str(tmp_path_factory.mktemp("parity") / "saved_model"), rows, records)
    setup["loaded"] = tf.saved_model.load(setup["path"])
    return setup


def _perturbed_export(model, spec, vocab_dir, path, rows, records):
    """Perturb ``model`` (so that wrong ids change the output), export it to ``path`` and
    return what the parity tests read."""
    _perturb(model)
    archive.write_saved_model(model, spec, vocab_dir, path)
    return {
        "model": model,
        "spec": spec,
        "path": path,
        "rows": rows,
        "records": records,
        "encoder": raw_encoder.RawFeatureEncoder(spec, vocab_dir),
        "vocab_dir": vocab_dir,
    }


def _assert_inputs_equal(spec: DatasetSpec, got: dict, expected: dict) -> None:
    for name in spec.model_input_names():
        g, e = np.asarray(got[name]), np.asarray(expected[name])
        assert g.dtype == e.dtype, f"{name}: dtype {g.dtype} != {e.dtype}"
        if g.dtype.kind == "f":
            np.testing.assert_allclose(g, e, rtol=0, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(g, e, err_msg=name)


@pytest.mark.slow
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


# ---- a generic-pipeline dataset with hashed id fields ----------------------------------------
HASHED = {"user_id": 64, "item_id": 97}  # field -> hash_buckets


@pytest.fixture(scope="module")
def hashed_parity_setup(tmp_path_factory):
    """Synthetic raw Ele.me-layout files prepared by ``python -m pipelines.generic`` from
    a YAML spec hashing ``user_id`` (non-sequential) and ``item_id`` (and its history),
    a tiny untrained FESeq on it (perturbed) and its raw-feature SavedModel."""
    root = tmp_path_factory.mktemp("hashed")
    dataset_dir = str(root / "data")
    raw_dir = os.path.join(dataset_dir, "raw")  # where _raw_test_rows reads the raw files
    info = synthetic.generate(raw_dir, num_rows=1500, seed=11, max_len=4)
    df, _ = eleme.read_days(raw_dir, info["days"], sample_frac=1.0, seed=11, progress=False)
    table = str(root / "impressions.parquet")
    df.to_parquet(table)
    ps = eleme.pipeline_spec(max_len=4, min_count=2, seed=11)

    def hashed(fields):
        return tuple(dataclasses.replace(f, hash_buckets=HASHED.get(f.name)) for f in fields)

    ps = dataclasses.replace(
        ps,
        non_sequential_fields=hashed(ps.non_sequential_fields),
        sequential_fields=hashed(ps.sequential_fields),
    )
    spec_path = ps.save(str(root / "spec.yaml"))
    argv = ["--input", table, "--spec", spec_path, "--out", dataset_dir, "--quiet"]
    assert generic.main(argv) == 0
    spec = DatasetSpec.load(dataset_dir)
    # The raw rows are rebuilt as eleme.prepare would have recorded its reading.
    read = {"days": list(info["days"]), "sample_frac": 1.0, "seed": 11}
    as_read = dataclasses.replace(spec, extra={**spec.extra, **read})
    rows, raw_times = _raw_test_rows(dataset_dir, as_read)
    records = _records(dataset_dir)
    np.testing.assert_array_equal(records[spec.time_field], raw_times)
    # with id dropout, which must not reach the serving signature (training only), and
    # the three inputs beyond the paper that the recipe leaves off
    config = ModelConfig(embedding_dim=4, mlp_units=[16], pooling_hidden=16, transformer_heads=2,
                         id_dropout=0.5, history_match=True, wide=True, target_in_output=True)
    model = FESeq(spec, config)
    assert any(layer.name.startswith("id_dropout_") for layer in model.layers)
    return _perturbed_export(model, spec, os.path.join(dataset_dir, "vocab"),
                             str(root / "saved_model"), rows, records)


@pytest.mark.slow
def test_hashed_fields_encode_to_the_recorded_ids_and_serve_like_keras(hashed_parity_setup):
    s = hashed_parity_setup
    spec, records = s["spec"], s["records"]
    for name, buckets in HASHED.items():
        assert spec.field(name).hash_buckets == buckets
        assert spec.field(name).vocab_size == buckets + NUM_RESERVED_IDS
        assert not os.path.exists(os.path.join(s["vocab_dir"], f"{name}.txt"))
        ids = records[name]
        assert ids.min() >= NUM_RESERVED_IDS and ids.max() < buckets + NUM_RESERVED_IDS
        assert len(np.unique(ids)) > buckets // 4  # spread over the buckets
    assert (records["item_id_list"] >= NUM_RESERVED_IDS).any()
    encoded = s["encoder"](_columnar(spec, s["rows"]))
    _assert_inputs_equal(spec, {k: v.numpy() for k, v in encoded.items()}, records)
    expected = s["model"](records, training=False).numpy().reshape(-1)
    assert expected.std() > 1e-3
    loaded = tf.saved_model.load(s["path"])
    got = loaded.signatures["serving_default"](**_columnar(spec, s["rows"]))["probability"]
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=ATOL)
    with open(os.path.join(s["path"], contract.CONTRACT_FILE)) as fh:
        inputs = {i["name"]: i for i in json.load(fh)["inputs"]}
    assert {n: inputs[n].get("hash_buckets") for n in HASHED} == HASHED
    assert "hash_buckets" not in inputs["shop_id"]


def test_hashed_field_missing_and_padded_values_serve_as_the_pipeline_stores_them(
    hashed_parity_setup,
):
    s = hashed_parity_setup
    spec = s["spec"]
    row = next(r for r in s["rows"] if 2 <= len(r["item_id_list"]) <= spec.max_len)
    variants = [
        {"user_id": "NULL"},  # missing: OOV, as the pipeline stores a missing value
        {"user_id": f" \t{row['user_id']}\u3000"},  # trimmed: the same bucket
        {"item_id_list": ["NULL"] + list(row["item_id_list"][1:])},  # a missing entry
        {"item_id": "never-seen-item"},  # unseen: a bucket of its own, never OOV
    ]
    encoded = s["encoder"](_columnar(spec, [row] + [{**row, **v} for v in variants]))
    user, item, item_hist = (encoded[n].numpy() for n in ("user_id", "item_id", "item_id_list"))
    assert user[1] == OOV_ID and user[2] == user[0]
    first = spec.max_len - len(row["item_id_list"])  # the oldest entry's position
    assert item_hist[0][first] != OOV_ID and item_hist[3][first] == OOV_ID
    assert (item_hist[3][first + 1 :] == item_hist[0][first + 1 :]).all()
    assert NUM_RESERVED_IDS <= item[4] < HASHED["item_id"] + NUM_RESERVED_IDS
