"""TF Serving's gRPC API over the development server's loaded models.

Serves ``tensorflow.serving.PredictionService`` (``Predict``, ``GetModelMetadata``) and
``tensorflow.serving.ModelService`` (``GetModelStatus``) from the stubs of
``tensorflow-serving-api``, over the same :class:`~export.devserver.routing.ModelServer`
as the REST API: the same loaded versions, the same batcher (concurrent REST and gRPC
requests merge into one model call) and the same checks. A ``Predict`` request's
tensors are checked as the equivalent columnar REST request
(:func:`~export.devserver.protocol.columnar_request`), so a bad request gets
``INVALID_ARGUMENT`` with the message REST gives in its 400 reply; an unknown model or
version gets ``NOT_FOUND``. ``Classify``, ``Regress`` and ``MultiInference`` answer
``UNIMPLEMENTED``, as TF Serving does for a model without such signatures.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from export.devserver.protocol import RequestError, columnar_request, parse_predict
from export.devserver.routing import ModelServer

DEFAULT_GRPC_THREADS = 16
SIGNATURE_DEF_FIELD = "signature_def"

# The HTTP status of a refused REST request -> the gRPC status of the same refusal.
_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
}
# TensorProto dtypes a request may use: those a JSON request can express.
_READABLE_DTYPES = frozenset(
    types_pb2.DataType.Value(name)
    for name in ("DT_STRING", "DT_FLOAT", "DT_DOUBLE", "DT_HALF", "DT_INT32", "DT_INT64", "DT_BOOL")
)


class _Refused(Exception):
    """A request refused with a gRPC status of its own (no REST equivalent)."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@contextlib.contextmanager
def _answering(context: grpc.ServicerContext) -> Iterator[None]:
    """Turn a refused request into its gRPC status, a bug into ``INTERNAL``."""
    try:
        yield
    except RequestError as err:
        context.abort(_CODES.get(err.status, grpc.StatusCode.INTERNAL), err.message)
    except _Refused as err:
        context.abort(err.code, err.message)
    except Exception as err:  # a bug, not a bad request: report it, keep serving
        traceback.print_exc(file=sys.stderr)
        context.abort(grpc.StatusCode.INTERNAL, f"Internal error: {type(err).__name__}: {err}")


def _version(spec: Any) -> str | None:
    return str(spec.version.value) if spec.HasField("version") else None


def tensor_array(name: str, proto: Any, max_values: int) -> np.ndarray:
    """A request's ``TensorProto`` -> a NumPy array; a :class:`RequestError` (400) for a
    dtype JSON cannot express, a malformed tensor or one of more than ``max_values``
    values (a tensor may state its shape and give one value for all)."""
    if proto.dtype not in _READABLE_DTYPES:
        raise RequestError(
            400,
            f"Input {name!r} has dtype {types_pb2.DataType.Name(proto.dtype)}, which this "
            "server cannot feed.",
        )
    dims = [d.size for d in proto.tensor_shape.dim]
    if any(d < 0 for d in dims) or proto.tensor_shape.unknown_rank:
        raise RequestError(400, f"Input {name!r} has a shape of unknown size: {dims}.")
    if int(np.prod(dims, dtype=np.float64)) > max_values:
        raise RequestError(
            400,
            f"Input {name!r} has {int(np.prod(dims, dtype=np.float64))} values, more than "
            f"the limit of {max_values} (--max-request-bytes).",
        )
    try:
        return tf.make_ndarray(proto)
    except (TypeError, ValueError) as err:
        raise RequestError(400, f"Input {name!r} is not a valid TensorProto: {err}") from None


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """``PredictionService.Predict`` and ``GetModelMetadata`` over a :class:`ModelServer`."""

    def __init__(self, model_server: ModelServer):
        self.model_server = model_server

    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        server = self.model_server
        # A request in flight counts as an open connection of the HTTP layer does: the
        # batcher briefly waits for it to merge it with the others.
        server.connection_opened()
        try:
            with _answering(context):
                return self._predict(request)
        finally:
            server.connection_closed()

    def _predict(self, request: Any) -> Any:
        server = self.model_server
        spec = request.model_spec
        servable = server.servable(spec.name, _version(spec), spec.version_label or None)
        arrays = {
            name: tensor_array(name, proto, server.max_request_bytes)
            for name, proto in request.inputs.items()
        }
        signature, arrays, _ = parse_predict(
            columnar_request(spec.signature_name, arrays),
            servable.signatures,
            server.max_batch_size,
        )
        outputs = servable.run(signature, arrays)
        wanted = list(request.output_filter) or list(outputs)
        unknown = [n for n in wanted if n not in outputs]
        if unknown:
            raise RequestError(
                400,
                f"output tensor alias not found in signature: {unknown[0]}; signature "
                f"{signature.name!r} has the outputs {sorted(outputs)}.",
            )
        reply = predict_pb2.PredictResponse()
        reply.model_spec.name = servable.name
        reply.model_spec.version.value = servable.version
        reply.model_spec.signature_name = signature.name
        for name in wanted:
            reply.outputs[name].CopyFrom(tf.make_tensor_proto(outputs[name]))
        return reply

    def GetModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        with _answering(context):
            fields = list(request.metadata_field)
            if not fields:
                raise RequestError(
                    400, "GetModelMetadataRequest must specify at least one metadata_field."
                )
            for field in fields:
                if field != SIGNATURE_DEF_FIELD:
                    raise RequestError(
                        400, f"Metadata field {field} is not supported (only 'signature_def')."
                    )
            rest = _rest_get(self.model_server, request.model_spec, "/metadata")
            reply = get_model_metadata_pb2.GetModelMetadataResponse()
            json_format.ParseDict(rest["model_spec"], reply.model_spec)
            signatures = get_model_metadata_pb2.SignatureDefMap()
            json_format.ParseDict(rest["metadata"][SIGNATURE_DEF_FIELD], signatures)
            reply.metadata[SIGNATURE_DEF_FIELD].Pack(signatures)
            return reply


