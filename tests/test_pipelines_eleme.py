"""The Ele.me raw-file pipeline (pipelines.eleme) on tiny raw files written here."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from feseq_tf import schema
from pipelines import eleme

# One value per raw column for a well-formed line (ids are integer codes as in Ele.me).
DEFAULTS = {
    "label": "0",
    "user_id": "101",
    "gender": "1",
    "visit_city": "7",
    "avg_price": "10.0",
    "is_super_vip": "0",
    "ctr_30": "0.1",
    "ord_30": "3",
    "total_amt_30": "250.5",
    "shop_id": "900",
    "item_id": "500",
    "city_id": "7",
    "district_id": "70",
    "shop_aoi_id": "701",
    "shop_geohash_6": "4401",
    "shop_geohash_12": "440101",
    "brand_id": "12",
    "category_1_id": "3",
    "merge_standard_food_id": "33",
    "rank_7": "5",
    "rank_30": "6",
    "rank_90": "7",
    "times": "100",
    "hours": "12",
    "time_type": "2",
    "weekdays": "1",
    "geohash12": "880101",
}
for _col in eleme.LIST_COLUMNS:
    DEFAULTS[_col] = "1^2^3"


def raw_line(**values: object) -> str:
    """A well-formed raw line (39 columns, no newline) with some columns overridden."""
    row = {**DEFAULTS, **{k: str(v) for k, v in values.items()}}
    unknown = set(row) - set(eleme.RAW_COLUMNS)
    if unknown:
        raise KeyError(unknown)
    return ",".join(row[c] for c in eleme.RAW_COLUMNS)


def good(k: int, user: int = 101) -> str:
    """Good line number k: times 100 + k, item 500 + k, avg_price 10 (k + 1)."""
    return raw_line(
        user_id=user, times=100 + k, item_id=500 + k, avg_price=10 * (k + 1), label=k % 2
    )


def write_lines(path, lines: list[bytes | str], *, newline_at_end: bool = True) -> None:
    data = b"\n".join(x.encode() if isinstance(x, str) else x for x in lines)
    with open(path, "wb") as fh:
        fh.write(data + (b"\n" if newline_at_end else b""))


def write_days(raw_dir, lines_per_day: dict[str, list], oracle: bool = False) -> None:
    os.makedirs(raw_dir, exist_ok=True)
    for day, lines in lines_per_day.items():
        write_lines(os.path.join(raw_dir, f"{day}.csv"), lines)
        if oracle:
            write_lines(
                os.path.join(raw_dir, f"{day}.oracle.csv"),
                [f"{i / 100}" for i in range(len(lines))],
            )


def _all(result, name):
    return np.concatenate([result.tables[s][name] for s in schema.SPLITS])


# --------------------------------------------------------------------------- layout
def test_raw_columns_and_field_layout_match_the_papers_ele_me_setup():
    assert len(eleme.RAW_COLUMNS) == 39 == len(set(eleme.RAW_COLUMNS))
    assert eleme.RAW_COLUMNS[0] == "label" and eleme.RAW_COLUMNS[-1] == "geohash12"
    assert len(eleme.LIST_COLUMNS) == 12
    spec = eleme.pipeline_spec()
    assert [f.name for f in spec.non_sequential_fields] == [
        "user_id",
        "gender",
        "visit_city",
        "is_super_vip",
        "geohash12",
        "avg_price",
        "ctr_30",
        "ord_30",
        "total_amt_30",
    ]
    assert [f.name for f in spec.sequential_fields] == [
        "shop_id",
        "item_id",
        "city_id",
        "district_id",
        "shop_aoi_id",
        "shop_geohash_6",
        "shop_geohash_12",
        "category_1_id",
        "rank_7",
        "rank_30",
        "rank_90",
        "hours",
        "time_type",
        "weekdays",
    ]
    assert [f.role for f in spec.sequential_fields].count("item") == 11
    assert len(eleme.FIELD_LAYOUT) == 23
    assert not {"brand_id", "merge_standard_food_id"} & {f.name for f in spec.fields}


def test_raw_numeric_columns_are_the_label_and_the_numeric_fields():
    numeric_fields = [f.name for f in eleme.pipeline_spec().fields if f.type == "numeric"]
    assert eleme.NUMERIC_COLUMNS == (eleme.LABEL_COLUMN, *numeric_fields)
    assert set(eleme.NUMERIC_COLUMNS) <= set(eleme.USED_COLUMNS)


# --------------------------------------------------------------------------- bad input
MALFORMED = [
    good(0),  # 0
    ",".join(raw_line().split(",")[:-1]),  # 1  38 columns
    good(2),  # 2
    raw_line() + ",extra",  # 3  40 columns
    raw_line(avg_price="abc"),  # 4  non-numeric avg_price
    good(5),  # 5
    raw_line(times="10.5"),  # 6  non-integer times
    "",  # 7  empty line
    good(8).replace("508", "5\xff8").encode("latin-1"),  # 8  invalid UTF-8
    good(9),  # 9
    raw_line(label="x"),  # 10 non-numeric label
    raw_line(shop_id_list='"1,2"'),  # 11 quoted comma: 40 columns
    good(12),  # 12
    good(13).replace(",", ",\r", 1),  # 13 stray carriage return
    good(14).replace("101", "1\x0001", 1),  # 14 NUL byte
    good(15),  # 15 (no newline at the end)
]
GOOD_LINES = [0, 2, 5, 9, 12, 15]


def test_malformed_lines_are_counted_by_reason_and_skipped_without_shifting_rows(tmp_path):
    raw = tmp_path / "raw"
    os.makedirs(raw)
    write_lines(raw / "D1_0.csv", MALFORMED, newline_at_end=False)
    write_lines(raw / "D1_0.oracle.csv", [f"{i / 100}" for i in range(len(MALFORMED))])
    result = eleme.prepare(
        str(raw), None, days=["D1_0"], sample_frac=1.0, min_count=1, progress=False
    )
    assert result.report["rows_read"] == 16
    assert result.report["rows_dropped"] == {
        "malformed:empty_line": 1,
        "malformed:non_numeric:avg_price": 1,
        "malformed:non_numeric:label": 1,
        "malformed:non_numeric:times": 1,
        "malformed:unparsable": 3,
        "malformed:wrong_column_count": 3,
    }
    assert result.report["rows_kept"] == 6
    # Every kept sample still carries its own line's values: times 100 + k,
    # avg_price 10 (k + 1) (scaled with the training min/max), oracle k / 100.
    k = _all(result, "times") - 100
    assert sorted(k.tolist()) == GOOD_LINES
    np.testing.assert_allclose(_all(result, "oracle_prob"), k / 100, rtol=1e-6)
    price = result.spec.field("avg_price")
    np.testing.assert_allclose(
        _all(result, "avg_price"), (10 * (k + 1) - price.min) / (price.max - price.min), rtol=1e-6
    )
    np.testing.assert_array_equal(_all(result, "label"), k % 2)


def test_line_checks_do_not_depend_on_the_read_block_size(tmp_path):
    path = tmp_path / "D1_0.csv"
    write_lines(path, MALFORMED * 3, newline_at_end=False)
    whole = eleme.read_raw_file(str(path))
    small = eleme.read_raw_file(str(path), block_bytes=97)
    assert whole.dropped == small.dropped and whole.lines == small.lines == 48
    assert whole.line_numbers.tolist() == small.line_numbers.tolist()
    assert whole.line_numbers.tolist() == [i + 16 * r for r in range(3) for i in GOOD_LINES]
    assert whole.table.equals(small.table)


def test_windows_line_endings_are_read(tmp_path):
    path = tmp_path / "D1_0.csv"
    with open(path, "wb") as fh:
        fh.write(b"".join((good(k) + "\r\n").encode() for k in range(4)))
    raw = eleme.read_raw_file(str(path))
    assert raw.dropped == {} and raw.table.column("geohash12").to_pylist() == ["880101"] * 4


def test_missing_values_and_unknown_codes_are_dropped_by_reason(tmp_path):
    lines = [
        good(0),
        raw_line(gender=-99, times=101),
        raw_line(city_id=-1, times=102),
        raw_line(rank_90=-1, times=103),
        raw_line(geohash12="-1", times=104),
        raw_line(visit_city="", times=105),
        raw_line(brand_id="", times=106),  # checked like the reference preprocessing
        raw_line(merge_standard_food_id="NULL", times=107),
        raw_line(ctr_30=" ", times=108),
        raw_line(shop_id=-1, times=109),  # -1 is not an unknown code of shop_id: kept
        raw_line(avg_price="", gender=-99, times=110),  # counted once, by the first reason
        good(11),
    ]
    write_days(tmp_path, {"D1_0": lines})
    result = eleme.prepare(
        str(tmp_path), None, days=["D1_0"], sample_frac=1.0, min_count=1, progress=False
    )
    assert result.report["rows_dropped"] == {
        "missing:avg_price": 1,
        "missing:brand_id": 1,
        "missing:ctr_30": 1,
        "missing:merge_standard_food_id": 1,
        "missing:visit_city": 1,
        "unknown_code:city_id": 1,
        "unknown_code:gender": 1,
        "unknown_code:geohash12": 1,
        "unknown_code:rank_90": 1,
    }
    assert sorted(_all(result, "times").tolist()) == [100, 109, 111]


def test_sampling_keeps_about_the_fraction_and_is_seeded(tmp_path):
    write_days(tmp_path, {"D1_0": [good(k, user=k % 7) for k in range(300)]})

    def kept(seed):
        raw = eleme.read_raw_file(str(tmp_path / "D1_0.csv"), sample_frac=1 / 3, seed=seed)
        return raw.line_numbers.tolist()

    first = kept(1)
    assert 60 < len(first) < 140
    assert kept(1) == first
    assert kept(2) != first
    assert eleme.read_raw_file(
        str(tmp_path / "D1_0.csv"), sample_frac=1 / 3, seed=1
    ).sampled == len(first)


def test_rows_are_concatenated_in_day_order_and_histories_cross_days(tmp_path):
    write_days(
        tmp_path,
        {"D1_0": [good(0), good(1)], "D3_1": [good(2), good(3)], "D5_0": [good(4), good(5)]},
    )
    result = eleme.prepare(
        str(tmp_path), None, sample_frac=1.0, min_count=1, max_len=3, progress=False
    )
    assert result.report["samples"] == {"train": 4, "valid": 1, "test": 1}
    last = result.tables["test"]
    assert last["times"].tolist() == [105]
    assert last["times_list"].tolist() == [[102, 103, 104]]
    assert last["hist_len"].tolist() == [3]


# --------------------------------------------------------------------------- oracle
def test_oracle_values_follow_their_raw_lines(tmp_path):
    lines = [good(k, user=k % 3) for k in range(30)]
    lines[4] = raw_line(gender=-99)
    write_days(tmp_path, {"D1_0": lines}, oracle=True)
    result = eleme.prepare(
        str(tmp_path), None, days=["D1_0"], sample_frac=0.5, min_count=1, progress=False
    )
    assert result.spec.has_oracle
    k = _all(result, "times") - 100
    np.testing.assert_allclose(_all(result, "oracle_prob"), k / 100, rtol=1e-6)


def test_oracle_file_with_another_line_count_is_rejected(tmp_path):
    write_days(tmp_path, {"D1_0": [good(0), good(1)]})
    write_lines(tmp_path / "D1_0.oracle.csv", ["0.5"])
    with pytest.raises(ValueError, match="has 1 lines but its raw file has 2"):
        eleme.prepare(str(tmp_path), None, days=["D1_0"], progress=False)


def test_oracle_files_for_only_some_days_are_rejected(tmp_path):
    write_days(tmp_path, {"D1_0": [good(0)]}, oracle=True)
    write_days(tmp_path, {"D3_1": [good(1)]})
    with pytest.raises(ValueError, match="not for .*D3_1.oracle.csv"):
        eleme.prepare(str(tmp_path), None, days=["D1_0", "D3_1"], progress=False)


# --------------------------------------------------------------------------- missing files
def test_missing_raw_dir_explains_where_the_files_come_from_and_go(tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError) as info:
        eleme.prepare(missing, None)
    message = str(info.value)
    assert "131047" in message and "https://tianchi.aliyun.com/dataset/131047" in message
    for name in ("D1_0.csv", "D3_1.csv", "D5_0.csv", "--raw-dir", missing):
        assert name in message


def test_missing_day_file_is_named(tmp_path):
    write_days(tmp_path, {"D1_0": [good(0)], "D5_0": [good(1)]})
    with pytest.raises(FileNotFoundError, match=r"D3_1.csv missing in") as info:
        eleme.prepare(str(tmp_path), None, progress=False)
    assert "D1_0.csv" not in str(info.value).split("missing in")[0]


def test_cli_reports_missing_files_without_a_traceback(tmp_path, capsys):
    assert eleme.main(["--raw-dir", str(tmp_path / "none"), "--out", str(tmp_path / "out")]) == 2
    assert "Tianchi dataset 131047" in capsys.readouterr().err


# --------------------------------------------------------------------------- end to end
def test_cli_writes_tfrecords_that_parse_back_to_the_tables(tmp_path, capsys):
    import tensorflow as tf

    lines = [good(k, user=k % 4) for k in range(40)]
    write_days(tmp_path / "raw", {"D1_0": lines[:20], "D3_1": lines[20:]}, oracle=True)
    out = str(tmp_path / "ds")
    argv = [
        "--raw-dir",
        str(tmp_path / "raw"),
        "--out",
        out,
        "--days",
        "D1_0",
        "D3_1",
        "--sample-frac",
        "1",
        "--min-count",
        "1",
        "--max-len",
        "4",
        "--quiet",
    ]
    assert eleme.main(argv) == 0
    assert json.loads(capsys.readouterr().out)["samples"] == {"train": 32, "valid": 4, "test": 4}
    spec = schema.DatasetSpec.load(out)
    assert spec.name == "eleme" and spec.max_len == 4 and spec.has_oracle
    reference = eleme.prepare(
        str(tmp_path / "raw"),
        None,
        days=["D1_0", "D3_1"],
        sample_frac=1.0,
        min_count=1,
        max_len=4,
        progress=False,
    )
    for split in schema.SPLITS:
        files = sorted(tf.io.gfile.glob(os.path.join(out, split, "*.tfrecord")))
        serialized = tf.constant(list(tf.data.TFRecordDataset(files).as_numpy_iterator()))
        parsed = tf.io.parse_example(serialized, spec.tfrecord_features())
        for name, value in parsed.items():
            np.testing.assert_array_equal(
                value.numpy(), reference.tables[split][name], err_msg=name
            )
    assert schema.read_vocab(out, "item_id")[0].startswith("5")


def test_write_raw_csv_round_trips_through_the_reader(tmp_path):
    frame = pd.DataFrame(
        {c: [DEFAULTS[c]] * 3 for c in eleme.USED_COLUMNS if c not in eleme.DROPPED_COLUMNS}
    )
    frame["times"] = [5, 6, 7]
    frame["shop_geohash_6"] = ["wx4g0", "wx4g1", "wx4g2"]  # text codes are fine
    path = eleme.write_raw_csv(frame, str(tmp_path / "D1_0.csv"), oracle=[0.1, 0.2, 0.3])
    raw = eleme.read_raw_file(path)
    assert raw.dropped == {} and raw.lines == 3
    assert raw.table.column("shop_geohash_6").to_pylist() == ["wx4g0", "wx4g1", "wx4g2"]
    np.testing.assert_allclose(eleme.read_oracle(eleme.oracle_path(path), 3), [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="lacks the raw columns"):
        eleme.write_raw_csv(frame.drop(columns="times"), str(tmp_path / "x.csv"))


def test_tfds_builder_prepares_offline_from_the_manual_dir(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    from pipelines import tfds_eleme

    raw = tmp_path / "manual"
    write_days(
        raw,
        {
            d: [good(10 * i + k, user=k % 3) for k in range(10)]
            for i, d in enumerate(eleme.DEFAULT_DAYS)
        },
    )
    config = tfds_eleme.ElemeConfig(name="tiny", sample_frac=1.0, min_count=1, max_len=3)
    builder = tfds_eleme.Builder(data_dir=str(tmp_path / "tfds"), config=config)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(raw)))
    reference = eleme.prepare(
        str(raw), None, sample_frac=1.0, min_count=1, max_len=3, progress=False
    )
    for split in schema.SPLITS:
        batch = next(iter(builder.as_dataset(split=split).batch(100)))
        assert set(batch) == set(reference.tables[split]) - {schema.ORACLE_KEY}
        for name, value in batch.items():
            np.testing.assert_array_equal(
                value.numpy(), reference.tables[split][name], err_msg=name
            )
    meta = os.path.join(builder.data_dir, tfds_eleme.tfds_eleme_dataset_builder.META_DIR)
    assert schema.DatasetSpec.load(meta).split_sizes == {"train": 24, "valid": 3, "test": 3}
    assert schema.read_vocab(meta, "user_id") == reference.vocabularies["user_id"]
    assert "131047" in tfds_eleme.Builder.MANUAL_DOWNLOAD_INSTRUCTIONS
