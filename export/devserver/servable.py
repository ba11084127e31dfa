"""Loading a version of a SavedModel and calling its signatures for the development server.

A version is ready once it is loaded and has replayed its warm-up requests
(``assets.extra/tf_serving_warmup_requests``, :mod:`export.warmup`), as TF Serving does
at load; a failing warm-up request fails the load.

A signature whose inputs can be read in its concrete function's own positional order is
called through that function's ``_call_flat`` (TensorFlow's private flat call, which
skips the binding of keyword arguments to tensor specs); any other goes through the
public keyword call, which gives the same outputs.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from export.devserver.batching import DEFAULT_BATCH_TIMEOUT_MICROS, Batcher
from export.devserver.protocol import (
    DEFAULT_SIGNATURE,
    RequestError,
    Signature,
    parse_predict,
    predict_reply,
    tf_error_message,
)

log = logging.getLogger(__name__)


def version_dirs(base_path: str) -> dict[int, str]:
    """Version number -> path of every numeric directory holding ``saved_model.pb``
    under ``base_path`` (none when it does not exist)."""
    if not os.path.isdir(base_path):
        return {}
    return {
        int(d): os.path.join(base_path, d)
        for d in os.listdir(base_path)
        if d.isdigit() and os.path.exists(os.path.join(base_path, d, "saved_model.pb"))
    }


def latest_version(base_path: str) -> tuple[int, str]:
    """(version, path) of the largest numeric version directory under ``base_path``."""
    if not os.path.isdir(base_path):
        raise FileNotFoundError(f"Model base path {base_path} does not exist.")
    if os.path.exists(os.path.join(base_path, "saved_model.pb")):
        raise ValueError(
            f"{base_path} is a SavedModel itself; pass its parent, the model base path "
            "holding numbered version directories (as TF Serving expects)."
        )
    versions = version_dirs(base_path)
    if not versions:
        raise FileNotFoundError(
            f"No version directory (a number holding saved_model.pb) under {base_path}: "
            "export one with python -m export.savedmodel."
        )
    latest = max(versions)
    return latest, versions[latest]


class ServableVersion:
    """One loaded SavedModel version and its signatures, warmed up.

    Loading replays the version's warm-up requests (:meth:`warm_up`); ``warmup_requests``
    and ``warmup_seconds`` say how many ran and how long they took.

    Args:
        name: str. Model name.
        version: int. Version number.
        path: str. The version directory (holds ``saved_model.pb``).
        batching: bool. Merge concurrent predict requests into one model call (see
            :class:`~export.devserver.batching.Batcher`). Defaults to False.
        max_batch_rows: int. Most rows in one merged call. Defaults to 512.
        batch_threads: int. Threads running merged calls. Defaults to 2.
        batch_timeout_micros: int. How long a merged call waits for the requests of
            the other open connections after the latest arrival (see
            :class:`~export.devserver.batching.Batcher`); 0 never waits. Defaults to
            ``DEFAULT_BATCH_TIMEOUT_MICROS``.
    """

    def __init__(
        self,
        name: str,
        version: int,
        path: str,
        *,
        batching: bool = False,
        max_batch_rows: int = 512,
        batch_threads: int = 2,
        batch_timeout_micros: int = DEFAULT_BATCH_TIMEOUT_MICROS,
    ):
        import tensorflow as tf

        self.name = name
        self.version = version
        self.path = path
        self._tf = tf
        self.loaded = tf.saved_model.load(path, tags=["serve"])  # the graph TF Serving loads
        self.signatures: dict[str, Signature] = {}
        for key, fn in self.loaded.signatures.items():
            _, kwargs = fn.structured_input_signature
            self.signatures[key] = Signature(
                name=key,
                function=fn,
                inputs=dict(sorted(kwargs.items())),
                outputs=sorted(fn.structured_outputs),
                flat_order=read_flat_order(fn, kwargs),
            )
        if DEFAULT_SIGNATURE not in self.signatures:
            raise ValueError(f"{path} has no {DEFAULT_SIGNATURE!r} signature.")
        self.metadata = signature_metadata(path)
        self.warmup_requests, self.warmup_seconds = self.warm_up()
        self.batcher = (
            Batcher(self.call, max_batch_rows, batch_threads, batch_timeout_micros / 1e6)
            if batching
            else None
        )
        self._guard = threading.Condition()
        self._in_flight = 0  # requests inside the batcher
        self._closed = False

    def warm_up(self) -> tuple[int, float]:
        """Replay the version's warm-up file: (requests run, seconds taken).

        Raises:
            ValueError: when a record is no predict request of a signature of this
                version, with its inputs and dtypes, or its call fails.
        """
        from export.warmup import predict_inputs, read_warmup_file

        start = time.perf_counter()
        logs = read_warmup_file(self.path)
        rows = []
        for i, record in enumerate(logs):
            where = f"Warm-up record {i} of version {self.version} ({self.path})"
            name, arrays = predict_inputs(record)
            signature = self.signatures.get(name)
            if signature is None:
                raise ValueError(f"{where} names the signature {name!r}, which it lacks.")
            if sorted(arrays) != sorted(signature.inputs):
                raise ValueError(
                    f"{where} has the inputs {sorted(arrays)}; {name!r} takes "
                    f"{sorted(signature.inputs)}."
                )
            for n, a in arrays.items():
                want = signature.inputs[n].dtype
                if a.dtype != want.as_numpy_dtype:
                    raise ValueError(
                        f"{where}: input {n!r} is {a.dtype}; {name!r} takes {want.name}."
                    )
            try:
                self.call(signature, arrays)
            except RequestError as err:
                raise ValueError(f"{where} failed: {err.message}") from None
            rows.append(max((a.shape[0] for a in arrays.values() if a.ndim), default=1))
        seconds = time.perf_counter() - start
        log.info(
            "model %r version %d: ran %d warm-up requests (%s rows) in %.0f ms",
            self.name,
            self.version,
            len(logs),
            ", ".join(map(str, rows)) or "no",
            1000 * seconds,
        )
        return len(logs), seconds

    def close(self) -> None:
        """Stop the batching thread, if any, once the requests inside it are answered;
        later requests run one by one (a retired version finishes what it was given)."""
        with self._guard:
            self._closed = True
            while self._in_flight:
                self._guard.wait()
        if self.batcher is not None:
            self.batcher.close()

    def predict(self, request: Any, max_batch_size: int) -> dict[str, Any]:
        """Answer one predict request (a parsed JSON value) like TF Serving does."""
        signature, arrays, row_format = parse_predict(request, self.signatures, max_batch_size)
        return predict_reply(self.run(signature, arrays), row_format)

    def run(self, signature: Signature, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The outputs of one checked request (REST or gRPC), merged with concurrent
        ones when batching is on (and the version is not closed), else one call."""
        with self._guard:
            batcher = None if self._closed else self.batcher
            if batcher is not None:
                self._in_flight += 1
        if batcher is None:
            return self.call(signature, arrays)
        try:
            return batcher.run(signature, arrays)
        finally:
            with self._guard:
                self._in_flight -= 1
                self._guard.notify_all()

    def call(self, signature: Signature, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one signature on input arrays of its dtypes; its outputs, sorted by name.
        A TensorFlow error becomes a :class:`RequestError` (400 for bad input)."""
        tf = self._tf
        specs = signature.inputs
        try:
            if signature.flat_order is not None:
                # The arrays already have the signature's dtypes and shapes (to_array
                # checks them), so skip the Python-side binding of keyword arguments
                # to TensorSpecs, which costs about 0.5 ms a call with 39 inputs.
                fn = signature.function
                tensors = [
                    tf.constant(arrays[n], dtype=specs[n].dtype) for n in signature.flat_order
                ]
                outputs = fn._call_flat(tensors, fn.captured_inputs)
            else:
                tensors = {n: tf.constant(a, dtype=specs[n].dtype) for n, a in arrays.items()}
                outputs = signature.function(**tensors)
        except tf.errors.InvalidArgumentError as err:
            raise RequestError(400, tf_error_message(err.message)) from None
        except (TypeError, ValueError) as err:
            raise RequestError(400, tf_error_message(str(err))) from None
        except tf.errors.OpError as err:
            raise RequestError(500, tf_error_message(err.message)) from None
        return {k: v.numpy() for k, v in sorted(outputs.items())}


def read_flat_order(fn: Any, kwargs: Mapping[str, Any]) -> list[str] | None:
    """The names of a signature's inputs in the order its concrete function takes them
    flat (its first placeholders; the captured variables and tables follow), or None
    when that order cannot be read, so that calls go through the keyword path."""
    try:
        captured = len(fn.captured_inputs)
        placeholders = fn.inputs[: len(fn.inputs) - captured]
        order = [t.name.split(":", 1)[0] for t in placeholders]
        if not callable(getattr(fn, "_call_flat", None)):
            return None
    except Exception:  # another TensorFlow version: use the public call
        return None
    specs = [kwargs.get(n) for n in order]
    if sorted(order) != sorted(kwargs) or any(
        spec is None or t.dtype != spec.dtype for t, spec in zip(placeholders, specs, strict=True)
    ):
        return None
    return order


def signature_metadata(path: str) -> dict[str, Any]:
    """The SignatureDefs of a SavedModel as TF Serving's metadata API returns them."""
    from google.protobuf import json_format
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as fh:
        proto.ParseFromString(fh.read())
    graphs = [g for g in proto.meta_graphs if "serve" in g.meta_info_def.tags]
    if not graphs:
        raise ValueError(f"{path} has no MetaGraph tagged 'serve'.")
    return {
        key: json_format.MessageToDict(sig, preserving_proto_field_name=True)
        for key, sig in sorted(graphs[0].signature_def.items())
        if not key.startswith("__")
    }
