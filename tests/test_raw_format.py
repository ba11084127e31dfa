"""The raw-value rules of feseq_tf.raw_format, applied alike by the pipelines (pyarrow),
the serving graph (TensorFlow string ops) and the REST client (Python)."""

from __future__ import annotations

import math
import os
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import tensorflow as tf

from export import client, contract, raw_encoder
from feseq_tf import hashing, raw_format, schema
from feseq_tf.schema import DatasetSpec, FieldSpec
from pipelines import generic

NAN = float("nan")

# Raw value -> (cleaned string, None when missing; is it a number; is it an integer
# timestamp). Number and timestamp are None where the value is missing.
CASES: list[tuple[object, str | None, bool | None, bool | None]] = [
    ("abc", "abc", False, False),
    ("  padded\t", "padded", False, False),
    ("\r\nlines\n", "lines", False, False),
    ("\u3000ideographic space\u00a0", "ideographic space", False, False),
    ("\x1cseparators\x1f\x85", "separators", False, False),
    ("\u2028para\u2029", "para", False, False),
    ("\u202fnarrow\u205f\u1680\u2000\u200a", "narrow", False, False),
    ("\u200bzero-width", "\u200bzero-width", False, False),  # not whitespace
    ("in side", "in side", False, False),
    ("café", "café", False, False),
    ("\u65e5\u672c", "\u65e5\u672c", False, False),
    ("12", "12", True, True),
    (" 12 ", "12", True, True),
    ("12.0", "12.0", True, True),
    ("12.00", "12.00", True, True),
    ("5.", "5.", True, True),
    ("+7", "+7", True, True),
    ("-0", "-0", True, True),
    ("12.5", "12.5", True, False),
    (".5", ".5", True, False),
    ("1e3", "1e3", True, False),
    ("-2.5E-3", "-2.5E-3", True, False),
    ("1234567890123456789", "1234567890123456789", True, False),  # beyond 18 digits
    ("1e", "1e", False, False),
    ("inf", "inf", False, False),
    ("1_000", "1_000", False, False),
    ("0x1F", "0x1F", False, False),
    ("\u0663", "\u0663", False, False),  # an Arabic-Indic digit is no number
    ("1 2", "1 2", False, False),
    ("", None, None, None),
    (" \t ", None, None, None),
    ("nan", None, None, None),
    ("NaN", None, None, None),
    ("NAN", None, None, None),
    ("null", None, None, None),
    (" NULL ", None, None, None),
    ("None", None, None, None),
    ("\\N", None, None, None),
    ("\u3000NULL\u00a0", None, None, None),
    ("none", "none", False, False),  # tokens are case-sensitive
    ("Null", "Null", False, False),
    ("n/a", "n/a", False, False),
    # Not text: the client sends the canonical string, the pipelines read the column.
    (12.0, "12", True, True),
    (-3.0, "-3", True, True),
    (0.5, "0.5", True, False),
    (1e-7, "1e-7", True, False),
    (1.5e17, "1.5e+17", True, False),
    (7, "7", True, True),
    (True, "1", True, True),
    (np.int64(5), "5", True, True),
    (np.float32(2.0), "2", True, True),
    (np.float64(0.25), "0.25", True, False),
    (None, None, None, None),
    (NAN, None, None, None),
]
TEXT_CASES = [c for c in CASES if isinstance(c[0], str)]
PRESENT = [c for c in CASES if c[1] is not None]


def _ids(cases):
    return [ascii(c[0]) for c in cases]


def _pipeline_clean(values: pd.Series) -> list[str | None]:
    codes, uniques = generic.categorical_codes(values)
    return [None if c < 0 else str(uniques[c]) for c in codes]


def _serving_clean(texts: list[str]) -> list[str | None]:
    trimmed = raw_encoder._trim(tf.constant(texts, tf.string))
    missing = raw_encoder._is_missing(trimmed).numpy()
    return [None if m else t.decode() for t, m in zip(trimmed.numpy(), missing, strict=True)]


# ---- the three sides against the table ------------------------------------------------------
@pytest.mark.parametrize("raw, expected, number, timestamp", CASES, ids=_ids(CASES))
def test_each_side_cleans_a_raw_value_as_the_table_says(raw, expected, number, timestamp):
    # Pipelines: the value alone in a column of its natural dtype.
    assert _pipeline_clean(pd.Series([raw])) == [expected]
    # Client: the canonical string it sends, and the value the rules read from it.
    sent = client.encode_value("field", raw, "DT_STRING", history=False)
    assert sent == raw_format.canonical_string(raw)
    assert raw_format.clean(raw) == expected
    assert raw_format.is_missing(raw) is (expected is None)
    # Serving graph: what the client sends, trimmed and checked for missing tokens.
    assert _serving_clean([sent]) == [expected]
    if expected is None:
        assert math.isnan(client.encode_value("field", raw, "DT_DOUBLE", history=False))