class ModelStatusServicer(model_service_pb2_grpc.ModelServiceServicer):
    """``ModelService.GetModelStatus`` (the REST status API's reply, as protos)."""

    def __init__(self, model_server: ModelServer):
        self.model_server = model_server

    def GetModelStatus(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        with _answering(context):
            rest = _rest_get(self.model_server, request.model_spec, "")
            reply = get_model_status_pb2.GetModelStatusResponse()
            json_format.ParseDict(rest, reply, ignore_unknown_fields=True)
            return reply

    def HandleReloadConfigRequest(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "The development server serves the versions under its --model-base-path; it "
            "takes no model config.",
        )


def _rest_get(model_server: ModelServer, spec: Any, tail: str) -> dict[str, Any]:
    """The REST API's reply to ``GET`` the status (``tail=""``) or metadata of the model
    ``spec`` names; a :class:`RequestError` as REST refuses it."""
    version, label = _version(spec), spec.version_label or None
    if spec.name not in model_server.versions or label is not None:
        model_server.servable(spec.name, version, label)  # raises the REST API's 404
    path = f"/v1/models/{spec.name}" + (f"/versions/{version}" if version else "") + tail
    status, reply = model_server.handle("GET", path, b"")
    if status != 200:
        raise RequestError(status, reply["error"])
    return reply


def make_grpc_server(
    model_server: ModelServer,
    host: str,
    port: int,
    *,
    threads: int = DEFAULT_GRPC_THREADS,
) -> tuple[grpc.Server, int]:
    """A gRPC server (not yet started) for ``model_server`` and the port it listens on
    (``port=0`` picks a free one). A request holds one of ``threads`` threads while it
    runs. Raises ``OSError`` when the address cannot be bound (also when another server
    listens there: the port is not shared)."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}.")
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="feseq-grpc"),
        options=[
            ("grpc.max_receive_message_length", model_server.max_request_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(model_server), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelStatusServicer(model_server), server
    )
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as err:
        bound, detail = 0, f": {err}"
    else:
        detail = ""
    if not bound:
        server.stop(None)
        raise OSError(f"cannot listen for gRPC on {address}{detail} (is the port in use?)")
    return server, bound


@contextlib.contextmanager
def running_grpc_server(
    model_server: ModelServer, host: str = "127.0.0.1", port: int = 0, **kwargs: Any
) -> Iterator[str]:
    """Serve ``model_server`` over gRPC in background threads; yields the target
    (``host:port``) and stops the server on exit (``model_server`` stays open)."""
    server, bound = make_grpc_server(model_server, host, port, **kwargs)
    server.start()
    try:
        yield f"{host}:{bound}"
    finally:
        server.stop(None).wait()
