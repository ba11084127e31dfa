"""A development server that answers TensorFlow Serving's REST API for a SavedModel.

Production serves the exported model with TensorFlow Serving (``tensorflow/serving``
Docker image or ``tensorflow_model_server``; see ``export/serving/README.md``). This
module is a small stand-in for machines where TF Serving cannot be installed: it loads
the latest version under a model base path and answers, with TF Serving's URLs and
JSON shapes,

* ``GET  /v1/models/<name>[/versions/<v>]``: model status;
* ``GET  /v1/models/<name>[/versions/<v>]/metadata``: the signature defs;
* ``POST /v1/models/<name>[/versions/<v>]:predict``: row (``"instances"``) or columnar
  (``"inputs"``) requests, ``{"predictions": ...}`` / ``{"outputs": ...}`` replies.

Errors are ``{"error": "<message>"}`` with HTTP 400 for a bad request (malformed JSON,
an empty body, a missing or unknown input, a value of the wrong JSON type, a body over
``--max-request-bytes`` or a batch over ``--max-batch-size``) and 404 for an unknown
model, version or URL. Values are typed as TF Serving types them: a ``DT_STRING`` input
takes JSON strings (or ``{"b64": ...}``), ``DT_DOUBLE`` numbers (``NaN`` allowed),
``DT_INT64`` integers. ``--enable-batching`` merges concurrent requests into one model
call (as TF Serving's ``--enable_batching`` does; a call waits up to
``--batch-timeout-micros`` for the requests of the other open connections). It does not
poll for new versions or speak gRPC.

Command line::

    python -m export.serve --model-base-path EXPORT_DIR/feseq [--port 8501]
        [--enable-batching] [--intra-op-threads 1]

Under concurrent batch-1 load on a few cores, ``--enable-batching --intra-op-threads 1``
serves best: a model call has a fixed cost of a few ms of CPU whatever its rows, which
merging amortises, and a second thread per op only adds wake-ups at that size.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import dataclasses
import json
import os
import re
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

DEFAULT_PORT = 8501
DEFAULT_MAX_REQUEST_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_BATCH_SIZE = 8192
DEFAULT_SIGNATURE = "serving_default"
# With --enable-batching: how long a merged call waits for the requests of the other open
# connections after the latest arrival (see _Batcher); TF Serving's
# batching_parameters.txt has batch_timeout_micros 1000 too.
DEFAULT_BATCH_TIMEOUT_MICROS = 1000
# Over-limit bodies up to this size are read and dropped, so the client gets the 400
# reply on a healthy connection; larger ones get the reply and the connection closes.
_MAX_DRAIN_BYTES = 64 * 1024 * 1024

_URL = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<tail>/metadata|:[A-Za-z]+)?/?$"
)
_DTYPES = {
    "string": ("string", object),
    "float32": ("number", np.float32),
    "float64": ("number", np.float64),
    "int32": ("integer", np.int32),
    "int64": ("integer", np.int64),
    "bool": ("boolean", np.bool_),
}

# JSON value types (exactly: bool is no int here) that a flat list may hold per kind.
_FLAT_TYPES = {
    "string": {str},
    "number": {int, float},
    "integer": {int},
    "boolean": {bool},
}


class RequestError(Exception):
    """A request the server refuses; ``status`` is the HTTP status of the reply."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclasses.dataclass
class _Signature:
    name: str
    function: Any
    inputs: dict[str, Any]  # input name -> tf.TensorSpec
    outputs: list[str]
    # The function's own positional order of the inputs when it can be called flat
    # (see _flat_order), else None.
    flat_order: list[str] | None = None
    # Input name -> how a flat JSON list feeds it (see _flat_feed), computed once.
    flat_feeds: dict[str, tuple[Any, ...] | None] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.flat_feeds = {n: _flat_feed(spec) for n, spec in self.inputs.items()}


