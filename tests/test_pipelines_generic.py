"""The generic impression-table -> prepared-dataset core (pipelines.generic)."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from feseq_tf import schema
from pipelines import bundle, generic
from pipelines.generic import PipelineSpec

PAD, OOV = schema.PAD_ID, schema.OOV_ID


def _spec(**overrides) -> PipelineSpec:
    options = dict(
        name="tiny",
        user_key="user",
        timestamp="ts",
        label="label",
        non_sequential_fields=[{"name": "user"}, {"name": "x", "type": "numeric"}],
        sequential_fields=[{"name": "item"}],
        max_len=2,
        min_count=1,
        shuffle_train=False,
    )
    options.update(overrides)
    return PipelineSpec(**options)


# Ten impressions of three users; input order is the tie-breaker of equal times.
#   time order: rows 1, 2 (ts 10), 3, 4, 5 (ts 20), 0 (30), 6, 7 (40), 8 (50), 9 (60)
#   -> train rows [1, 2, 3, 4, 5, 0, 6, 7], valid [8], test [9]
TINY = pd.DataFrame(
    {
        "user": ["a", "b", "a", "a", "b", "a", "c", "a", "b", "a"],
        "ts": [30, 10, 10, 20, 20, 20, 40, 40, 50, 60],
        "item": ["i3", "i1", "i1", "i2", "i2", "i4", "i1", "i5", "i2", "i6"],
        "x": [3.0, 1.0, 2.0, 4.0, 5.0, 6.0, 7.0, 9.0, 11.0, -1.0],
        "label": [1, 0, 0, 1, 0, 0, 1, 0, 1, 1],
    }
)


def _decode(result: generic.PrepareResult, field: str, ids: np.ndarray) -> np.ndarray:
    words = np.array(["<pad>", "<oov>"] + result.vocabularies[field], dtype=object)
    return words[ids]


def _all_splits(result: generic.PrepareResult, name: str) -> np.ndarray:
    return np.concatenate([result.tables[s][name] for s in schema.SPLITS])


def test_history_is_the_users_previous_impressions_in_time_order():
    result = generic.build_dataset(TINY, _spec(), None, progress=False)
    # Samples in time order (train is not shuffled here): rows 1 2 3 4 5 0 6 7 8 9.
    items = _decode(result, "item", _all_splits(result, "item"))
    hist = _decode(result, "item", _all_splits(result, "item_list"))
    assert items.tolist() == ["i1", "i1", "i2", "i2", "i4", "i3", "i1", "i5", "i2", "<oov>"]
    assert hist.tolist() == [
        ["<pad>", "<pad>"],  # row 1: b's first impression
        ["<pad>", "<pad>"],  # row 2: a's first impression
        ["<pad>", "i1"],  # row 3: a after row 2
        ["<pad>", "i1"],  # row 4: b after row 1
        ["i1", "i2"],  # row 5: a, same time as row 3 but later in the input
        ["i2", "i4"],  # row 0: a at 30
        ["<pad>", "<pad>"],  # row 6: c
        ["i4", "i3"],  # row 7: a at 40 (at most max_len = 2, most recent last)
        ["i1", "i2"],  # row 8: b at 50
        ["i3", "i5"],  # row 9: a at 60
    ]


def test_times_list_is_aligned_with_the_history_and_hist_len_counts_real_entries():
    result = generic.build_dataset(TINY, _spec(), None, progress=False)
    assert _all_splits(result, "ts").tolist() == [10, 10, 20, 20, 20, 30, 40, 40, 50, 60]
    assert _all_splits(result, "ts_list").tolist() == [
        [0, 0],
        [0, 0],
        [0, 10],
        [0, 10],
        [10, 20],
        [20, 20],
        [0, 0],
        [20, 30],
        [10, 20],
        [30, 40],
    ]
    assert _all_splits(result, "hist_len").tolist() == [0, 0, 1, 1, 2, 2, 0, 2, 2, 2]


def test_history_never_holds_the_sample_itself_or_a_later_impression():
    rng = np.random.default_rng(0)
    n = 400
    df = pd.DataFrame(
        {
            "user": rng.integers(0, 12, n).astype(str),
            "ts": rng.integers(0, 50, n),  # many ties
            "item": np.arange(n).astype(str),  # the item identifies the impression
            "x": rng.random(n),
            "label": rng.integers(0, 2, n),
        }
    )
    result = generic.build_dataset(df, _spec(max_len=4, shuffle_train=True), None, progress=False)
    row_of_item = {str(i): i for i in range(n)}
    # Reference: the input rows sorted by (time, input order) within each user.
    for split in schema.SPLITS:
        table = result.tables[split]
        for k in range(len(table["ts"])):
            target = _decode(result, "item", table["item"][k : k + 1])[0]
            if target == "<oov>":
                continue
            row = row_of_item[target]
            user_rows = df.index[(df.user == df.user[row])]
            earlier = [r for r in user_rows if (df.ts[r], r) < (df.ts[row], row)]
            earlier.sort(key=lambda r: (df.ts[r], r))
            expected_times = [int(df.ts[r]) for r in earlier[-4:]]
            hist_len = int(table["hist_len"][k])
            assert hist_len == len(expected_times)
            assert table["ts_list"][k][4 - hist_len :].tolist() == expected_times
            assert table["ts_list"][k][: 4 - hist_len].tolist() == [0] * (4 - hist_len)
            assert table["item_list"][k][: 4 - hist_len].tolist() == [PAD] * (4 - hist_len)


def test_samples_are_split_8_1_1_by_time_with_ties_in_input_order():
    n = 25
    ts = np.array([5, 3, 3, 9, 1] * 5) * 10 + np.repeat(np.arange(5), 5)
    df = pd.DataFrame(
        {
            "user": ["u"] * n,
            "ts": ts,
            "item": ["a"] * n,
            "x": np.zeros(n),
            "label": np.zeros(n, int),
        }
    )
    result = generic.build_dataset(df, _spec(), None, progress=False)
    assert result.spec.split_sizes == {"train": 20, "valid": 2, "test": 3}
    order = np.argsort(ts, kind="stable")
    assert result.tables["train"]["ts"].tolist() == ts[order[:20]].tolist()
    assert result.tables["valid"]["ts"].tolist() == ts[order[20:22]].tolist()
    assert result.tables["test"]["ts"].tolist() == ts[order[22:]].tolist()


def test_split_ratios_are_configurable():
    result = generic.build_dataset(TINY, _spec(split_ratios=(6, 2, 2)), None, progress=False)
    assert result.spec.split_sizes == {"train": 6, "valid": 2, "test": 2}


def test_vocabulary_comes_from_the_training_split_with_min_count_and_oov():
    result = generic.build_dataset(TINY, _spec(min_count=2), None, progress=False)
    # Training items: i1 x3, i2 x2, i3 i4 i5 x1; i6 only in test.
    assert result.vocabularies["item"] == ["i1", "i2"]
    field = result.spec.field("item")
    assert field.vocab_size == 4
    items = _all_splits(result, "item").tolist()
    assert items == [2, 2, 3, 3, OOV, OOV, 2, OOV, 3, OOV]
    # A history entry uses the same ids; a rare value is OOV, never padding.
    assert result.tables["test"]["item_list"].tolist() == [[OOV, OOV]]


def test_vocabulary_orders_by_count_then_string_and_ignores_valid_and_test():
    df = TINY.copy()
    df.loc[[8, 9], "item"] = "zz"  # frequent value, but only in valid/test
    result = generic.build_dataset(df, _spec(), None, progress=False)
    assert result.vocabularies["item"] == ["i1", "i2", "i3", "i4", "i5"]
    assert result.tables["valid"]["item"].tolist() == [OOV]
    assert result.vocabularies["user"] == ["a", "b", "c"]  # a x5, b x2, c x1 in train


def test_numeric_fields_are_scaled_with_training_statistics_only():
    result = generic.build_dataset(TINY, _spec(), None, progress=False)
    x = result.spec.field("x")
    # Training rows 1 2 3 4 5 0 6 7 have x = 1 2 4 5 6 3 7 9.
    assert (x.min, x.max) == (1.0, 9.0)
    np.testing.assert_allclose(
        result.tables["train"]["x"], (np.array([1, 2, 4, 5, 6, 3, 7, 9]) - 1) / 8
    )
    np.testing.assert_allclose(result.tables["valid"]["x"], [(11 - 1) / 8])  # not clipped
    np.testing.assert_allclose(result.tables["test"]["x"], [(-1 - 1) / 8])


def test_numeric_sequential_field_history_uses_the_same_scaling():
    df = TINY.assign(price=TINY.x * 2)
    spec = _spec(sequential_fields=[{"name": "item"}, {"name": "price", "type": "numeric"}])
    result = generic.build_dataset(df, spec, None, progress=False)
    price = result.spec.field("price")
    assert price.sequential and (price.min, price.max) == (2.0, 18.0)
    # Row 9's history: rows 0 (price 6) and 7 (price 18).
    np.testing.assert_allclose(result.tables["test"]["price_list"], [[(6 - 2) / 16, 1.0]])


def test_group_id_is_a_dense_id_of_the_user_key():
    result = generic.build_dataset(TINY, _spec(), None, progress=False)
    group = _all_splits(result, "group_id")
    users = np.array(["b", "a", "a", "b", "a", "a", "c", "a", "b", "a"])  # time order
    assert sorted(set(group.tolist())) == [0, 1, 2]
    for u in "abc":
        assert len(set(group[users == u].tolist())) == 1
    assert result.report["users"] == 3


def test_training_records_are_shuffled_with_a_seed_and_valid_test_stay_in_time_order():
    a = generic.build_dataset(TINY, _spec(shuffle_train=True, seed=3), None, progress=False)
    b = generic.build_dataset(TINY, _spec(shuffle_train=True, seed=3), None, progress=False)
    assert a.tables["train"]["ts"].tolist() == b.tables["train"]["ts"].tolist()
    assert sorted(a.tables["train"]["ts"].tolist()) == [10, 10, 20, 20, 20, 30, 40, 40]
    assert a.tables["valid"]["ts"].tolist() == [50]


def test_bad_rows_are_dropped_and_counted_by_reason():
    df = pd.DataFrame(
        {
            "user": ["a", "", "a", "a", "a", "a", "b", "b", "b", "b", "b"],
            "ts": ["1", "2", "x", "4.5", "5", "6", "7", "8", "9", "10", "11"],
            "item": ["p"] * 11,
            "x": ["1", "1", "1", "1", "abc", "1", "", "2", "3", "4", "5"],
            "label": ["0", "1", "0", "1", "0", "2", "1", "", "0", "1", "0"],
        }
    )
    result = generic.build_dataset(df, _spec(), None, progress=False)
    assert result.report["rows_dropped"] == {
        "missing:user": 1,
        "non_numeric:ts": 1,
        "non_integer:ts": 1,
        "non_numeric:x": 1,
        "bad_label:label": 1,
        "missing:label": 1,
    }
    assert result.report["rows_kept"] == 5
    assert _all_splits(result, "ts").tolist() == [1, 7, 9, 10, 11]
    # A missing numeric value in a kept row is stored as 0 (the training minimum).
    assert _all_splits(result, "x")[1] == 0.0


def test_missing_categorical_value_maps_to_oov_not_padding():
    df = TINY.astype({"item": object})
    df.loc[3, "item"] = None
    df.loc[4, "item"] = "  "
    result = generic.build_dataset(df, _spec(), None, progress=False)
    items = _all_splits(result, "item")
    assert items[2] == OOV and items[3] == OOV  # rows 3 and 4 in time order
    assert result.tables["train"]["item_list"][4].tolist() == [2, OOV]  # row 5: rows 2, 3


def test_drop_missing_drops_rows_with_a_missing_field():
    df = TINY.astype({"item": object})
    df.loc[3, "item"] = None
    result = generic.build_dataset(df, _spec(drop_missing=True), None, progress=False)
    assert result.report["rows_dropped"] == {"missing:item": 1}


def test_integral_float_and_integer_categories_print_like_integers():
    df = TINY.assign(item=[3.0, 1.0, 1.0, 2.0, 2.0, 4.0, 1.0, 5.0, 2.0, np.nan])
    result = generic.build_dataset(df, _spec(), None, progress=False)
    assert result.vocabularies["item"] == ["1", "2", "3", "4", "5"]
    assert result.tables["test"]["item"].tolist() == [OOV]


def test_oracle_column_is_carried_with_its_rows():
    df = TINY.assign(oracle_prob=np.arange(10) / 10)
    result = generic.build_dataset(df, _spec(), None, progress=False)
    assert result.spec.has_oracle
    np.testing.assert_allclose(
        _all_splits(result, "oracle_prob"), np.array([1, 2, 3, 4, 5, 0, 6, 7, 8, 9]) / 10, rtol=1e-6
    )


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match=r"lacks the columns \['x'\]"):
        generic.build_dataset(TINY.drop(columns="x"), _spec(), None, progress=False)


# --------------------------------------------------------------------------- spec files
def test_spec_rejects_unknown_keys():
    d = _spec().to_dict()
    with pytest.raises(ValueError, match=r"Unknown keys in pipeline spec: \['max_length'\]"):
        PipelineSpec.from_dict({**d, "max_length": 3})
    bad_field = {**d, "sequential_fields": [{"name": "item", "typ": "numeric"}]}
    with pytest.raises(ValueError, match=r"Unknown keys in field 'item': \['typ'\]"):
        PipelineSpec.from_dict(bad_field)


def test_spec_validates_values_and_names_them():
    with pytest.raises(ValueError, match="role must be one of"):
        _spec(sequential_fields=[{"name": "item", "role": "user"}])
    with pytest.raises(ValueError, match="type must be one of"):
        _spec(sequential_fields=[{"name": "item", "type": "text"}])
    with pytest.raises(ValueError, match="max_len must be an integer >= 1, got 0"):
        _spec(max_len=0)
    with pytest.raises(ValueError, match="role 'item'"):
        _spec(sequential_fields=[{"name": "item", "role": "context"}])
    with pytest.raises(ValueError, match="split_ratios"):
        _spec(split_ratios=(8, 1))


def test_spec_yaml_round_trip_and_unknown_key_in_file(tmp_path):
    path = _spec().save(str(tmp_path / "spec.yaml"))
    assert PipelineSpec.load(path) == _spec()
    json_path = _spec().save(str(tmp_path / "spec.json"))
    assert PipelineSpec.load(json_path) == _spec()
    with open(tmp_path / "bad.yaml", "w") as fh:
        fh.write("name: t\nuser_key: u\ntimestamp: ts\nsequential_fields: [item]\nbogus: 1\n")
    with pytest.raises(ValueError, match=r"bad.yaml: Unknown keys in pipeline spec: \['bogus'\]"):
        PipelineSpec.load(str(tmp_path / "bad.yaml"))


def test_text_timestamps_with_a_format_become_epoch_seconds():
    df = TINY.assign(ts=pd.to_datetime(TINY.ts, unit="s").dt.strftime("%Y-%m-%d %H:%M:%S"))
    result = generic.build_dataset(
        df, _spec(timestamp_format="%Y-%m-%d %H:%M:%S"), None, progress=False
    )
    assert _all_splits(result, "ts").tolist() == [10, 10, 20, 20, 20, 30, 40, 40, 50, 60]


# --------------------------------------------------------------------------- files
def test_tfrecords_parse_back_to_the_in_memory_tables(tmp_path):
    import tensorflow as tf

    df = TINY.assign(
        ts=TINY.ts - 45,  # negative timestamps are 10-byte varints
        oracle_prob=np.linspace(0, 1, 10),
        big=[2**40, 0, 1, 127, 128, 16383, 16384, 2**21, 2**28, 2**35],
        price=TINY.x * 1.5,
    )
    spec = _spec(
        shuffle_train=True,
        num_shards=3,
        sequential_fields=[{"name": "item"}, {"name": "price", "type": "numeric"}],
        non_sequential_fields=[{"name": "user"}, {"name": "x", "type": "numeric"}, {"name": "big"}],
    )
    out = str(tmp_path / "ds")
    result = generic.build_dataset(df, spec, out, progress=False)
    loaded = schema.DatasetSpec.load(out)
    assert loaded == result.spec
    features = loaded.tfrecord_features()
    for split in schema.SPLITS:
        files = sorted(tf.io.gfile.glob(os.path.join(out, split, "part-*.tfrecord")))
        assert len(files) == (3 if split == "train" else 1)
        assert os.path.basename(files[0]) == f"part-00000-of-0000{len(files)}.tfrecord"
        serialized = tf.constant(list(tf.data.TFRecordDataset(files).as_numpy_iterator()))
        parsed = tf.io.parse_example(serialized, features)
        assert set(parsed) == set(result.tables[split])
        for name, value in parsed.items():
            np.testing.assert_array_equal(value.numpy(), result.tables[split][name], err_msg=name)


def test_record_features_match_the_dataset_spec_parse_spec():
    import tensorflow as tf

    df = TINY.assign(oracle_prob=0.5, price=TINY.x)
    spec = _spec(sequential_fields=[{"name": "item"}, {"name": "price", "type": "numeric"}])
    result = generic.build_dataset(df, spec, None, progress=False)
    parse_spec = result.spec.tfrecord_features()
    kinds = generic.record_features(result.spec)
    assert [name for name, _ in kinds] == list(parse_spec)
    for name, kind in kinds:
        assert parse_spec[name].dtype == (tf.int64 if kind == "int64" else tf.float32)


def test_encoded_records_equal_tf_train_example_protos():
    import tensorflow as tf

    rng = np.random.default_rng(1)
    ints = rng.integers(-(2**62), 2**62, size=(6, 3))
    ints[0] = [0, 1, -1]
    floats = rng.normal(size=(6,)).astype(np.float32)
    names = ["a_long_feature_name_" * 8, "f"]  # a key longer than 127 bytes
    buf, offsets = generic.encode_examples(
        [(names[0], "int64", ints), (names[1], "float32", floats)]
    )
    for i in range(6):
        expected = tf.train.Example(
            features=tf.train.Features(
                feature={
                    names[0]: tf.train.Feature(int64_list=tf.train.Int64List(value=ints[i])),
                    names[1]: tf.train.Feature(float_list=tf.train.FloatList(value=[floats[i]])),
                }
            )
        )
        assert tf.train.Example.FromString(buf[offsets[i] : offsets[i + 1]].tobytes()) == expected


def test_dataset_directory_has_vocab_files_report_and_spec(tmp_path):
    out = str(tmp_path / "ds")
    result = generic.build_dataset(TINY, _spec(min_count=2), out, progress=False)
    assert schema.read_vocab(out, "item") == ["i1", "i2"]
    assert schema.read_vocab(out, "user") == ["a", "b"]
    with open(os.path.join(out, "report.json")) as fh:
        report = json.load(fh)
    assert report["rows_read"] == 10
    assert report["samples"] == {"train": 8, "valid": 1, "test": 1}
    assert report["ctr"]["train"] == pytest.approx(3 / 8)
    assert report["vocab_sizes"] == {"user": 4, "item": 4}
    assert "build/write" in report["timings_s"]
    assert result.report["samples"] == report["samples"]
    names = [f.name for f in schema.DatasetSpec.load(out).fields]
    assert names == ["user", "x", "item"]  # non-sequential first, then sequential


def test_rewriting_a_dataset_removes_stale_shards(tmp_path):
    out = str(tmp_path / "ds")
    generic.build_dataset(TINY, _spec(num_shards=3), out, progress=False)
    generic.build_dataset(TINY, _spec(num_shards=1), out, progress=False)
    assert os.listdir(os.path.join(out, "train")) == ["part-00000-of-00001.tfrecord"]


def test_cli_prepares_a_csv_file(tmp_path, capsys):
    csv = tmp_path / "log.csv"
    with open(csv, "w") as fh:
        fh.write("user,ts,item,x,label,unused\n")
        for row in TINY.itertuples(index=False):
            fh.write(f"{row.user},{row.ts},{row.item},{row.x},{row.label},z\n")
        fh.write("broken,line\n")
    spec_path = _spec().save(str(tmp_path / "spec.yaml"))
    out = str(tmp_path / "ds")
    assert generic.main(["--input", str(csv), "--spec", spec_path, "--out", out, "--quiet"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["samples"] == {"train": 8, "valid": 1, "test": 1}
    with open(os.path.join(out, "report.json")) as fh:
        report = json.load(fh)
    assert report["rows_read"] == 11
    assert report["rows_dropped"] == {"malformed:wrong_column_count": 1}


def test_parquet_input_is_read(tmp_path):
    path = str(tmp_path / "log.parquet")
    TINY.to_parquet(path)
    df, report = generic.read_table(path, _spec().required_columns)
    assert report["rows_read"] == 10
    result = generic.build_dataset(df, _spec(), None, progress=False)
    assert result.spec.split_sizes == {"train": 8, "valid": 1, "test": 1}


# --------------------------------------------------------------------------- bundle
def test_bundle_spec_has_the_papers_shape():
    spec = bundle.pipeline_spec()
    assert len(spec.sequential_fields) == 24
    assert len(spec.non_sequential_fields) == 9
    assert spec.max_len == 8
    assert [f.name for f in spec.sequential_fields if f.role == "item"] == [
        "bundle_id",
        "bundle_price",
    ]


def test_bundle_prepares_a_file_of_its_shape(tmp_path):
    spec = bundle.pipeline_spec()
    rng = np.random.default_rng(0)
    n = 60
    data = {
        bundle.USER_KEY: rng.integers(0, 5, n),
        bundle.TIME_COLUMN: rng.integers(0, 10**6, n),
        bundle.LABEL_COLUMN: rng.integers(0, 2, n),
    }
    for f in spec.fields:
        if f.name not in data:
            data[f.name] = rng.integers(0, 4, n) if f.type == "categorical" else rng.random(n)
    path = str(tmp_path / "bundle.parquet")
    pd.DataFrame(data).to_parquet(path)
    out = str(tmp_path / "ds")
    assert bundle.main(["--input", path, "--out", out, "--quiet"]) == 0
    loaded = schema.DatasetSpec.load(out)
    assert loaded.max_len == 8 and loaded.split_sizes == {"train": 48, "valid": 6, "test": 6}
    yaml_path = str(tmp_path / "bundle.yaml")
    assert bundle.main(["--write-spec", yaml_path]) == 0
    assert PipelineSpec.load(yaml_path) == spec


def test_bundle_missing_input_says_the_data_is_private(tmp_path):
    with pytest.raises(FileNotFoundError, match="private"):
        bundle.prepare(str(tmp_path / "nope.csv"), None)


# --------------------------------------------------------------------------- hash buckets
def test_hashed_field_gets_bucket_ids_without_vocabulary_or_min_count(tmp_path):
    import tensorflow as tf

    df = TINY.assign(item=TINY["item"].where(TINY.index != 4, None))  # row 4: missing
    spec = _spec(min_count=5, sequential_fields=[{"name": "item", "hash_buckets": 50}])
    out = str(tmp_path / "ds")
    result = generic.build_dataset(df, spec, out, progress=False)
    fingerprints = tf.fingerprint(tf.constant([f"i{k}" for k in range(1, 7)])).numpy()
    id_of = {
        f"i{k}": schema.NUM_RESERVED_IDS + int.from_bytes(bytes(fp), "little") % 50
        for k, fp in zip(range(1, 7), fingerprints, strict=True)
    }
    id_of["<missing>"] = OOV
    # Samples in time order: rows 1 2 3 4 5 0 6 7 8 9; row 4 (b at 20) is missing.
    items = ["i1", "i1", "i2", "<missing>", "i4", "i3", "i1", "i5", "i2", "i6"]
    assert _all_splits(result, "item").tolist() == [id_of[v] for v in items]
    hist = _all_splits(result, "item_list")
    assert hist[4].tolist() == [id_of["i1"], id_of["i2"]]  # row 5: a's two earlier ones
    assert hist[8].tolist() == [id_of["i1"], id_of["<missing>"]]  # row 8: b after rows 1, 4
    field = result.spec.field("item")
    assert (field.hash_buckets, field.vocab_size) == (50, 52)
    assert "item" not in result.vocabularies
    assert not os.path.exists(os.path.join(out, "vocab", "item.txt"))
    assert schema.read_vocab(out, "user") == ["a"]  # min_count 5 still applies there
    assert schema.DatasetSpec.load(out) == result.spec


def test_hash_buckets_round_trips_through_a_spec_file_and_stays_out_when_unset(tmp_path):
    spec = _spec(sequential_fields=[{"name": "item", "hash_buckets": 1_000_000}])
    path = spec.save(str(tmp_path / "spec.yaml"))
    assert PipelineSpec.load(path) == spec
    assert spec.to_dict()["sequential_fields"] == [
        {"name": "item", "type": "categorical", "role": "item", "hash_buckets": 1_000_000}
    ]
    assert "hash_buckets" not in _spec().to_dict()["sequential_fields"][0]


@pytest.mark.parametrize(
    "field, message",
    [
        (
            {"name": "item", "hash_buckets": 0},
            "Field 'item': hash_buckets must be an integer >= 1, got 0",
        ),
        (
            {"name": "item", "hash_buckets": -8},
            "Field 'item': hash_buckets must be an integer >= 1, got -8",
        ),
        ({"name": "item", "hash_buckets": "many"}, "Field 'item': hash_buckets must be an integer"),
        (
            {"name": "item", "type": "numeric", "hash_buckets": 10},
            "Field 'item': hash_buckets applies to categorical fields only",
        ),
    ],
    ids=["zero", "negative", "text", "numeric"],
)
def test_bad_hash_buckets_name_the_field(field, message):
    with pytest.raises(ValueError, match=message):
        _spec(sequential_fields=[field, {"name": "shop", "role": "item"}])


def test_dataset_spec_without_hash_buckets_loads_and_is_written_as_before(tmp_path):
    old = {  # a dataset_spec.json written before hashing existed
        "name": "old",
        "fields": [
            {
                "name": "user",
                "role": "user",
                "type": "categorical",
                "sequential": False,
                "vocab_size": 4,
                "min": 0.0,
                "max": 1.0,
            },
            {
                "name": "item",
                "role": "item",
                "type": "categorical",
                "sequential": True,
                "vocab_size": 9,
                "min": 0.0,
                "max": 1.0,
            },
        ],
        "max_len": 2,
        "label": "label",
        "time_field": "ts",
        "user_key": "user",
        "time_unit": 1.0,
        "time_clip": 4000,
        "has_oracle": False,
        "split_sizes": {"train": 8, "valid": 1, "test": 1},
        "extra": {},
    }
    with open(tmp_path / schema.SPEC_FILE, "w") as fh:
        json.dump(old, fh)
    spec = schema.DatasetSpec.load(str(tmp_path))
    assert [f.hash_buckets for f in spec.fields] == [0, 0]
    assert not any(f.is_hashed for f in spec.fields)
    assert spec.to_dict() == old


def test_dataset_spec_refuses_a_hashed_field_with_another_table_size():
    with pytest.raises(
        ValueError, match="'item'.*into 50 buckets has vocab_size 52.*got vocab_size=50"
    ):
        schema.FieldSpec("item", "item", "categorical", vocab_size=50, hash_buckets=50)
    with pytest.raises(
        ValueError, match="'price': hash_buckets applies to categorical fields only"
    ):
        schema.FieldSpec("price", "item", "numeric", hash_buckets=50)
    with pytest.raises(ValueError, match="'item': hash_buckets must be an integer >= 1, got -1"):
        schema.FieldSpec("item", "item", "categorical", vocab_size=1, hash_buckets=-1)
