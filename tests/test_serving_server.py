"""The development model server: TF Serving's REST API, its JSON shapes and errors."""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

import numpy as np
import pytest
import tensorflow as tf

from export import devserver, savedmodel
from export.devserver import batching, protocol
from feseq_tf.schema import DatasetSpec, read_vocab

MAX_REQUEST_BYTES = 200_000


def _example_rows(run_dir: str) -> tuple[DatasetSpec, list[dict]]:
    """The run's spec and 12 raw example rows built from its vocabularies."""
    spec = DatasetSpec.load(run_dir)
    vocabs = {f.name: read_vocab(run_dir, f.name) for f in spec.fields if f.is_categorical}
    return spec, savedmodel.example_rows(spec, vocabs, 12, seed=11)


@pytest.fixture(scope="module")
def rows(tiny_trained_run) -> list[dict]:
    """Raw rows with histories as '^'-joined strings."""
    spec, raw = _example_rows(tiny_trained_run.run_dir)
    return [savedmodel.to_request_row(spec, r) for r in raw]


@pytest.fixture(scope="module")
def list_rows(tiny_trained_run) -> list[dict]:
    """Raw rows with histories as lists of strings."""
    spec, raw = _example_rows(tiny_trained_run.run_dir)
    hist = savedmodel.history_input_names(spec)
    return [{k: ([str(x) for x in v] if k in hist else v) for k, v in r.items()} for r in raw]


@pytest.fixture(scope="module")
def expected(tiny_exported_model, rows) -> dict[str, np.ndarray]:
    """What the SavedModel itself returns for ``rows``."""
    loaded = tf.saved_model.load(tiny_exported_model)
    sig = loaded.signatures["serving_default"]
    _, specs = sig.structured_input_signature
    tensors = {n: tf.constant([r[n] for r in rows], dtype=s.dtype) for n, s in specs.items()}
    out = {"probability": sig(**tensors)["probability"].numpy()}
    att = loaded.signatures["attention"](**tensors)
    out["pooling_attention"] = att["pooling_attention"].numpy()
    return out


@pytest.fixture(scope="module")
def server(tiny_exported_model):
    base = os.path.dirname(tiny_exported_model)
    with devserver.running_server(
        base, "feseq", max_request_bytes=MAX_REQUEST_BYTES, max_batch_size=100
    ) as url:
        yield url


def _request(url: str, method: str, path: str, body: bytes | None = None, headers=None):
    parsed = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def _predict(url: str, payload, path: str = "/v1/models/feseq:predict"):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return _request(url, "POST", path, body, {"Content-Type": "application/json"})