class ServableVersion:
    """One loaded SavedModel version and its signatures.

    Args:
        name: str. Model name.
        version: int. Version number.
        path: str. The version directory (holds ``saved_model.pb``).
        batching: bool. Merge concurrent predict requests into one model call (see
            :class:`_Batcher`). Defaults to False.
        max_batch_rows: int. Most rows in one merged call. Defaults to 512.
        batch_threads: int. Threads running merged calls. Defaults to 2.
        batch_timeout_micros: int. How long a merged call waits for the requests of
            the other open connections after the latest arrival (see :class:`_Batcher`);
            0 never waits. Defaults to ``DEFAULT_BATCH_TIMEOUT_MICROS``.
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
        self.loaded = tf.saved_model.load(path)
        self.signatures: dict[str, _Signature] = {}
        for key, fn in self.loaded.signatures.items():
            _, kwargs = fn.structured_input_signature
            self.signatures[key] = _Signature(
                name=key,
                function=fn,
                inputs=dict(sorted(kwargs.items())),
                outputs=sorted(fn.structured_outputs),
                flat_order=_flat_order(fn, kwargs),
            )
        if DEFAULT_SIGNATURE not in self.signatures:
            raise ValueError(f"{path} has no {DEFAULT_SIGNATURE!r} signature.")
        self.metadata = _signature_metadata(path)
        self.batcher = (
            _Batcher(self._run, max_batch_rows, batch_threads, batch_timeout_micros / 1e6)
            if batching
            else None
        )

    def close(self) -> None:
        """Stop the batching thread, if any."""
        if self.batcher is not None:
            self.batcher.close()

    def predict(self, request: Any, max_batch_size: int) -> dict[str, Any]:
        """Answer one predict request (a parsed JSON value) like TF Serving does."""
        if not isinstance(request, dict):
            raise RequestError(
                400, f"The request body must be a JSON object, got {_json_type(request)}."
            )
        unknown = sorted(set(request) - {"signature_name", "instances", "inputs"})
        if unknown:
            raise RequestError(
                400,
                f"Unknown keys {unknown} in the request; expected 'signature_name' and one "
                "of 'instances' (row format) or 'inputs' (columnar format).",
            )
        signature_name = request.get("signature_name", DEFAULT_SIGNATURE)
        if not isinstance(signature_name, str):
            raise RequestError(400, "'signature_name' must be a string.")
        signature = self.signatures.get(signature_name or DEFAULT_SIGNATURE)
        if signature is None:
            raise RequestError(
                400,
                f"Serving signature name: {signature_name!r} not found in signature def; "
                f"this model has {sorted(self.signatures)}.",
            )
        if ("instances" in request) == ("inputs" in request):
            raise RequestError(
                400,
                "Missing 'inputs' or 'instances' key"
                if "instances" not in request
                else "The request must have either 'instances' or 'inputs', not both.",
            )
        if "instances" in request:
            arrays = self._row_format(signature, request["instances"], max_batch_size)
        else:
            arrays = self._columnar_format(signature, request["inputs"], max_batch_size)
        if self.batcher is not None:
            outputs = self.batcher.run(signature, arrays)
        else:
            outputs = self._run(signature, arrays)
        if "instances" in request:
            if len(outputs) == 1:
                return {"predictions": next(iter(outputs.values())).tolist()}
            batch = len(next(iter(outputs.values())))
            return {
                "predictions": [
                    {k: v[i].tolist() for k, v in outputs.items()} for i in range(batch)
                ]
            }
        if len(outputs) == 1:
            return {"outputs": next(iter(outputs.values())).tolist()}
        return {"outputs": {k: v.tolist() for k, v in outputs.items()}}

    # ---- request -> tensors -------------------------------------------------------------
    def _row_format(
        self, signature: _Signature, instances: Any, max_batch: int
    ) -> dict[str, np.ndarray]:
        if not isinstance(instances, list):
            raise RequestError(400, f"'instances' must be a list, got {_json_type(instances)}.")
        if not instances:
            raise RequestError(400, "'instances' is empty: send at least one instance.")
        _check_batch(len(instances), max_batch)
        names = list(signature.inputs)
        if len(names) == 1 and not all(isinstance(i, dict) and names[0] in i for i in instances):
            return {names[0]: _to_array(names[0], instances, signature.inputs[names[0]])}
        expected = signature.inputs.keys()
        for i, instance in enumerate(instances):
            if not isinstance(instance, dict):
                raise RequestError(
                    400,
                    f"instance {i} must be an object with the named inputs {names}, got "
                    f"{_json_type(instance)}.",
                )
            if instance.keys() != expected:
                _check_input_names(f"instance {i}", instance, names, signature.name)
        feeds = signature.flat_feeds
        arrays = {}
        for n, spec in signature.inputs.items():
            column = [instance[n] for instance in instances]
            array = _flat_array(n, column, feeds[n])
            arrays[n] = array if array is not None else _to_array(n, column, spec)
        return arrays

    def _columnar_format(
        self, signature: _Signature, inputs: Any, max_batch: int
    ) -> dict[str, np.ndarray]:
        names = list(signature.inputs)
        if not isinstance(inputs, dict) or (len(names) == 1 and names[0] not in inputs):
            if len(names) != 1:
                raise RequestError(
                    400,
                    f"'inputs' must be an object with the named inputs {names}, got "
                    f"{_json_type(inputs)}.",
                )
            inputs = {names[0]: inputs}
        _check_input_names("'inputs'", inputs, names, signature.name)
        arrays = {n: _to_array(n, inputs[n], signature.inputs[n]) for n in names}
        batches = {n: (a.shape[0] if a.ndim else None) for n, a in arrays.items()}
        sizes = set(batches.values())
        if len(sizes) > 1:
            raise RequestError(400, f"The inputs have different batch sizes: {batches}.")
        size = sizes.pop() if sizes else None
        if size == 0:
            raise RequestError(400, "The inputs are empty: send at least one row.")
        if size is not None:
            _check_batch(size, max_batch)
        return arrays

    def _run(
        self, signature: _Signature, arrays: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        tf = self._tf
        specs = signature.inputs
        try:
            if signature.flat_order is not None:
                # The arrays already have the signature's dtypes and shapes (_to_array
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
            raise RequestError(400, _tf_error_message(err.message)) from None
        except (TypeError, ValueError) as err:
            raise RequestError(400, _tf_error_message(str(err))) from None
        except tf.errors.OpError as err:
            raise RequestError(500, _tf_error_message(err.message)) from None
        return {k: v.numpy() for k, v in sorted(outputs.items())}

    def status(self) -> dict[str, Any]:
        return {
            "version": str(self.version),
            "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""},
        }


@dataclasses.dataclass
class _Task:
    signature: _Signature
    arrays: Mapping[str, np.ndarray]
    rows: int
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    outputs: dict[str, np.ndarray] | None = None
    error: RequestError | None = None


class _Batcher:
    """Merges concurrent predict requests into one model call, like TF Serving's
    ``--enable_batching``: a free worker thread (``num_threads`` of them, as TF
    Serving's ``num_batch_threads``) takes every request that queued while the others
    ran (up to ``max_rows`` rows a call), so a busy server amortises the per-call cost.
    A worker starts a call beside a running one only for ``parallel_rows`` rows or
    more: small requests wait for the running call and merge into the next (a model
    call has a fixed cost of a few ms on CPU, about that of 8 more rows).

    Unlike TF Serving's ``batch_timeout_micros``, the wait for more requests is
    adaptive: a worker holding fewer requests than ``expected_requests()`` (the HTTP
    layer sets it to the number of open client connections, each of which has at most
    one request in flight) less those already running waits for the others, until
    ``timeout_s`` passes without a new one (at most 4 ``timeout_s`` in all). One
    client, or clients that all have their request queued, add no delay; closed-loop
    clients answered together are merged into one call instead of one alone and the
    rest behind it. An idle keep-alive connection costs each merged call one timeout.

    Requests merge when they use the same signature and their inputs have the same
    shapes past the batch dimension. When a merged call fails, its requests run one by
    one, so that each bad request gets its own error.
    """

    def __init__(
        self,
        run: Any,
        max_rows: int,
        num_threads: int = 2,
        timeout_s: float = 0.0,
        parallel_rows: int = 64,
    ):
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}.")
        if num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}.")
        if timeout_s < 0:
            raise ValueError(f"timeout_s must be >= 0, got {timeout_s}.")
        self._run = run
        self._max_rows = max_rows
        self._timeout_s = timeout_s
        self.expected_requests: Callable[[], int] | None = None
        self._cond = threading.Condition()
        self._pending: list[_Task] = []
        self._pending_rows = 0
        self._running = 0  # requests taken by the workers and not yet answered
        self._busy = 0  # workers running a call
        self._last_arrival = 0.0  # time.monotonic() of the latest request queued
        self._parallel_rows = min(parallel_rows, max_rows)
        self._closed = False
        self._threads = [
            threading.Thread(target=self._loop, name=f"feseq-batcher-{i}", daemon=True)
            for i in range(num_threads)
        ]
        for thread in self._threads:
            thread.start()

    def run(self, signature: _Signature, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = {a.shape[0] if a.ndim else -1 for a in arrays.values()}
        if len(rows) != 1 or -1 in rows:  # no common batch dimension: run it alone
            return self._run(signature, arrays)
        task = _Task(signature, arrays, rows.pop())
        with self._cond:
            if self._closed:
                raise RequestError(503, "The server is shutting down.")
            self._pending.append(task)
            self._pending_rows += task.rows
            self._last_arrival = time.monotonic()
            # A worker may be waiting for this request to fill its batch, another idle:
            # wake both kinds.
            self._cond.notify_all()
        task.done.wait()
        if task.error is not None:
            raise task.error
        return task.outputs

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()

    @staticmethod
    def _key(task: _Task) -> tuple:
        return (task.signature.name,) + tuple(
            (n, a.shape[1:], a.dtype.str) for n, a in sorted(task.arrays.items())
        )

    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    while not self._pending and not self._closed:
                        self._cond.wait()
                    if not self._pending:
                        return
                    self._wait_for_more()
                    if self._pending:  # else another worker took them
                        break
                taken, self._pending, self._pending_rows = self._pending, [], 0
                self._running += len(taken)
                self._busy += 1
            try:
                self._execute_all(taken)
            finally:
                with self._cond:
                    self._running -= len(taken)
                    self._busy -= 1
                    self._cond.notify_all()  # a worker may wait for this call to end

    def _wait_for_more(self) -> None:
        """With the lock held and requests pending: wait while another call runs and
        fewer than ``parallel_rows`` rows are pending, then (at most the timeout) while
        fewer requests are pending than the expected ones not yet running."""
        expected = self.expected_requests
        deadline = None
        while self._pending and not self._closed and self._pending_rows < self._max_rows:
            if self._busy and self._pending_rows < self._parallel_rows:
                # A second small call beside a running one would cost about as much
                # CPU as the merged call: merge them into the next call instead.
                self._cond.wait()
                deadline = None
                continue
            if (
                self._timeout_s <= 0
                or expected is None
                or len(self._pending) >= expected() - self._running
            ):
                return
            now = time.monotonic()
            if deadline is None:  # wait at most 4 timeouts in all...
                deadline = now + 4 * self._timeout_s
            # ... and one timeout after the latest arrival: a wave of requests from
            # many clients arrives spread over a few ms (each takes the GIL to parse).
            wait = min(deadline, self._last_arrival + self._timeout_s) - now
            if wait <= 0:
                return
            self._cond.wait(wait)

    def _execute_all(self, taken: list[_Task]) -> None:
        groups: dict[tuple, list[_Task]] = {}
        for task in taken:
            groups.setdefault(self._key(task), []).append(task)
        for tasks in groups.values():
            chunk: list[_Task] = []
            for task in tasks:
                if chunk and sum(t.rows for t in chunk) + task.rows > self._max_rows:
                    self._execute(chunk)
                    chunk = []
                chunk.append(task)
            self._execute(chunk)

    def _execute(self, tasks: list[_Task]) -> None:
        if len(tasks) > 1:
            merged = {n: np.concatenate([t.arrays[n] for t in tasks]) for n in tasks[0].arrays}
            try:
                outputs = self._run(tasks[0].signature, merged)
                total = sum(t.rows for t in tasks)
                if all(v.ndim and v.shape[0] == total for v in outputs.values()):
                    bounds = np.cumsum([t.rows for t in tasks])[:-1]
                    parts = {k: np.split(v, bounds) for k, v in outputs.items()}
                    for i, task in enumerate(tasks):
                        task.outputs = {k: p[i] for k, p in parts.items()}
                        task.done.set()
                    return
            except RequestError:
                pass  # a bad request in the batch: run them one by one below
            except Exception:  # keep the worker alive whatever happens
                traceback.print_exc(file=sys.stderr)
        for task in tasks:
            try:
                task.outputs = self._run(task.signature, task.arrays)
            except RequestError as err:
                task.error = err
            except Exception as err:
                traceback.print_exc(file=sys.stderr)
                task.error = RequestError(500, f"Internal error: {type(err).__name__}: {err}")
            task.done.set()


def _flat_order(fn: Any, kwargs: Mapping[str, Any]) -> list[str] | None:
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


def _check_batch(size: int, max_batch: int) -> None:
    if size > max_batch:
        raise RequestError(
            400,
            f"The request has {size} rows, more than the limit of {max_batch} (--max-batch-size).",
        )


def _check_input_names(where: str, given: dict, names: list[str], signature: str) -> None:
    """400 unless ``given`` holds exactly the signature's named inputs."""
    missing = [n for n in names if n not in given]
    if missing:
        raise RequestError(400, f"{where} lacks the input(s) {missing}.")
    extra = sorted(set(given) - set(names))
    if extra:
        raise RequestError(
            400,
            f"{where} has input(s) {extra} that signature {signature!r} does not take; "
            f"its inputs are {names}.",
        )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _to_array(name: str, value: Any, spec: Any) -> np.ndarray:
    """A (nested) JSON value -> a rectangular NumPy array of the input's dtype."""
    kind, np_dtype = _DTYPES.get(spec.dtype.name, (None, None))
    if kind is None:
        raise RequestError(
            400, f"Input {name!r} has dtype {spec.dtype.name}, which this server cannot feed."
        )
    array = _flat_array(name, value, _flat_feed(spec))
    if array is not None:
        return array
    flat: list[Any] = []
    shape = _shape_of(name, value)

    def leaves(v: Any) -> None:
        if isinstance(v, list):
            for x in v:
                leaves(x)
        else:
            flat.append(_leaf(name, v, kind))

    leaves(value)
    expected = spec.shape
    if expected.rank is not None:
        if len(shape) != expected.rank or any(
            d is not None and d != s for d, s in zip(expected.as_list(), shape, strict=False)
        ):
            raise RequestError(
                400,
                f"Input {name!r} must have shape {_shape_text(expected.as_list())} (batch first), "
                f"got {_shape_text(shape)}.",
            )
    if kind == "string":
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
        return array.reshape(shape)
    try:
        return np.asarray(flat, dtype=np_dtype).reshape(shape)
    except OverflowError:
        raise RequestError(
            400, f"Input {name!r} has a value out of the range of {spec.dtype.name}."
        ) from None


def _flat_feed(spec: Any) -> tuple[Any, ...] | None:
    """(JSON types, NumPy dtype, TF dtype name, length or None) when a flat JSON list
    can feed an input of ``spec``, else None."""
    kind, np_dtype = _DTYPES.get(spec.dtype.name, (None, None))
    if kind is None or (spec.shape.rank is not None and spec.shape.rank != 1):
        return None
    length = spec.shape[0] if spec.shape.rank == 1 else None
    return _FLAT_TYPES[kind], np_dtype, spec.dtype.name, length


def _flat_array(name: str, value: Any, feed: tuple[Any, ...] | None) -> np.ndarray | None:
    """The common case of :func:`_to_array`, without per-value Python checks: a flat
    list of values of the input's JSON type (one per row). None for anything else, which
    the general path checks (and explains)."""
    if feed is None or value.__class__ is not list or not value:
        return None
    types, np_dtype, dtype_name, length = feed
    if (length is not None and length != len(value)) or not set(map(type, value)) <= types:
        return None
    if np_dtype is object:
        array = np.empty(len(value), dtype=object)
        array[:] = [v.encode("utf-8") for v in value]
        return array
    try:
        return np.array(value, dtype=np_dtype)
    except OverflowError:
        raise RequestError(
            400, f"Input {name!r} has a value out of the range of {dtype_name}."
        ) from None


def _shape_text(shape: list) -> str:
    return (
        "["
        + ", ".join(
            "B" if i == 0 and d is None else ("n" if d is None else str(d))
            for i, d in enumerate(shape)
        )
        + "]"
    )


def _shape_of(name: str, value: Any) -> list[int]:
    """Shape of a nested list; raises on ragged lists."""
    if not isinstance(value, list):
        return []
    if not value:
        return [0]
    shapes = [_shape_of(name, v) for v in value]
    first = shapes[0]
    for s in shapes[1:]:
        if s != first:
            raise RequestError(
                400,
                f"Input {name!r} is not rectangular: it mixes lists of shapes "
                f"{_shape_text(first) if first else 'scalar'} and {_shape_text(s) if s else 'scalar'} "
                "(send variable-length histories as '^'-joined strings, or pad lists with \"\").",
            )
    return [len(value)] + first


def _leaf(name: str, v: Any, kind: str) -> Any:
    if kind == "string":
        if isinstance(v, str):
            return v.encode("utf-8")
        if isinstance(v, dict) and set(v) == {"b64"} and isinstance(v["b64"], str):
            try:
                return base64.b64decode(v["b64"], validate=True)
            except binascii.Error:
                raise RequestError(
                    400, f"Input {name!r}: invalid base64 in {{'b64': ...}}."
                ) from None
        raise RequestError(
            400,
            f"Input {name!r} takes strings, got {_json_type(v)} (send raw categorical values as "
            'JSON strings, e.g. "123").',
        )
    if kind == "number":
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return v
        raise RequestError(400, f"Input {name!r} takes numbers, got {_json_type(v)}.")
    if kind == "integer":
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        raise RequestError(400, f"Input {name!r} takes integers, got {_json_type(v)}.")
    if isinstance(v, bool):
        return v
    raise RequestError(400, f"Input {name!r} takes booleans, got {_json_type(v)}.")


_ASSERT_LINE = re.compile(r"assertion failed: (.*)")
_BRACKETED = re.compile(r"\[([^\[\]]*)\]")


def _tf_error_message(message: str) -> str:
    """The useful part of a TensorFlow error (the assertion text, else its first line)."""
    match = _ASSERT_LINE.search(message)
    if match:  # "assertion failed: [message] [data...]"
        parts = [p for p in _BRACKETED.findall(match.group(1)) if p]
        return (" ".join(parts) if parts else match.group(1)).replace("\\'", "'")
    lines = [
        line.strip()
        for line in message.splitlines()
        if line.strip()
        and not line.startswith(("Graph execution error", "Detected at node", "<stack traces"))
        and "[[{{node" not in line
    ]
    text = lines[0] if lines else message.strip()
    return re.sub(r"\s*\[Op:__inference_\w+\]$", "", text)


def _signature_metadata(path: str) -> dict[str, Any]:
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


def latest_version(base_path: str) -> tuple[int, str]:
    """(version, path) of the largest numeric version directory under ``base_path``."""
    if not os.path.isdir(base_path):
        raise FileNotFoundError(f"Model base path {base_path} does not exist.")
    if os.path.exists(os.path.join(base_path, "saved_model.pb")):
        raise ValueError(
            f"{base_path} is a SavedModel itself; pass its parent, the model base path "
            "holding numbered version directories (as TF Serving expects)."
        )
    versions = sorted(
        int(d)
        for d in os.listdir(base_path)
        if d.isdigit() and os.path.exists(os.path.join(base_path, d, "saved_model.pb"))
    )
    if not versions:
        raise FileNotFoundError(
            f"No version directory (a number holding saved_model.pb) under {base_path}: "
            "export one with python -m export.savedmodel."
        )
    return versions[-1], os.path.join(base_path, str(versions[-1]))


class ModelServer:
    """TF Serving's REST API over loaded models, without the HTTP layer.

    Args:
        models: dict. Model name -> its loaded :class:`ServableVersion`.
        max_request_bytes: int. Largest accepted request body.
        max_batch_size: int. Most rows in one predict request.
    """

    def __init__(
        self,
        models: Mapping[str, ServableVersion],
        *,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    ):
        if max_request_bytes < 1:
            raise ValueError(f"max_request_bytes must be >= 1, got {max_request_bytes}.")
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}.")
        self.models = dict(models)
        self.max_request_bytes = max_request_bytes
        self.max_batch_size = max_batch_size
        # Open client connections of the HTTP layer: each has at most one request in
        # flight, so the batchers wait (briefly) for that many requests.
        self.open_connections = 0
        self._connections_lock = threading.Lock()
        for servable in self.models.values():
            if servable.batcher is not None:
                servable.batcher.expected_requests = lambda: self.open_connections

    def connection_opened(self) -> None:
        with self._connections_lock:
            self.open_connections += 1

    def connection_closed(self) -> None:
        with self._connections_lock:
            self.open_connections -= 1

    @classmethod
    def from_base_path(
        cls,
        base_path: str,
        name: str | None = None,
        *,
        batching: bool = False,
        max_batch_rows: int = 512,
        batch_threads: int = 2,
        batch_timeout_micros: int = DEFAULT_BATCH_TIMEOUT_MICROS,
        **kwargs: Any,
    ) -> ModelServer:
        """Load the latest version under ``base_path`` as model ``name`` (default: the
        base path's last component); ``batching`` merges concurrent requests."""
        name = name or os.path.basename(os.path.normpath(base_path))
        version, path = latest_version(base_path)
        servable = ServableVersion(
            name,
            version,
            path,
            batching=batching,
            max_batch_rows=max_batch_rows,
            batch_threads=batch_threads,
            batch_timeout_micros=batch_timeout_micros,
        )
        return cls({name: servable}, **kwargs)

    def close(self) -> None:
        """Stop the models' batching threads."""
        for servable in self.models.values():
            servable.close()

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """Answer one request: (HTTP status, JSON reply)."""
        try:
            return 200, self._handle(method, path.split("?", 1)[0], body)
        except RequestError as err:
            return err.status, {"error": err.message}
        except Exception as err:  # a bug, not a bad request: report it, keep serving
            traceback.print_exc(file=sys.stderr)
            return 500, {"error": f"Internal error: {type(err).__name__}: {err}"}

    def _servable(self, name: str, version: str | None, label: str | None) -> ServableVersion:
        if label is not None:
            raise RequestError(404, "Version labels are not supported by this development server.")
        servable = self.models.get(name)
        if servable is None:
            raise RequestError(404, f"Servable not found for request: Latest({name})")
        if version is not None and version != str(servable.version):
            raise RequestError(404, f"Servable not found for request: Specific({name}, {version})")
        return servable

    def _handle(self, method: str, path: str, body: bytes) -> dict[str, Any]:
        match = _URL.match(path)
        if not match:
            raise RequestError(404, f"Malformed request: {method} {path}")
        tail = match["tail"] or ""
        servable = self._servable(match["name"], match["version"], match["label"])
        if tail in ("", "/metadata"):
            if method != "GET":
                raise RequestError(405, f"Malformed request: {method} {path} (use GET)")
            if tail == "/metadata":
                return {
                    "model_spec": {
                        "name": servable.name,
                        "signature_name": "",
                        "version": str(servable.version),
                    },
                    "metadata": {"signature_def": {"signature_def": servable.metadata}},
                }
            return {"model_version_status": [servable.status()]}
        if tail != ":predict":
            raise RequestError(
                400, f"Unsupported method {tail[1:]!r}: this server answers :predict only."
            )
        if method != "POST":
            raise RequestError(405, f"Malformed request: {method} {path} (use POST)")
        if not body or not body.strip():
            raise RequestError(
                400, "The request body is empty: send a JSON object with 'instances' or 'inputs'."
            )
        try:
            request = json.loads(body)
        except UnicodeDecodeError:
            raise RequestError(400, "The request body is not valid UTF-8 JSON.") from None
        except json.JSONDecodeError as err:
            raise RequestError(400, f"Malformed JSON in the request body: {err}.") from None
        return servable.predict(request, self.max_batch_size)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "feseq-dev-model-server"
    server: _HTTPServer

    # Buffer the reply: its status line, headers and body leave in one send when
    # handle_one_request flushes (not one send for the headers and one for the body).
    wbufsize = 64 * 1024

    def setup(self) -> None:
        super().setup()
        # One small reply per request: send it at once (no Nagle delay).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.model_server.connection_opened()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.model_server.connection_closed()

    def handle_expect_100(self) -> bool:
        ok = super().handle_expect_100()
        self.wfile.flush()  # the client waits for "100 Continue" before the body
        return ok

    _date: tuple[int, str] = (0, "")

    def date_time_string(self, timestamp: float | None = None) -> str:
        if timestamp is not None:
            return super().date_time_string(timestamp)
        now = int(time.time())
        second, text = _Handler._date
        if second != now:  # format the Date header once a second, not once a request
            text = super().date_time_string(now)
            _Handler._date = (now, text)
        return text

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        limit = self.server.model_server.max_request_bytes
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._reply(
                400,
                {"error": "Chunked request bodies are not supported: send Content-Length."},
                close=True,
            )
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError
        except ValueError:
            self._reply(400, {"error": "Invalid Content-Length header."}, close=True)
            return
        if length > limit:
            message = (
                f"The request body has {length} bytes, more than the limit of {limit} bytes "
                "(--max-request-bytes); split the batch into smaller requests."
            )
            drained = length <= limit + _MAX_DRAIN_BYTES and self._drain(length)
            self._reply(400, {"error": message}, close=not drained)
            return
        body = self.rfile.read(length) if length else b""
        status, reply = self.server.model_server.handle(method, self.path, body)
        self._reply(status, reply)

    def _drain(self, length: int) -> bool:
        remaining = length
        while remaining:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                return False
            remaining -= len(chunk)
        return True

    def _reply(self, status: int, payload: dict[str, Any], close: bool = False) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.verbose:
            super().log_message(format, *args)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's listen backlog of 5 drops the SYNs of clients that connect
    # together beyond it, which then retry after a 1 s timeout.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], model_server: ModelServer, verbose: bool = False):
        super().__init__(address, _Handler)
        self.model_server = model_server
        self.verbose = verbose