def test_pipelines_clean_text_columns_as_the_table_says():
    raws = [c[0] for c in TEXT_CASES]
    expected = [c[1] for c in TEXT_CASES]
    assert _pipeline_clean(pd.Series(raws, dtype=object)) == expected
    as_read = pd.Series(pd.arrays.ArrowExtensionArray(pa.array(raws, pa.string())))
    assert _pipeline_clean(as_read) == expected  # how read_table and eleme hand columns over
    assert _serving_clean(raws) == expected  # one batch, the Unicode trimming path


@pytest.mark.parametrize("raw, expected, number, timestamp", PRESENT, ids=_ids(PRESENT))
def test_each_side_reads_numbers_and_timestamps_as_the_table_says(raw, expected, number, timestamp):
    text = raw_format.clean(raw)
    # Python.
    assert raw_format.is_number(text) is number
    assert raw_format.is_integer_timestamp(text) is timestamp
    # Client: a number input takes numbers only.
    sent = raw_format.canonical_string(raw)
    if number:
        assert client.encode_value("x", sent, "DT_DOUBLE", history=False) == float(text)
    else:
        with pytest.raises(ValueError, match="x must be a number"):
            client.encode_value("x", sent, "DT_DOUBLE", history=False)
    # Pipelines: a numeric column (generic) and the timestamp column check (eleme).
    values, missing, bad = generic.numeric_values(pd.Series([raw_format.canonical_string(raw)]))
    assert not missing[0] and bad[0] == (not number)
    if number:
        assert values[0] == float(text)
    col = pc.utf8_trim_whitespace(pa.array([raw_format.canonical_string(raw)]))
    ts_ok = pc.match_substring_regex(col, raw_format.INTEGER_TIMESTAMP_PATTERN).to_pylist()
    assert ts_ok == [timestamp]
    # Serving graph.
    tokens = tf.constant([text])
    assert bool(raw_encoder._is_number(tokens).numpy()[0]) is number
    assert bool(raw_encoder._is_integer_timestamp(tokens).numpy()[0]) is timestamp
    if timestamp:
        assert raw_encoder._timestamps(tokens).numpy()[0] == int(float(text))


# Joined history (as sent) -> entries after the split (trimmed, empty ones dropped).
HISTORIES = [
    ("a^b^c", ["a", "b", "c"]),
    (" a ^\tb ", ["a", "b"]),
    ("^a^^b^", ["a", "b"]),
    ("", []),
    ("^^", []),
    (" ^ \u3000^", []),
    ("NULL^x^nan", ["NULL", "x", "nan"]),  # a missing entry stays an entry (OOV)
    ("\u00a0\u65e5\u672c^café\u2029", ["\u65e5\u672c", "café"]),
    ("12^12.0^-0", ["12", "12.0", "-0"]),
]


@pytest.fixture(scope="module")
def history_encoder(tmp_path_factory):
    """A raw-feature encoder over one categorical history whose vocabulary holds every
    entry of :data:`HISTORIES` (max_len 4)."""
    values = sorted(
        {e for _, entries in HISTORIES for e in entries} - set(raw_format.MISSING_TOKENS)
    )
    vocab_dir = str(tmp_path_factory.mktemp("vocab"))
    raw_format.write_vocabulary(os.path.join(vocab_dir, "item.txt"), values)
    spec = DatasetSpec(
        name="raw",
        fields=(
            FieldSpec(
                "item",
                "item",
                "categorical",
                sequential=True,
                vocab_size=len(values) + schema.NUM_RESERVED_IDS,
            ),
        ),
        max_len=4,
    )
    return raw_encoder.RawFeatureEncoder(spec, vocab_dir), values


def test_each_side_splits_histories_as_the_table_says(history_encoder):
    encoder, values = history_encoder
    id_of = {v: i + raw_format.FIRST_VOCABULARY_ID for i, v in enumerate(values)}
    texts = [h for h, _ in HISTORIES]
    n = len(texts)
    out = encoder(
        {
            "item": tf.constant(["a"] * n),
            "times": tf.zeros([n], tf.int64),
            "item_list": tf.constant(texts),
            "times_list": tf.constant(
                [raw_format.HISTORY_SEPARATOR.join(["1"] * len(e)) for _, e in HISTORIES]
            ),
        }
    )
    for k, (text, entries) in enumerate(HISTORIES):
        assert raw_format.split_history(text) == entries
        ids = [id_of.get(e, schema.OOV_ID) for e in entries]
        expected = [schema.PAD_ID] * (4 - len(ids)) + ids
        assert out["item_list"].numpy()[k].tolist() == expected, text
        assert out["hist_len"].numpy()[k] == len(entries)


