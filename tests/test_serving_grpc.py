"""The development server's gRPC API (TF Serving's PredictionService) and the gRPC client."""

from __future__ import annotations

import json
import os
import socket
import threading

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
)

from export import client as rest_client
from export import devserver, grpc_client, savedmodel
from export.devserver.grpc_server import make_grpc_server, running_grpc_server
from feseq_tf.schema import DatasetSpec, read_vocab


@pytest.fixture(scope="module")
def rows(tiny_trained_run) -> list[dict]:
    """Raw request rows (histories as '^'-joined strings)."""
    spec = DatasetSpec.load(tiny_trained_run.run_dir)
    run_dir = tiny_trained_run.run_dir
    vocabs = {f.name: read_vocab(run_dir, f.name) for f in spec.fields if f.is_categorical}
    raw = savedmodel.example_rows(spec, vocabs, 10, seed=5)
    return [savedmodel.to_request_row(spec, r) for r in raw]


@pytest.fixture(scope="module")
def servers(tiny_exported_model):
    """(REST URL, gRPC target, model server): both APIs over one loaded model, with
    request batching on (gRPC and REST requests share the batcher)."""
    base = os.path.dirname(tiny_exported_model)
    with devserver.BackgroundServer(base, "feseq", batching=True) as rest:
        with running_grpc_server(rest.model_server) as target:
            yield rest.url, target, rest.model_server


@pytest.fixture(scope="module")
def clients(servers):
    url, target, _ = servers
    with grpc_client.GrpcServingClient(target, "feseq") as grpc_side:
        yield rest_client.ServingClient(url, "feseq"), grpc_side


def test_grpc_and_rest_give_the_same_outputs(clients, rows):
    rest, grpc_side = clients
    np.testing.assert_allclose(
        grpc_side.predict_probabilities(rows, batch_size=4),
        rest.predict_probabilities(rows, batch_size=4),
        atol=1e-6,
    )
    got = grpc_side.predict(rows, signature_name="attention")
    want = rest.predict(rows, signature_name="attention")
    assert sorted(got) == sorted(want) == ["pooling_attention", "probability"]
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=1e-6)


def test_concurrent_grpc_requests_are_each_answered_with_their_rows(clients, rows):
    rest, grpc_side = clients
    want = rest.predict_probabilities(rows)
    got: dict[int, float] = {}

    def send(i: int) -> None:
        got[i] = grpc_side.predict_probabilities([rows[i]])[0]

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(rows))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_allclose([got[i] for i in range(len(rows))], want, atol=1e-6)


def _bad_columns(kind: str, columns: dict, inputs: dict) -> dict:
    """A columnar request's inputs made bad in one way (the same for REST and gRPC)."""
    names = {i["dtype"]: n for n, i in reversed(inputs.items()) if not i["history"]}
    histories = [n for n, i in inputs.items() if i["history"]]
    time_history = f"{names['DT_INT64']}_list"
    assert time_history in histories, (time_history, histories)
    out = dict(columns)
    if kind == "unknown_input":
        out["no_such_input"] = ["x", "y"]
    elif kind == "missing_input":
        del out[names["DT_INT64"]]
    elif kind == "wrong_dtype":
        out[names["DT_STRING"]] = [1.5, 2.5]
    elif kind == "non_integer_timestamp":
        out[names["DT_INT64"]] = [1.5, 2.0]
    elif kind == "wrong_shape":
        out[names["DT_DOUBLE"]] = [[1.0], [2.0]]
    elif kind == "history_length_mismatch":
        for n in histories:
            out[n] = ["5", ""] if n == time_history else ["7^8", ""]
    else:
        raise ValueError(kind)
    return out


def _tensor(values: list) -> object:
    """The TensorProto a gRPC client sends for a JSON column."""
    array = np.array(values)
    if array.dtype.kind == "U":
        array = np.vectorize(lambda s: s.encode("utf-8"), otypes=[object])(array)
    return tf.make_tensor_proto(array)


@pytest.mark.parametrize(
    "kind",
    [
        "unknown_input",
        "missing_input",
        "wrong_dtype",
        "non_integer_timestamp",
        "wrong_shape",
        "history_length_mismatch",
    ],
)
def test_a_bad_grpc_request_gets_invalid_argument_with_the_rest_message(clients, rows, kind):
    rest, grpc_side = clients
    inputs = rest.signature_inputs()
    good = rest.make_request(rows[:2], form="inputs")["inputs"]
    bad = _bad_columns(kind, good, inputs)
    with pytest.raises(rest_client.ServingError) as rest_err:
        rest._call(":predict", {"inputs": bad})
    assert rest_err.value.status == 400
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="feseq"))
    for name, values in bad.items():
        request.inputs[name].CopyFrom(_tensor(values))
    with pytest.raises(grpc.RpcError) as grpc_err:
        grpc_side.stub.Predict(request, timeout=30)
    assert grpc_err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert grpc_err.value.details() == rest_err.value.message


