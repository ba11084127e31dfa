"""TF Serving's warm-up file of an exported version: building, writing and reading its requests.

TensorFlow Serving replays ``<version>/assets.extra/tf_serving_warmup_requests`` when
it loads a version, before the version answers requests, so that the first real
requests do not pay the one-off costs of a fresh SavedModel (the session's executors
are built, memory pools grow, oneDNN creates its primitives for each input shape). The
file is a TFRecord of ``tensorflow.serving.PredictionLog`` protos; TF Serving reads at
most 1,000 of them and fails the load when one fails.

The export writes one ``PredictLog`` per size of :data:`WARMUP_BATCH_SIZES`, its
request built from the contract's example rows (:func:`export.contract.example_rows`)
with histories as ``'^'``-joined strings, the form ``export.client`` sends: 1 row (the
online request of one impression), 8 rows (a merged call under concurrent batch-1
load with ``--enable_batching``) and 64 rows (a page of candidates ranked together).
Every input is a ``TensorProto`` of the dtype the serving signature takes
(:func:`export.contract.serving_input_signature`) and shape ``[rows]``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from export.contract import (
    DEFAULT_MODEL_NAME,
    SERVING_SIGNATURE,
    example_rows,
    serving_input_signature,
    to_request_row,
)
from feseq_tf.schema import DatasetSpec

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
WARMUP_BATCH_SIZES = (1, 8, 64)
# TF Serving reads at most this many records of a warm-up file.
MAX_WARMUP_RECORDS = 1000


def warmup_logs(
    spec: DatasetSpec,
    vocabularies: Mapping[str, Sequence[str]],
    *,
    model_name: str = DEFAULT_MODEL_NAME,
    batch_sizes: Sequence[int] = WARMUP_BATCH_SIZES,
    seed: int = 0,
) -> list[prediction_log_pb2.PredictionLog]:
    """One ``PredictionLog`` (a ``PredictLog`` of ``serving_default``) per batch size.

    Args:
        spec: DatasetSpec of the exported model.
        vocabularies: dict. Field name -> its vocabulary (raw values), for the rows.
        model_name: str. The ``model_spec.name`` of the requests. Defaults to ``"feseq"``.
        batch_sizes: sequence of int. Rows of each request. Defaults to
            :data:`WARMUP_BATCH_SIZES`.
        seed: int. Seed of the example rows. Defaults to 0.

    Returns:
        The logs, in the order of ``batch_sizes``.
    """
    if not batch_sizes or len(batch_sizes) > MAX_WARMUP_RECORDS:
        raise ValueError(
            f"batch_sizes must hold 1 to {MAX_WARMUP_RECORDS} sizes, got {list(batch_sizes)}."
        )
    if any(not isinstance(n, int) or n < 1 for n in batch_sizes):
        raise ValueError(f"batch_sizes must be integers >= 1, got {list(batch_sizes)}.")
    signature = serving_input_signature(spec)
    logs = []
    for i, rows in enumerate(batch_sizes):
        raw = example_rows(spec, vocabularies, rows, seed=seed + i)
        request = predict_pb2.PredictRequest(
            model_spec=model_pb2.ModelSpec(name=model_name, signature_name=SERVING_SIGNATURE)
        )
        request_rows = [to_request_row(spec, r) for r in raw]
        for name, tensor_spec in signature.items():
            dtype = tensor_spec.dtype.as_numpy_dtype
            values = np.asarray([r[name] for r in request_rows], dtype=dtype)
            request.inputs[name].CopyFrom(
                tf.make_tensor_proto(values, dtype=tensor_spec.dtype, shape=[rows])
            )
        logs.append(
            prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
        )
    return logs


def write_warmup_file(version_dir: str, logs: Sequence[prediction_log_pb2.PredictionLog]) -> str:
    """Write ``logs`` as ``<version_dir>/assets.extra/tf_serving_warmup_requests``.

    Returns:
        The path of the file.
    """
    if len(logs) > MAX_WARMUP_RECORDS:
        raise ValueError(
            f"logs must hold at most {MAX_WARMUP_RECORDS} records (TF Serving reads no "
            f"more), got {len(logs)}."
        )
    path = os.path.join(version_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    return path


def read_warmup_file(version_dir: str) -> list[prediction_log_pb2.PredictionLog]:
    """The warm-up records of a version directory; [] when it has no warm-up file.

    Raises:
        ValueError: when the file holds more than :data:`MAX_WARMUP_RECORDS` records or
            a record that is no ``PredictionLog``.
    """
    path = os.path.join(version_dir, WARMUP_FILE)
    if not os.path.exists(path):
        return []
    logs = []
    for i, record in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
        if i >= MAX_WARMUP_RECORDS:
            raise ValueError(
                f"{path} holds more than {MAX_WARMUP_RECORDS} records, the most TF Serving reads."
            )
        log = prediction_log_pb2.PredictionLog()
        try:
            log.ParseFromString(record)
        except Exception as err:  # google.protobuf.message.DecodeError
            raise ValueError(f"Record {i} of {path} is no PredictionLog: {err}") from None
        logs.append(log)
    return logs


def predict_inputs(log: prediction_log_pb2.PredictionLog) -> tuple[str, dict[str, np.ndarray]]:
    """(signature name, input arrays) of a warm-up record holding a ``PredictLog``.

    Raises:
        ValueError: for another kind of record (classify, regress...): the exported
            signatures are predict signatures.
    """
    kind = log.WhichOneof("log_type")
    if kind != "predict_log":
        raise ValueError(
            f"Warm-up record of kind {kind!r}: only predict_log records are replayed "
            "(the exported signatures are predict signatures)."
        )
    request = log.predict_log.request
    arrays = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
    return request.model_spec.signature_name or SERVING_SIGNATURE, arrays