def make_http_server(
    model_server: ModelServer,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    verbose: bool = False,
) -> ThreadingHTTPServer:
    """An HTTP server (not yet serving) for ``model_server``; ``port=0`` picks a free port."""
    return _HTTPServer((host, port), model_server, verbose=verbose)


class BackgroundServer:
    """The development server running in a background thread of this process (for
    notebooks and tests); also a context manager that stops it on exit.

    Args:
        base_path: str. The model's base path (numbered version directories).
        name: str or None. Model name in the URLs (default: the base path's name).
        host: str. Address to listen on. Defaults to ``"127.0.0.1"``.
        port: int. Port; 0 picks a free one. Defaults to 0.
        **kwargs: passed to :meth:`ModelServer.from_base_path` (``batching``,
            ``max_request_bytes``, ``max_batch_size``...).

    Attributes:
        url: str. ``http://host:port``.

    Example:
    >>> server = BackgroundServer("exported/feseq")
    >>> ServingClient(server.url).status()
    >>> server.stop()
    """

    def __init__(
        self,
        base_path: str,
        name: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        **kwargs: Any,
    ):
        self.model_server = ModelServer.from_base_path(base_path, name, **kwargs)
        self._httpd = make_http_server(self.model_server, host, port)
        self.url = f"http://{host}:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="feseq-dev-server", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join()
            self._httpd.server_close()
            self.model_server.close()

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@contextlib.contextmanager
def running_server(base_path: str, name: str | None = None, **kwargs: Any) -> Iterator[str]:
    """Serve the latest version under ``base_path`` in a background thread; yields the
    server's URL (``http://host:port``) and stops the server on exit."""
    with BackgroundServer(base_path, name, **kwargs) as server:
        yield server.url


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m export.serve",
        description="Development server for TF Serving's REST API (use TF Serving in production).",
    )
    p.add_argument(
        "--model-base-path",
        required=True,
        help="the model's base path, holding numbered versions (EXPORT_DIR/feseq)",
    )
    p.add_argument("--model-name", help="model name in the URLs (default: the base path's name)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="REST port (default: 8501; 0 picks one)"
    )
    p.add_argument(
        "--max-request-bytes",
        type=int,
        default=DEFAULT_MAX_REQUEST_BYTES,
        help=f"largest request body accepted (default: {DEFAULT_MAX_REQUEST_BYTES})",
    )
    p.add_argument(
        "--max-batch-size",
        type=int,
        default=DEFAULT_MAX_BATCH_SIZE,
        help=f"most rows in one request (default: {DEFAULT_MAX_BATCH_SIZE})",
    )
    p.add_argument(
        "--enable-batching",
        action="store_true",
        help="merge concurrent predict requests into one model call (as TF Serving's "
        "--enable_batching); recommended under concurrent load",
    )
    p.add_argument(
        "--max-batch-rows",
        type=int,
        default=512,
        help="most rows in one merged model call with --enable-batching (default: 512)",
    )
    p.add_argument(
        "--num-batch-threads",
        type=int,
        default=2,
        help="threads running merged model calls with --enable-batching (default: 2)",
    )
    p.add_argument(
        "--batch-timeout-micros",
        type=int,
        default=DEFAULT_BATCH_TIMEOUT_MICROS,
        help="with --enable-batching, how long a merged call waits for the requests of the "
        "other open client connections after the latest one arrived (4 times that at "
        f"most); 0 never waits (default: {DEFAULT_BATCH_TIMEOUT_MICROS})",
    )
    p.add_argument(
        "--intra-op-threads",
        type=int,
        default=0,
        help="TensorFlow threads within one op; 1 serves batch-1 requests best on a few "
        "cores (default: 0, TensorFlow's choice)",
    )
    p.add_argument(
        "--inter-op-threads",
        type=int,
        default=0,
        help="TensorFlow threads running independent ops (default: 0, TensorFlow's choice)",
    )
    p.add_argument("--verbose", action="store_true", help="log every request")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.intra_op_threads or args.inter_op_threads:
        import tensorflow as tf

        try:
            if args.intra_op_threads:
                tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)
            if args.inter_op_threads:
                tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)
        except RuntimeError as err:  # TensorFlow already ran in this process
            print(f"warning: thread settings not applied: {err}", file=sys.stderr)
    try:
        model_server = ModelServer.from_base_path(
            args.model_base_path,
            args.model_name,
            max_request_bytes=args.max_request_bytes,
            max_batch_size=args.max_batch_size,
            batching=args.enable_batching,
            max_batch_rows=args.max_batch_rows,
            batch_threads=args.num_batch_threads,
            batch_timeout_micros=args.batch_timeout_micros,
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    httpd = make_http_server(model_server, args.host, args.port, verbose=args.verbose)
    host, port = httpd.server_address[:2]
    for servable in model_server.models.values():
        print(
            f"serving model {servable.name!r} version {servable.version} from {servable.path} "
            f"at http://{host}:{port}/v1/models/{servable.name} "
            "(development server: use TF Serving in production)",
            flush=True,
        )
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
        model_server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
