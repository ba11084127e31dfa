"""The JSON of TF Serving's REST predict API: request parsing into arrays, replies, errors.

A predict request names a signature (``"signature_name"``, default ``serving_default``)
and holds rows (``"instances"``) or columns (``"inputs"``); values are typed as TF Serving
types them: a ``DT_STRING`` input takes JSON strings (or ``{"b64": ...}``), ``DT_DOUBLE``
numbers (``NaN`` allowed), ``DT_INT64`` integers. Anything else is a :class:`RequestError`
whose message says what to send instead. This module needs NumPy only; TensorFlow tensor
specs are read by duck typing (``.dtype.name``, ``.shape``).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

DEFAULT_SIGNATURE = "serving_default"

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
class Signature:
    """One signature of a loaded model: what a request must feed it and how it is called.

    Args:
        name: str. The signature key (``serving_default``...).
        function: the signature's concrete function (None in tests of the batcher).
        inputs: dict. Input name -> ``tf.TensorSpec``, sorted by name.
        outputs: list of str. Output names, sorted.
        flat_order: list of str or None. The function's own positional order of the
            inputs when it can be called flat (see ``servable.read_flat_order``), else None.
    """

    name: str
    function: Any
    inputs: dict[str, Any]
    outputs: list[str]
    flat_order: list[str] | None = None
    # Input name -> how a flat JSON list feeds it (see flat_feed), computed once.
    flat_feeds: dict[str, tuple[Any, ...] | None] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.flat_feeds = {n: flat_feed(spec) for n, spec in self.inputs.items()}


def parse_predict(
    request: Any, signatures: Mapping[str, Signature], max_batch_size: int
) -> tuple[Signature, dict[str, np.ndarray], bool]:
    """A predict request (a parsed JSON value) -> (its signature, its input arrays, True
    for the row format); raises :class:`RequestError` (400) for anything TF Serving
    would refuse."""
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
    signature = signatures.get(signature_name or DEFAULT_SIGNATURE)
    if signature is None:
        raise RequestError(
            400,
            f"Serving signature name: {signature_name!r} not found in signature def; "
            f"this model has {sorted(signatures)}.",
        )
    if ("instances" in request) == ("inputs" in request):
        raise RequestError(
            400,
            "Missing 'inputs' or 'instances' key"
            if "instances" not in request
            else "The request must have either 'instances' or 'inputs', not both.",
        )
    if "instances" in request:
        return signature, row_arrays(signature, request["instances"], max_batch_size), True
    return signature, columnar_arrays(signature, request["inputs"], max_batch_size), False


def predict_reply(outputs: Mapping[str, np.ndarray], row_format: bool) -> dict[str, Any]:
    """The JSON reply to a predict request: ``{"predictions": ...}`` for the row format
    (one entry, or one object of named outputs, per row), ``{"outputs": ...}`` for the
    columnar one (one output alone, else an object of named outputs)."""
    if row_format:
        if len(outputs) == 1:
            return {"predictions": next(iter(outputs.values())).tolist()}
        batch = len(next(iter(outputs.values())))
        return {
            "predictions": [{k: v[i].tolist() for k, v in outputs.items()} for i in range(batch)]
        }
    if len(outputs) == 1:
        return {"outputs": next(iter(outputs.values())).tolist()}
    return {"outputs": {k: v.tolist() for k, v in outputs.items()}}


def columnar_request(signature_name: str, arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The columnar REST request equivalent to named input arrays (the tensors of a gRPC
    ``Predict``), so that :func:`parse_predict` checks both APIs' requests with the same
    code and refuses them with the same message: strings become JSON strings (bytes
    that are not UTF-8, ``{"b64": ...}``), numbers and booleans their JSON values."""
    return {
        "signature_name": signature_name,
        "inputs": {name: _json_value(array) for name, array in arrays.items()},
    }


def _json_value(array: np.ndarray) -> Any:
    if array.dtype.kind not in "OSU":
        return array.tolist()
    flat = np.empty(array.size, dtype=object)
    flat[:] = [_json_string(v) for v in array.ravel()]
    return flat.reshape(array.shape).tolist()


def _json_string(value: Any) -> Any:
    if not isinstance(value, bytes):
        return value if isinstance(value, str) else str(value)
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(value).decode("ascii")}


def row_arrays(signature: Signature, instances: Any, max_batch: int) -> dict[str, np.ndarray]:
    """The input arrays of a row-format request (``"instances"``)."""
    if not isinstance(instances, list):
        raise RequestError(400, f"'instances' must be a list, got {_json_type(instances)}.")
    if not instances:
        raise RequestError(400, "'instances' is empty: send at least one instance.")
    _check_batch(len(instances), max_batch)
    names = list(signature.inputs)
    if len(names) == 1 and not all(isinstance(i, dict) and names[0] in i for i in instances):
        return {names[0]: to_array(names[0], instances, signature.inputs[names[0]])}
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
        arrays[n] = array if array is not None else to_array(n, column, spec)
    return arrays


def columnar_arrays(signature: Signature, inputs: Any, max_batch: int) -> dict[str, np.ndarray]:
    """The input arrays of a columnar-format request (``"inputs"``)."""
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
    arrays = {n: to_array(n, inputs[n], signature.inputs[n]) for n in names}
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


def to_array(name: str, value: Any, spec: Any) -> np.ndarray:
    """A (nested) JSON value -> a rectangular NumPy array of the input's dtype."""
    kind, np_dtype = _DTYPES.get(spec.dtype.name, (None, None))
    if kind is None:
        raise RequestError(
            400, f"Input {name!r} has dtype {spec.dtype.name}, which this server cannot feed."
        )
    array = _flat_array(name, value, flat_feed(spec))
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


def flat_feed(spec: Any) -> tuple[Any, ...] | None:
    """(JSON types, NumPy dtype, TF dtype name, length or None) when a flat JSON list
    can feed an input of ``spec``, else None."""
    kind, np_dtype = _DTYPES.get(spec.dtype.name, (None, None))
    if kind is None or (spec.shape.rank is not None and spec.shape.rank != 1):
        return None
    length = spec.shape[0] if spec.shape.rank == 1 else None
    return _FLAT_TYPES[kind], np_dtype, spec.dtype.name, length


def _flat_array(name: str, value: Any, feed: tuple[Any, ...] | None) -> np.ndarray | None:
    """The common case of :func:`to_array`, without per-value Python checks: a flat
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


def tf_error_message(message: str) -> str:
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