def test_client_joins_history_lists_the_graph_splits_back():
    values = [" a", 12.0, None, NAN, "x", True, 0.5]
    sent = client.encode_value("item_list", values, "DT_STRING", history=True)
    assert sent == " a^12^NULL^NULL^x^1^0.5"
    entries = raw_format.split_history(sent)
    assert [None if e in raw_format.MISSING_TOKENS else e for e in entries] == [
        raw_format.clean(v) for v in values
    ]
    assert contract.to_request_row(_one_history_spec(), {"item_list": values})["item_list"] == sent


def _one_history_spec() -> DatasetSpec:
    field = FieldSpec("item", "item", "categorical", sequential=True, vocab_size=3)
    return DatasetSpec(name="raw", fields=(field,), max_len=2)


def test_a_history_entry_holding_the_separator_is_refused():
    with pytest.raises(ValueError, match="must not contain '\\^'.*'a\\^b'"):
        raw_format.join_history(["a^b"])


# ---- the rules themselves -----------------------------------------------------------------
def test_whitespace_is_the_set_the_pipelines_trim():
    chars = [chr(c) for c in range(0x3100)] + ["\ufeff", "\U0001f600"]
    trimmed = pc.utf8_trim_whitespace(pa.array(["a" + c for c in chars])).to_pylist()
    assert {c for c, t in zip(chars, trimmed, strict=True) if t == "a"} == set(
        raw_format.WHITESPACE
    )
    for text in ["  a b ", "\u3000x\x85", "\u2028", "q\u200b "]:
        assert raw_format.trim(text) == re.sub(raw_format.TRIM_PATTERN, "", text)


def test_patterns_read_alike_in_python_re_and_re2():
    texts = [c[1] for c in PRESENT] + ["12\n", "\n12", "1.5.2", "--1", "+.5e+7"]
    arr = pa.array(texts)
    for pattern in (raw_format.FLOAT_PATTERN, raw_format.INTEGER_TIMESTAMP_PATTERN):
        python = [re.fullmatch(pattern, t) is not None for t in texts]
        assert pc.match_substring_regex(arr, pattern).to_pylist() == python
        assert tf.strings.regex_full_match(tf.constant(texts), pattern).numpy().tolist() == python


def test_canonical_floats_are_written_as_the_pipelines_write_a_float_column():
    rng = np.random.default_rng(0)
    floats = rng.standard_normal(500) * 10.0 ** rng.integers(-12, 25, 500)
    floats = np.concatenate([floats, [0.1, 1 / 3, 1e-6, 9.99e-7, 1e10, 9999999999.5, -0.0]])
    written = _pipeline_clean(pd.Series(floats))  # non-integral: the float rule throughout
    assert written == [raw_format.float_text(float(x)) for x in floats]
    fractions = [(w, float(x)) for w, x in zip(written, floats, strict=True) if x != round(x)]
    assert len(fractions) > 100
    assert [w for w, _ in fractions] == [raw_format.canonical_string(x) for _, x in fractions]


def test_integral_float_column_is_written_as_integers():
    floats = pd.Series([12.0, -1.0, 0.0, -0.0, 2.0**53 - 1, NAN])
    expected = [raw_format.clean(float(x)) for x in floats]
    assert _pipeline_clean(floats) == expected == ["12", "-1", "0", "0", "9007199254740991", None]


@pytest.mark.parametrize(
    "values",
    [["a", "café", "\u65e5\u672c", "x\ry", "12.0", ""], []],
    ids=["unicode", "empty"],
)
def test_vocabulary_files_round_trip_in_utf8(tmp_path, values):
    path = schema.write_vocab(str(tmp_path), "f", values)
    with open(path, "rb") as fh:
        assert fh.read() == "".join(v + "\n" for v in values).encode("utf-8")
    assert raw_format.read_vocabulary(path) == values
    assert schema.read_vocab(str(tmp_path), "f") == values


def test_a_vocabulary_value_with_a_newline_is_refused(tmp_path):
    with pytest.raises(ValueError, match="'f'.*newline.*'a\\\\nb'"):
        schema.write_vocab(str(tmp_path), "f", ["ok", "a\nb"])


# ---- hashed fields --------------------------------------------------------------------------
# Every CASES value in a hashed field of its own; buckets alternate so that one request
# mixes bucket counts (and a vocabulary field, "city").
HASH_BUCKETS = (1000, 7)
#: Ids of "12", "abc", "café" and "日本" hashed into 1000 buckets.
PINNED_IDS_1000 = [890, 387, 589, 885]


def _farmhash_id(text: str, buckets: int) -> int:
    """The id of a present value: FarmHash Fingerprint64 of its UTF-8 bytes (by
    ``tf.fingerprint``, little-endian) mod ``buckets``, after the reserved ids."""
    fingerprint = tf.fingerprint(tf.constant([text])).numpy()[0]
    return raw_format.FIRST_VOCABULARY_ID + int.from_bytes(bytes(fingerprint), "little") % buckets