def test_the_server_keeps_serving_after_bad_grpc_requests(clients, rows):
    rest, grpc_side = clients
    request = grpc_side.predict_request(rows[:1])
    request.inputs["no_such_input"].CopyFrom(_tensor(["x"]))
    for _ in range(3):
        with pytest.raises(grpc_client.GrpcServingError) as err:
            grpc_side._call_rpc(grpc_side.stub.Predict, request)
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and err.value.status == 400
    np.testing.assert_allclose(
        grpc_side.predict_probabilities(rows[:1]), rest.predict_probabilities(rows[:1]), atol=1e-6
    )


def test_unknown_models_versions_and_outputs_are_refused_like_rest(servers, clients, rows):
    url = servers[0]
    rest, grpc_side = clients
    for name, version in (("nope", None), ("feseq", 9)):
        other = grpc_client.GrpcServingClient(grpc_side.target, name, version=version)
        with pytest.raises(grpc_client.GrpcServingError) as grpc_err:
            other.predict_probabilities(rows[:1])
        rest_other = rest_client.ServingClient(url, name, version=version)
        with pytest.raises(rest_client.ServingError) as rest_err:
            rest_other.status()
        assert grpc_err.value.code == grpc.StatusCode.NOT_FOUND
        assert grpc_err.value.message == rest_err.value.message
        other.close()
    request = grpc_side.predict_request(rows[:2], signature_name="attention")
    request.output_filter.append("probability")
    reply = grpc_side.stub.Predict(request, timeout=30)
    assert list(reply.outputs) == ["probability"]
    assert reply.model_spec.signature_name == "attention" and reply.model_spec.version.value == 1
    request.output_filter.append("no_such_output")
    with pytest.raises(grpc.RpcError, match="no_such_output") as err:
        grpc_side.stub.Predict(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_get_model_metadata_returns_the_signatures(clients):
    rest, grpc_side = clients
    request = get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=model_pb2.ModelSpec(name="feseq"), metadata_field=["signature_def"]
    )
    reply = grpc_side.stub.GetModelMetadata(request, timeout=30)
    assert reply.model_spec.name == "feseq" and reply.model_spec.version.value == 1
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert reply.metadata["signature_def"].Unpack(signatures)
    assert set(signatures.signature_def) == {"serving_default", "attention"}
    default = signatures.signature_def["serving_default"]
    assert set(default.inputs) == set(rest.signature_inputs())
    assert default.outputs["probability"].dtype == tf.float32.as_datatype_enum
    got = json_format.MessageToDict(signatures, preserving_proto_field_name=True)
    assert got == rest.metadata()["metadata"]["signature_def"]
    assert grpc_side.metadata() == rest.metadata()
    request.metadata_field[:] = ["no_such_field"]
    with pytest.raises(grpc.RpcError, match="no_such_field") as err:
        grpc_side.stub.GetModelMetadata(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_get_model_status_answers_like_the_rest_status_api(servers, clients):
    _, target, _ = servers
    rest, grpc_side = clients
    with grpc.insecure_channel(target) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        request = get_model_status_pb2.GetModelStatusRequest(
            model_spec=model_pb2.ModelSpec(name="feseq")
        )
        reply = stub.GetModelStatus(request, timeout=30)
    assert [(s.version, s.state) for s in reply.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)
    ]
    assert grpc_side.status() == rest.status()
    unseen = grpc_client.GrpcServingClient(target, "feseq", version=7)
    with pytest.raises(grpc_client.GrpcServingError) as grpc_err:
        unseen.status()
    unseen.close()
    with pytest.raises(rest_client.ServingError) as rest_err:
        rest_client.ServingClient(servers[0], "feseq", version=7).status()
    assert grpc_err.value.code == grpc.StatusCode.NOT_FOUND
    assert grpc_err.value.message == rest_err.value.message


def test_the_client_command_line_sends_rows_over_grpc(servers, rows, tmp_path, capsys):
    url, target, _ = servers
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert rest_client.main(["--grpc", target, "--batch-size", "3", str(path)]) == 0
    over_grpc = [float(x) for x in capsys.readouterr().out.split()]
    assert rest_client.main(["--url", url, str(path)]) == 0
    over_rest = [float(x) for x in capsys.readouterr().out.split()]
    assert len(over_grpc) == len(rows)
    np.testing.assert_allclose(over_grpc, over_rest, atol=1e-6)
    assert rest_client.main(["--grpc", "localhost", str(path)]) == 1
    assert "HOST:PORT" in capsys.readouterr().err


def test_a_grpc_port_in_use_is_a_one_line_error(servers, tiny_exported_model, capsys):
    _, _, model_server = servers
    with pytest.raises(OSError, match="cannot listen for gRPC"):
        make_grpc_server(model_server, "127.0.0.1", int(servers[1].rsplit(":", 1)[1]))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        argv = ["--model-base-path", os.path.dirname(tiny_exported_model), "--port", "0"]
        assert devserver.main(argv + ["--grpc-port", str(busy.getsockname()[1])]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot listen for gRPC") and "\n" not in err
    assert devserver.build_parser().parse_args(argv).grpc_port == 8500
