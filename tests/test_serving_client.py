"""The REST client end to end against the development server, and its encoding rules."""

from __future__ import annotations

import json
import math
import os
import socket

import numpy as np
import pytest
import tensorflow as tf

from export import client, devserver, savedmodel
from feseq_tf.schema import DatasetSpec, read_vocab


@pytest.fixture(scope="module")
def raw_rows(tiny_trained_run) -> list[dict]:
    """Raw rows as a user has them: history lists, numbers for some categorical ids,
    extra keys."""
    spec = DatasetSpec.load(tiny_trained_run.run_dir)
    vocabs = {
        f.name: read_vocab(tiny_trained_run.run_dir, f.name)
        for f in spec.fields
        if f.is_categorical
    }
    rows = savedmodel.example_rows(spec, vocabs, 7, seed=21)
    for row in rows:
        row["label"] = 0
        if row["gender"].isdigit():
            row["gender"] = int(row["gender"])  # 1 -> "1", as the pipelines write it
        row["hours_list"] = [
            float(h) if h.isdigit() else h for h in row["hours_list"]
        ]  # 12.0 -> "12"
    return rows


@pytest.fixture(scope="module")
def expected(tiny_trained_run, tiny_exported_model, raw_rows) -> np.ndarray:
    spec = DatasetSpec.load(tiny_trained_run.run_dir)
    loaded = tf.saved_model.load(tiny_exported_model)
    joined = [savedmodel.to_request_row(spec, r) for r in raw_rows]
    tensors = {}
    for name, ts in savedmodel.serving_input_signature(spec).items():
        values = [r[name] for r in joined]
        if ts.dtype == tf.string:
            values = [client.canonical_string(v) for v in values]
        tensors[name] = tf.constant(values, dtype=ts.dtype)
    return loaded.signatures["serving_default"](**tensors)["probability"].numpy()


@pytest.fixture(scope="module")
def server(tiny_exported_model):
    with devserver.running_server(os.path.dirname(tiny_exported_model), "feseq") as url:
        yield url


@pytest.fixture()
def rows_file(tmp_path, raw_rows) -> str:
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in raw_rows) + "\n\n")
    return str(path)


@pytest.mark.parametrize("form", ["instances", "inputs"])
def test_cli_prints_one_probability_per_row(server, rows_file, expected, capsys, form):
    code = client.main(
        ["--url", server, "--model", "feseq", "--format", form, "--batch-size", "3", rows_file]
    )
    assert code == 0
    printed = [float(line) for line in capsys.readouterr().out.split()]
    np.testing.assert_allclose(printed, expected, atol=1e-6)


def test_cli_attention_prints_json_lines(server, rows_file, capsys, tiny_trained_run):
    assert client.main(["--url", server, "--attention", rows_file]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    spec = DatasetSpec.load(tiny_trained_run.run_dir)
    assert len(lines) == 7 and len(lines[0]["pooling_attention"]) == spec.max_len + 1


def test_client_api_status_metadata_and_version(server, raw_rows, expected):
    c = client.ServingClient(server, "feseq", version=1)
    assert c.status()["model_version_status"][0]["state"] == "AVAILABLE"
    assert c.signature_inputs()["times"] == {"dtype": "DT_INT64", "history": False}
    assert c.signature_inputs()["times_list"] == {"dtype": "DT_STRING", "history": True}
    np.testing.assert_allclose(c.predict_probabilities(raw_rows, batch_size=4), expected, atol=1e-6)


def test_client_reports_server_errors_and_bad_rows(server, raw_rows):
    with pytest.raises(client.ServingError) as err:
        client.ServingClient(server, "nope").status()
    assert err.value.status == 404 and "nope" in err.value.message
    c = client.ServingClient(server)
    with pytest.raises(ValueError, match="row 0 lacks the field"):
        c.predict([{k: v for k, v in raw_rows[0].items() if k != "times"}])
    with pytest.raises(ValueError, match="avg_price must be a number"):
        c.predict([{**raw_rows[0], "avg_price": "cheap"}])
    with pytest.raises(client.ServingError) as err:
        c.predict([{**raw_rows[0], "times_list": "1^2", "shop_id_list": "a"}])
    assert err.value.status == 400 and "times_list" in err.value.message


def test_cli_fails_cleanly_when_nothing_listens(rows_file, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert client.main(["--url", f"http://127.0.0.1:{port}", rows_file]) == 1
    assert "cannot reach" in capsys.readouterr().err


def test_read_rows_names_the_bad_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match="rows.jsonl:2: a row must be a JSON object"):
        client.read_rows(str(path))
    path.write_text('{"a": 1}\n{oops\n')
    with pytest.raises(ValueError, match="rows.jsonl:2: not valid JSON"):
        client.read_rows(str(path))


@pytest.mark.parametrize(
    "value, text",
    [
        (123, "123"),
        (12.0, "12"),
        (-1.0, "-1"),
        (0.5, "0.5"),
        (True, "1"),
        (None, ""),
        (float("nan"), ""),
        ("007", "007"),
        (np.int64(5), "5"),
        (np.float32(2.0), "2"),
    ],
)
def test_canonical_string_matches_how_the_pipelines_write_values(value, text):
    assert client.canonical_string(value) == text


def test_encode_value_follows_the_signature_dtypes():
    assert client.encode_value("x", "12.5", "DT_DOUBLE", history=False) == 12.5
    assert math.isnan(client.encode_value("x", "NULL", "DT_DOUBLE", history=False))
    assert math.isnan(client.encode_value("x", None, "DT_DOUBLE", history=False))
    assert client.encode_value("t", "1700000000", "DT_INT64", history=False) == 1700000000
    assert client.encode_value("t", 17.0, "DT_INT64", history=False) == 17
    assert client.encode_value("h", [1, 2.0, "a"], "DT_STRING", history=True) == "1^2^a"
    assert client.encode_value("h", None, "DT_STRING", history=True) == ""
    with pytest.raises(ValueError, match="integer timestamp"):
        client.encode_value("t", 1.5, "DT_INT64", history=False)
    with pytest.raises(ValueError, match="one value per row"):
        client.encode_value("x", [1], "DT_STRING", history=False)
