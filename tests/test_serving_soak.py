"""The soak phase of the serving benchmark: fixed-rate load, bad requests, the report."""

from __future__ import annotations

import http.client
import os
import urllib.parse

import grpc
import pytest

from benchmarks import serving as bench
from benchmarks import serving_soak as soak
from export import devserver, grpc_client, savedmodel
from export.devserver.grpc_server import running_grpc_server
from feseq_tf.schema import DatasetSpec, read_vocab


@pytest.fixture(scope="module")
def rows(tiny_trained_run) -> list[dict]:
    run_dir = tiny_trained_run.run_dir
    spec = DatasetSpec.load(run_dir)
    vocabs = {f.name: read_vocab(run_dir, f.name) for f in spec.fields if f.is_categorical}
    raw = savedmodel.example_rows(spec, vocabs, 40, seed=3)
    return [savedmodel.to_request_row(spec, r) for r in raw]


@pytest.fixture(scope="module")
def servers(tiny_exported_model):
    """(REST port, gRPC target): one batching server in this process."""
    base = os.path.dirname(tiny_exported_model)
    with devserver.BackgroundServer(base, "feseq", batching=True) as rest:
        with running_grpc_server(rest.model_server) as target:
            yield urllib.parse.urlparse(rest.url).port, target


@pytest.mark.slow
def test_a_short_soak_answers_every_request_as_expected(servers, rows):
    port, target = servers
    report = soak.run_soak(
        port,
        "feseq",
        rows,
        duration_s=3.0,
        rate=14.0,
        grpc_target=target,
        server_pid=os.getpid(),
        max_rows=16,
        warmup_s=0.5,
        pool_size=8,
    )
    assert report["unexpected_errors"] == 0, report["first_unexpected"]
    assert report["requests"] == report["answered"] == 42
    assert set(report["status"]) == {"rest", "grpc"}
    rest, over_grpc = report["status"]["rest"], report["status"]["grpc"]
    assert sum(rest.values()) == sum(over_grpc.values()) == 21
    # Requests 10 and 11 (one per API) of every 40 are bad: 5 %.
    assert report["bad_requests"] == {"rest": 1, "grpc": 1}
    assert rest == {"200": 20, "400": 1, "other": 0}
    assert over_grpc == {"OK": 20, "INVALID_ARGUMENT": 1, "other": 0}
    assert 0 < report["p50_ms"] <= report["p99_ms"] <= report["max_ms"]
    assert report["requests_per_s"] > 0 and report["good_rows_per_s"] > 0
    assert report["rss_start_mib"] > 0 and report["rss_end_mib"] > 0
    assert report["peak_rss_end_mib"] >= report["rss_end_mib"]
    assert report["rss_check"] in ("PASS", "FAIL")
    text = soak.format_report(report)
    assert "unexpected errors: 0" in text and "grpc: OK 20, INVALID_ARGUMENT 1" in text


def test_every_kind_of_bad_request_is_refused_by_both_apis(servers, rows):
    port, target = servers
    with grpc_client.GrpcServingClient(target, "feseq") as client:
        plan = soak.SoakRequests(
            port, "feseq", rows, client=client, max_rows=4, pool_size=2, seed=0
        )
        assert [k for k, _ in plan.rest_bad] == list(soak.REST_BAD_KINDS)
        assert [k for k, _ in plan.grpc_bad] == list(soak.GRPC_BAD_KINDS)
        for kind, request in plan.grpc_bad:
            with pytest.raises(grpc.RpcError) as err:
                client.stub.Predict(request, timeout=30)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, kind
        for request, size in zip(plan.grpc, plan.rows, strict=True):
            reply = client.stub.Predict(request, timeout=30)
            assert reply.outputs["probability"].tensor_shape.dim[0].size == size
    for kind, request in plan.rest_bad:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        head, body = request.split(b"\r\n\r\n", 1)
        path = head.split(b" ")[1].decode()
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        payload = response.read()
        conn.close()
        assert response.status == 400, (kind, payload)
        assert soak.rest_answer_problem(response.status, payload, kind, 0) is None


def test_answers_that_do_not_fit_the_request_are_unexpected():
    good = b'{"predictions": [0.25, 0.5]}'
    assert soak.rest_answer_problem(200, good, None, 2) is None
    assert "probability" in soak.rest_answer_problem(200, good, None, 3)
    assert "probability" in soak.rest_answer_problem(200, b'{"predictions": [1.5]}', None, 1)
    assert "HTTP 400" in soak.rest_answer_problem(400, b'{"error": "x"}', None, 1)
    assert "answered HTTP 200" in soak.rest_answer_problem(200, good, "unknown_input", 0)
    assert "answered HTTP 500" in soak.rest_answer_problem(500, b"{}", "unknown_input", 0)


def test_memory_is_read_from_proc():
    memory = soak.memory_kib(os.getpid())
    assert memory["VmRSS"] > 0 and memory["VmHWM"] >= memory["VmRSS"]


def test_the_benchmark_takes_the_soak_flags():
    args = bench.build_parser().parse_args(
        ["--duration", "60", "--rate", "25", "--grpc", "--soak-only", "--model-size", "tiny"]
    )
    assert (args.duration, args.rate, args.grpc, args.soak_only) == (60.0, 25.0, True, True)
    with pytest.raises(SystemExit, match="--soak-only needs --duration"):
        bench.main(["--soak-only"])
    with pytest.raises(ValueError, match="rate must be > 0"):
        soak.run_soak(1, "feseq", [], duration_s=1.0, rate=0.0)