def _in_history(raw) -> bool:
    """Whether a client can send ``raw`` as a history entry: a blank string is padding
    there (a missing entry is written as a missing-value token)."""
    return not (isinstance(raw, str) and raw_format.trim(raw) == "")


@pytest.fixture(scope="module")
def hashed_sides(tmp_path_factory):
    """Two impressions of one user holding every CASES value (each in a sequential
    hashed column of its natural dtype, so the second impression's history holds it):
    the pipeline's records and the serving graph's ids of the same raw values as the
    client sends them."""
    names = [f"f{k}" for k in range(len(CASES))]
    columns = {name: pd.Series([c[0], c[0]]) for name, c in zip(names, CASES, strict=True)}
    df = pd.DataFrame({"user": ["u", "u"], "ts": [1, 2], "label": [0, 1], "city": ["x", "y"]})
    df = pd.concat([df, pd.DataFrame(columns)], axis=1)
    ps = generic.PipelineSpec(
        name="hashed",
        user_key="user",
        timestamp="ts",
        non_sequential_fields=[{"name": "city"}],
        sequential_fields=[
            {"name": n, "hash_buckets": HASH_BUCKETS[k % 2]} for k, n in enumerate(names)
        ],
        max_len=1,
        min_count=1,
        split_ratios=(1, 0, 0),
        shuffle_train=False,
    )
    result = generic.build_dataset(df, ps, None, progress=False)
    vocab_dir = str(tmp_path_factory.mktemp("hashed_vocab"))
    assert set(result.vocabularies) == {"city"}  # hashed fields have no vocabulary
    for name, values in result.vocabularies.items():
        raw_format.write_vocabulary(os.path.join(vocab_dir, f"{name}.txt"), values)
    request = {"city": tf.constant(["x", "unseen"]), "ts": tf.constant([1, 2], tf.int64)}
    request["ts_list"] = tf.constant(["", "1"])
    for name, (raw, *_) in zip(names, CASES, strict=True):
        sent = client.encode_value(name, raw, "DT_STRING", history=False)
        history = client.encode_value(name, [raw], "DT_STRING", history=True)
        request[name] = tf.constant([sent, sent])
        request[name + "_list"] = tf.constant(["", history if _in_history(raw) else "NULL"])
    encoder = raw_encoder.RawFeatureEncoder(result.spec, vocab_dir)
    served = {k: v.numpy() for k, v in encoder(request).items()}
    return result.spec, result.tables["train"], served


@pytest.mark.parametrize("k", range(len(CASES)), ids=_ids(CASES))
def test_each_side_hashes_a_raw_value_as_the_table_says(hashed_sides, k):
    spec, records, served = hashed_sides
    raw, expected, _, _ = CASES[k]
    name, buckets = f"f{k}", HASH_BUCKETS[k % 2]
    assert spec.field(name).hash_buckets == buckets
    assert spec.field(name).vocab_size == buckets + schema.NUM_RESERVED_IDS
    want = schema.OOV_ID if expected is None else _farmhash_id(expected, buckets)
    assert records[name].tolist() == [want, want]  # pipelines
    assert served[name].tolist() == [want, want]  # serving graph, from the client's value
    if _in_history(raw):
        assert records[name + "_list"].tolist() == [[schema.PAD_ID], [want]]
        assert served[name + "_list"].tolist() == [[schema.PAD_ID], [want]]
    assert served["city"].tolist() == records["city"].tolist()[:1] + [schema.OOV_ID]


def test_equal_canonical_values_share_a_bucket_and_the_rule_is_stable():
    texts = ["12", "abc", "café", "\u65e5\u672c"]
    got = hashing.hashed_ids(tf.constant(texts), 1000).numpy().tolist()
    assert got == [_farmhash_id(t, 1000) for t in texts]
    # Pinned: a model keeps the ids it was trained with across TensorFlow versions.
    assert got == PINNED_IDS_1000
    # 12, 12.0, " 12 " and "12" are one value; the string "12.0" is another.
    same = [raw_format.clean(v) for v in (12, 12.0, " 12 ", "12")]
    ids = hashing.hashed_ids_numpy(same + [raw_format.clean("12.0")], 1000)
    assert len(set(ids[:4].tolist())) == 1 and ids[4] != ids[0]
    assert hashing.hashed_ids_numpy([], 5).shape == (0,)


@pytest.mark.parametrize("buckets", [0, -1, 2.5, True, "10"])
def test_hashing_refuses_a_bad_bucket_count(buckets):
    with pytest.raises(ValueError, match=f"buckets must be an integer >= 1, got {buckets!r}"):
        hashing.hashed_ids(tf.constant(["a"]), buckets)