def test_model_status_has_tf_servings_shape(server):
    status, body = _request(server, "GET", "/v1/models/feseq")
    assert status == 200
    assert body == {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    assert _request(server, "GET", "/v1/models/feseq/versions/1")[0] == 200


def test_metadata_lists_signatures_and_input_dtypes(server):
    status, body = _request(server, "GET", "/v1/models/feseq/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": "feseq", "signature_name": "", "version": "1"}
    defs = body["metadata"]["signature_def"]["signature_def"]
    assert set(defs) == {"serving_default", "attention"}
    inputs = defs["serving_default"]["inputs"]
    assert inputs["user_id"]["dtype"] == "DT_STRING"
    assert inputs["avg_price"]["dtype"] == "DT_DOUBLE"
    assert inputs["times"]["dtype"] == "DT_INT64"
    assert inputs["shop_id_list"]["tensor_shape"] == {"unknown_rank": True}
    assert set(defs["attention"]["outputs"]) == {"probability", "pooling_attention"}
    assert defs["serving_default"]["method_name"] == "tensorflow/serving/predict"


def test_row_format_predictions_equal_the_saved_model(server, rows, expected):
    status, body = _predict(server, {"instances": rows})
    assert status == 200
    np.testing.assert_allclose(body["predictions"], expected["probability"], atol=1e-6)
    status, body = _predict(server, {"instances": rows[:3]}, "/v1/models/feseq/versions/1:predict")
    assert status == 200 and len(body["predictions"]) == 3


def test_columnar_format_predictions_equal_the_saved_model(server, rows, expected):
    inputs = {name: [r[name] for r in rows] for name in rows[0]}
    status, body = _predict(server, {"signature_name": "serving_default", "inputs": inputs})
    assert status == 200
    np.testing.assert_allclose(body["outputs"], expected["probability"], atol=1e-6)


def test_histories_as_lists_equal_histories_as_strings(server, list_rows, expected):
    for i, row in enumerate(list_rows[:4]):  # one instance: any history length
        status, body = _predict(server, {"instances": [row]})
        assert status == 200, body
        np.testing.assert_allclose(
            body["predictions"], expected["probability"][i : i + 1], atol=1e-6
        )


def test_attention_signature_returns_named_outputs_per_row(server, rows, expected):
    status, body = _predict(server, {"signature_name": "attention", "instances": rows[:2]})
    assert status == 200
    assert set(body["predictions"][0]) == {"probability", "pooling_attention"}
    np.testing.assert_allclose(
        [p["pooling_attention"] for p in body["predictions"]],
        expected["pooling_attention"][:2],
        atol=1e-6,
    )
    status, body = _predict(
        server,
        {"signature_name": "attention", "inputs": {k: [r[k] for r in rows[:2]] for k in rows[0]}},
    )
    assert status == 200 and set(body["outputs"]) == {"probability", "pooling_attention"}


def _without(row: dict, key: str) -> dict:
    return {k: v for k, v in row.items() if k != key}


def _with(row: dict, **changes) -> dict:
    return {**row, **changes}


BAD_REQUESTS = [
    (
        "missing field",
        lambda r: {"instances": [_without(r[0], "times")]},
        "lacks the input(s) ['times']",
    ),
    (
        "missing column",
        lambda r: {"inputs": {k: [x[k] for x in r] for k in r[0] if k != "shop_id"}},
        "lacks the input(s) ['shop_id']",
    ),
    ("unknown field", lambda r: {"instances": [_with(r[0], label=1)]}, "['label']"),
    (
        "number for a string",
        lambda r: {"instances": [_with(r[0], user_id=123)]},
        "'user_id' takes strings",
    ),
    (
        "string for a number",
        lambda r: {"instances": [_with(r[0], avg_price="12.5")]},
        "'avg_price' takes numbers",
    ),
    (
        "float timestamp",
        lambda r: {"instances": [_with(r[0], times=1.5)]},
        "'times' takes integers",
    ),
    (
        "null value",
        lambda r: {"instances": [_with(r[0], gender=None)]},
        "'gender' takes strings, got null",
    ),
    ("malformed JSON", lambda r: b'{"instances": [', "Malformed JSON"),
    ("empty body", lambda r: b"", "body is empty"),
    ("not an object", lambda r: [1, 2], "must be a JSON object"),
    ("both formats", lambda r: {"instances": r[:1], "inputs": {}}, "not both"),
    (
        "neither format",
        lambda r: {"signature_name": "serving_default"},
        "Missing 'inputs' or 'instances'",
    ),
    ("empty instances", lambda r: {"instances": []}, "'instances' is empty"),
    (
        "unknown signature",
        lambda r: {"signature_name": "nope", "instances": r[:1]},
        "'nope' not found",
    ),
    (
        "ragged lists",
        lambda r: {
            "instances": [_with(r[0], shop_id_list=["a"]), _with(r[1], shop_id_list=["a", "b"])]
        },
        "'shop_id_list' is not rectangular",
    ),
    (
        "history length",
        lambda r: {"instances": [_with(r[0], shop_id_list=r[0]["shop_id_list"] + "^extra")]},
        "as many entries as times_list in every row; wrong: shop_id_list",
    ),
    (
        "bad timestamp",
        lambda r: {"instances": [_with(r[0], times_list="12:30")]},
        "timestamps must be integers",
    ),
    ("too many rows", lambda r: {"instances": r[:1] * 101}, "more than the limit of 100"),
    (
        "infinite number",
        lambda r: b'{"instances": [' + json.dumps(r[0]).encode()[:-1] + b', "ctr_30": Infinity}]}',
        "must be finite",
    ),
]


@pytest.mark.parametrize(
    "payload, message", [(p, m) for _, p, m in BAD_REQUESTS], ids=[b[0] for b in BAD_REQUESTS]
)
def test_bad_requests_get_400_naming_the_problem_and_the_server_keeps_serving(
    server, rows, payload, message
):
    status, body = _predict(server, payload(rows))
    assert status == 400, body
    assert set(body) == {"error"} and message in body["error"], body["error"]
    status, body = _predict(server, {"instances": rows[:1]})
    assert status == 200 and len(body["predictions"]) == 1


def test_body_over_the_size_limit_gets_400_and_the_connection_stays_usable(server, rows):
    big = json.dumps({"instances": rows[:1], "padding": "x" * MAX_REQUEST_BYTES}).encode()
    parsed = urllib.parse.urlparse(server)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    try:
        conn.request("POST", "/v1/models/feseq:predict", body=big)
        response = conn.getresponse()
        body = json.loads(response.read())
        assert response.status == 400
        assert f"limit of {MAX_REQUEST_BYTES} bytes" in body["error"]
        conn.request("POST", "/v1/models/feseq:predict", body=json.dumps({"instances": rows[:1]}))
        response = conn.getresponse()
        assert response.status == 200 and len(json.loads(response.read())["predictions"]) == 1
    finally:
        conn.close()


@pytest.mark.parametrize(
    "method, path, status, message",
    [
        ("POST", "/v1/models/other:predict", 404, "Servable not found for request: Latest(other)"),
        ("POST", "/v1/models/feseq/versions/9:predict", 404, "Specific(feseq, 9)"),
        ("GET", "/v1/models/feseq/versions/9", 404, "Specific(feseq, 9)"),
        ("GET", "/v2/whatever", 404, "Malformed request"),
        ("GET", "/v1/models/feseq:predict", 405, "use POST"),
        ("POST", "/v1/models/feseq:classify", 400, "predict only"),
    ],
)
def test_unknown_models_versions_and_urls(server, method, path, status, message):
    got, body = _request(server, method, path, b"{}" if method == "POST" else None)
    assert got == status and message in body["error"]


def test_batching_merges_concurrent_requests_and_isolates_a_bad_one(
    tiny_exported_model, rows, expected
):
    base = os.path.dirname(tiny_exported_model)
    model_server = devserver.ModelServer.from_base_path(base, batching=True, max_batch_rows=64)
    results: dict[int, tuple[int, dict]] = {}
    bodies = {i: json.dumps({"instances": [rows[i]]}).encode() for i in range(len(rows))}
    bodies[-1] = json.dumps({"instances": [_with(rows[0], times_list="x")]}).encode()
    barrier = threading.Barrier(len(bodies))

    def call(i: int) -> None:
        barrier.wait()
        results[i] = model_server.handle("POST", "/v1/models/feseq:predict", bodies[i])

    threads = [threading.Thread(target=call, args=(i,)) for i in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    model_server.close()
    assert results[-1][0] == 400 and "timestamps must be integers" in results[-1][1]["error"]
    got = [results[i][1]["predictions"][0] for i in range(len(rows))]
    np.testing.assert_allclose(got, expected["probability"], atol=1e-6)


def test_serve_main_explains_a_missing_model(tmp_path, capsys):
    assert devserver.main(["--model-base-path", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    os.makedirs(tmp_path / "feseq")
    assert devserver.main(["--model-base-path", str(tmp_path / "feseq")]) == 2
    assert "No version directory" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("module", ["export.devserver", "export.serve"])
def test_both_server_commands_run_the_command_line(tmp_path, module):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    missing = str(tmp_path / "nothing")
    out = subprocess.run(
        [sys.executable, "-m", module, "--model-base-path", missing],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert out.stderr.strip() == f"error: Model base path {missing} does not exist."


def test_signatures_are_called_flat_with_the_same_results(tiny_exported_model, rows):
    servable = devserver.ServableVersion("feseq", 1, tiny_exported_model)
    for signature in servable.signatures.values():
        assert sorted(signature.flat_order) == sorted(signature.inputs)
        arrays = protocol.row_arrays(signature, rows, 100)
        flat = servable.call(signature, arrays)
        keyword = servable.call(dataclasses.replace(signature, flat_order=None), arrays)
        assert set(flat) == set(keyword) == set(signature.outputs)
        for name in flat:
            np.testing.assert_array_equal(flat[name], keyword[name])


def test_flat_columns_take_the_fast_path_and_keep_the_checks():
    spec = tf.TensorSpec([None], tf.int64)
    np.testing.assert_array_equal(protocol.to_array("n", [1, 2], spec), np.array([1, 2]))
    strings = protocol.to_array("s", ["a", "é"], tf.TensorSpec(None, tf.string))
    assert strings.dtype == object and list(strings) == [b"a", "é".encode()]
    with pytest.raises(protocol.RequestError, match="out of the range of int64"):
        protocol.to_array("n", [2**70], spec)
    with pytest.raises(protocol.RequestError, match="takes integers, got a boolean"):
        protocol.to_array("n", [1, True], spec)
    with pytest.raises(protocol.RequestError, match="must have shape"):
        protocol.to_array("n", [1, 2], tf.TensorSpec([3], tf.int64))


def _fake_batcher(expected: int, timeout_s: float, threads: int = 1):
    calls: list[int] = []

    def run(signature, arrays):
        calls.append(len(arrays["x"]))
        return {"y": arrays["x"] * 2}

    batcher = batching.Batcher(run, max_rows=64, num_threads=threads, timeout_s=timeout_s)
    batcher.expected_requests = lambda: expected
    signature = protocol.Signature("s", None, {}, ["y"])
    return batcher, signature, calls


def _send_staggered(batcher, signature, count: int, gap_s: float) -> list:
    results = [None] * count

    def send(i: int) -> None:
        results[i] = batcher.run(signature, {"x": np.array([i])})["y"]

    threads = []
    for i in range(count):
        threads.append(threading.Thread(target=send, args=(i,)))
        threads[-1].start()
        time.sleep(gap_s)
    for t in threads:
        t.join()
    return results


@pytest.mark.parametrize("threads", [1, 2])
def test_batcher_waits_for_the_requests_of_the_open_connections(threads):
    batcher, signature, calls = _fake_batcher(expected=3, timeout_s=5.0, threads=threads)
    try:
        results = _send_staggered(batcher, signature, 3, gap_s=0.05)
    finally:
        batcher.close()
    assert calls == [3] and [list(r) for r in results] == [[0], [2], [4]]


def test_batcher_merges_small_requests_behind_a_running_call_and_runs_big_ones_beside():
    state = {"now": 0, "most": 0, "calls": []}
    lock = threading.Lock()

    def run(signature, arrays):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
            state["calls"].append(len(arrays["x"]))
        time.sleep(0.3)
        with lock:
            state["now"] -= 1
        return {"y": arrays["x"]}

    signature = protocol.Signature("s", None, {}, ["y"])
    batcher = batching.Batcher(run, max_rows=512, num_threads=2, parallel_rows=64)
    try:
        _send_staggered(batcher, signature, 4, gap_s=0.05)  # 1 runs; 3 arrive meanwhile
        assert state["calls"] == [1, 3] and state["most"] == 1
        state["calls"].clear()
        threads = [
            threading.Thread(target=batcher.run, args=(signature, {"x": np.zeros(64)}))
            for _ in range(2)
        ]
        for t in threads:
            t.start()
            time.sleep(0.05)
        for t in threads:
            t.join()
        assert state["calls"] == [64, 64] and state["most"] == 2
    finally:
        batcher.close()


def test_batcher_wait_is_bounded_and_one_client_never_waits():
    batcher, signature, calls = _fake_batcher(expected=5, timeout_s=0.05)
    try:
        start = time.monotonic()
        _send_staggered(batcher, signature, 2, gap_s=0.0)
        assert time.monotonic() - start < 2.0 and sum(calls) == 2
    finally:
        batcher.close()
    batcher, signature, calls = _fake_batcher(expected=1, timeout_s=5.0)
    try:
        start = time.monotonic()
        for i in range(3):
            assert list(batcher.run(signature, {"x": np.array([i])})["y"]) == [2 * i]
        assert time.monotonic() - start < 2.0 and calls == [1, 1, 1]
    finally:
        batcher.close()


def test_http_layer_counts_open_connections(tiny_exported_model, rows):
    base = os.path.dirname(tiny_exported_model)
    with devserver.BackgroundServer(base, "feseq", batching=True) as server:
        parsed = urllib.parse.urlparse(server.url)
        conns = [http.client.HTTPConnection(parsed.hostname, parsed.port) for _ in range(2)]
        try:
            for conn in conns:  # keep-alive: each connection stays open after its reply
                conn.request(
                    "POST", "/v1/models/feseq:predict", json.dumps({"instances": rows[:1]})
                )
                assert conn.getresponse().status == 200
            assert server.model_server.open_connections == 2
        finally:
            for conn in conns:
                conn.close()
        deadline = time.monotonic() + 10
        while server.model_server.open_connections and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.model_server.open_connections == 0


def test_serve_parser_takes_the_batching_and_thread_options():
    args = devserver.build_parser().parse_args(
        ["--model-base-path", "m", "--enable-batching", "--batch-timeout-micros", "0"]
        + ["--intra-op-threads", "1", "--inter-op-threads", "2"]
    )
    assert (args.batch_timeout_micros, args.intra_op_threads, args.inter_op_threads) == (0, 1, 2)
    default = devserver.build_parser().parse_args(["--model-base-path", "m"])
    assert default.batch_timeout_micros == devserver.DEFAULT_BATCH_TIMEOUT_MICROS


def test_benchmark_client_speaks_http_to_the_server(server, rows):
    from benchmarks import serving as bench

    port = urllib.parse.urlparse(server).port
    bodies = [json.dumps({"instances": rows[i : i + 2]}).encode() for i in range(3)]
    result = bench._run_phase(port, "feseq", bodies, requests=6, concurrency=2)
    assert result["errors"] == 0 and result["requests"] == 6, result["first_errors"]
    bad = bench._run_phase(port, "feseq", [b'{"instances": []}'], requests=2, concurrency=1)
    assert bad["errors"] == 2 and "HTTP 400" in bad["first_errors"][0]
    more_clients = bench._run_phase(port, "feseq", bodies, requests=3, concurrency=8)
    assert more_clients["errors"] == 0 and more_clients["requests"] == 3


def test_benchmark_client_counts_refused_connections_as_errors():
    from benchmarks import serving as bench

    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    body = json.dumps({"instances": [{"x": 1}]}).encode()
    result = bench._run_phase(port, "feseq", [body], requests=5, concurrency=2)
    assert result["errors"] == 5 and "ConnectionRefusedError" in result["first_errors"][0]


def test_benchmark_model_sizes_are_valid_configs():
    from benchmarks import serving as bench
    from feseq_tf.config import ModelConfig

    assert set(bench.MODEL_SIZES) == {"paper", "tiny"}
    assert ModelConfig(**bench.MODEL_SIZES["paper"]) == ModelConfig()
    tiny = ModelConfig(**bench.MODEL_SIZES["tiny"])
    assert tiny.embedding_dim < ModelConfig().embedding_dim
    args = bench.build_parser().parse_args(["--model-size", "tiny"])
    assert args.model_size == "tiny"


def test_expect_100_continue_is_answered_before_the_body(server, rows):
    body = json.dumps({"instances": rows[:1]}).encode()
    parsed = urllib.parse.urlparse(server)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/models/feseq:predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        assert sock.recv(1024).startswith(b"HTTP/1.1 100")  # before the body is sent
        sock.sendall(body)
        reply = b""
        while b'"predictions"' not in reply:
            reply += sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 200")
