"""gRPC client for a FESeq model on TF Serving's ``PredictionService`` (``export.client --grpc``).

:class:`GrpcServingClient` sends the rows :class:`~export.client.ServingClient` sends
over REST as a ``PredictRequest`` of one ``TensorProto`` per input (built from the
same encoded values: the columnar request), reads the signature from
``GetModelMetadata`` and the status from ``ModelService.GetModelStatus``, and returns
the same Python values. It needs ``grpcio`` and ``tensorflow-serving-api``, whose
protos load TensorFlow: :mod:`export.client` imports this module only for ``--grpc``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from export.client import DEFAULT_MODEL, DEFAULT_SIGNATURE, FORMS, ServingClient, ServingError

# NumPy dtype of a request tensor, by the signature input's dtype.
_NUMPY_DTYPES = {
    "DT_STRING": object,
    "DT_DOUBLE": np.float64,
    "DT_FLOAT": np.float32,
    "DT_INT64": np.int64,
    "DT_INT32": np.int32,
    "DT_BOOL": np.bool_,
}
# gRPC status -> the HTTP status REST gives for the same refusal (0: not reached).
_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 0,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
}


class GrpcServingError(ServingError):
    """The server refused a gRPC call.

    Attributes:
        code: grpc.StatusCode. The call's status (``INVALID_ARGUMENT`` for a bad request).
        status: int. The HTTP status REST gives for the same refusal (0: not reached).
        message: str. The server's message.
    """

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(_HTTP_STATUS.get(code, 500), message)
        self.code = code

    def __str__(self) -> str:
        return f"gRPC {self.code.name}: {self.message}"


def tensor_proto(name: str, values: Any, dtype: str) -> Any:
    """The ``TensorProto`` of one input: ``values`` (one encoded JSON value per row, as
    in a columnar REST request) as a tensor of the signature's ``dtype`` (``DT_*``)."""
    np_dtype = _NUMPY_DTYPES.get(dtype)
    if np_dtype is None:
        raise ValueError(f"{name}: the client cannot encode inputs of dtype {dtype}.")
    if np_dtype is object:
        array = np.empty(len(values), dtype=object)
        array[:] = [v.encode("utf-8") for v in values]
    else:
        array = np.asarray(values, dtype=np_dtype)
    return tf.make_tensor_proto(array)


class GrpcServingClient(ServingClient):
    """A TF Serving gRPC client for one model, with :class:`ServingClient`'s methods.

    Args:
        target: str. The server's gRPC address, ``HOST:PORT`` (e.g. ``"localhost:8500"``).
        model: str. Model name. Defaults to ``"feseq"``.
        version: int or None. A specific version (None: the latest the server has).
        timeout: float. Seconds per call. Defaults to 30.

    Attributes:
        stub: the ``PredictionService`` stub (for asynchronous calls:
            ``client.stub.Predict.future(client.predict_request(rows))``).

    Example:
    >>> client = GrpcServingClient("localhost:8500")
    >>> client.predict_probabilities([{"user_id": "10004304", ...}])
    [0.0412...]
    """

    def __init__(
        self,
        target: str,
        model: str = DEFAULT_MODEL,
        *,
        version: int | None = None,
        timeout: float = 30.0,
    ):
        # Not ServingClient.__init__: that one takes an HTTP URL; the request building
        # and signature reading it provides need only the attributes set here.
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit() or "/" in target:
            raise ValueError(f"target must be HOST:PORT (e.g. localhost:8500), got {target!r}.")
        if version is not None and (not isinstance(version, int) or version < 1):
            raise ValueError(f"version must be an integer >= 1, got {version!r}.")
        self.target = target
        self.model = model
        self.version = version
        self.timeout = timeout
        self._signatures = None
        self._channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_receive_message_length", -1),
                ("grpc.max_send_message_length", -1),
            ],
        )
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._model_stub = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> GrpcServingClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _call_rpc(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as err:
            raise GrpcServingError(err.code(), err.details() or "") from None

    def model_spec(self, signature_name: str = "") -> Any:
        """The ``ModelSpec`` of this client's model, version and ``signature_name``."""
        spec = model_pb2.ModelSpec(name=self.model, signature_name=signature_name)
        if self.version is not None:
            spec.version.value = self.version
        return spec

    def status(self) -> dict[str, Any]:
        """``GetModelStatus`` as the REST status API's JSON (``model_version_status``)."""
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=self.model_spec())
        reply = self._call_rpc(self._model_stub.GetModelStatus, request)
        return json_format.MessageToDict(
            reply, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )

    def metadata(self) -> dict[str, Any]:
        """``GetModelMetadata`` as the REST metadata API's JSON (``model_spec`` and the
        signature defs)."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=self.model_spec(), metadata_field=["signature_def"]
        )
        reply = self._call_rpc(self.stub.GetModelMetadata, request)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        reply.metadata["signature_def"].Unpack(signatures)
        to_dict = json_format.MessageToDict
        spec = to_dict(
            reply.model_spec,
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )
        return {
            "model_spec": spec,
            "metadata": {"signature_def": to_dict(signatures, preserving_proto_field_name=True)},
        }

    def predict_request(
        self, rows: Sequence[Mapping[str, Any]], *, signature_name: str = DEFAULT_SIGNATURE
    ) -> Any:
        """The ``PredictRequest`` for raw ``rows``: one tensor per signature input."""
        columns = self.make_request(rows, form="inputs", signature_name=signature_name)["inputs"]
        inputs = self.signature_inputs(signature_name)
        request = predict_pb2.PredictRequest(model_spec=self.model_spec(signature_name))
        for name, values in columns.items():
            request.inputs[name].CopyFrom(tensor_proto(name, values, inputs[name]["dtype"]))
        return request

    def predict(
        self,
        rows: Sequence[Mapping[str, Any]],
        *,
        form: str = "instances",
        signature_name: str = DEFAULT_SIGNATURE,
    ) -> dict[str, list[Any]]:
        """Output name -> one value per row, for one ``Predict`` call holding all
        ``rows`` (``form`` is checked but unused: gRPC requests are tensors)."""
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {form!r}.")
        request = self.predict_request(rows, signature_name=signature_name)
        reply = self._call_rpc(self.stub.Predict, request)
        return {
            name: tf.make_ndarray(reply.outputs[name]).tolist() for name in sorted(reply.outputs)
        }
