"""REST client for a FESeq model served by TensorFlow Serving (or ``export.serve``).

``python -m export.client --url http://HOST:8501 --model feseq ROWS.jsonl`` reads raw
rows (one JSON object per line, with the field names of the raw data; extra keys such
as ``label`` are ignored), sends TF Serving ``predict`` requests and prints one click
probability per row.

Rows are turned into the exported model's request contract, using the signature from
the server's metadata API: categorical values become the strings the pipelines use
(``123`` and ``123.0`` -> ``"123"``), numeric values numbers (missing -> ``NaN``),
history lists ``'^'``-joined strings (so that rows with histories of different lengths
fit one rectangular request). Requests use TF Serving's row format
(``{"instances": [...]}``, the default) or columnar format (``{"inputs": {...}}``).

The raw-value rules (canonical strings, missing-value tokens, the history separator)
are those of :mod:`feseq_tf.raw_format`, which the pipelines and the serving graph
apply too. Only the Python standard library is used: the client does not need
TensorFlow. ``--grpc HOST:8500`` sends the same rows over TF Serving's gRPC API through
:mod:`export.grpc_client`, imported only then (it needs ``grpcio`` and
``tensorflow-serving-api``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# HISTORY_SEPARATOR and MISSING_TOKENS: re-exported, other modules import them from here.
from feseq_tf import cli, raw_format
from feseq_tf.raw_format import HISTORY_SEPARATOR as HISTORY_SEPARATOR
from feseq_tf.raw_format import MISSING_TOKENS as MISSING_TOKENS
from feseq_tf.raw_format import canonical_string

DEFAULT_MODEL = "feseq"
DEFAULT_SIGNATURE = "serving_default"
FORMS = ("instances", "inputs")


class ServingError(RuntimeError):
    """The server answered with an error.

    Attributes:
        status: int. HTTP status (0 when the server could not be reached).
        message: str. The server's ``error`` message.
    """

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message


def _number(name: str, value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        if raw_format.is_missing(value):
            return math.nan
        text = raw_format.trim(value)
        if not raw_format.is_number(text):
            raise ValueError(f"{name} must be a number, got {value!r}.")
        return float(text)
    if hasattr(value, "item"):
        return _number(name, value.item())
    raise ValueError(f"{name} must be a number, got {type(value).__name__} {value!r}.")


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{name} must be an integer timestamp, got {value!r}.")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value == round(value):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                f = float(text)
            except ValueError:
                f = math.nan
            if f == round(f):
                return int(f)
    if hasattr(value, "item"):
        return _integer(name, value.item())
    raise ValueError(f"{name} must be an integer timestamp, got {value!r}.")


def encode_value(name: str, value: Any, dtype: str, *, history: bool) -> Any:
    """One raw value -> the JSON value of a signature input of ``dtype`` (TF Serving's
    ``DT_*`` name). ``history`` marks a history input (a list or a joined string)."""
    if history:
        if isinstance(value, str):
            return value
        if value is None:
            return ""
        if isinstance(value, (list, tuple)):
            return raw_format.join_history(value)
        raise ValueError(f"{name} must be a list or a '^'-joined string, got {value!r}.")
    if isinstance(value, (list, tuple, dict)):
        raise ValueError(f"{name} takes one value per row, got {type(value).__name__} {value!r}.")
    if dtype == "DT_STRING":
        return canonical_string(value)
    if dtype in ("DT_FLOAT", "DT_DOUBLE"):
        return _number(name, value)
    if dtype in ("DT_INT32", "DT_INT64"):
        return _integer(name, value)
    raise ValueError(f"{name}: the client cannot encode inputs of dtype {dtype}.")


class ServingClient:
    """A TF Serving REST client for one model.

    Args:
        url: str. Server root, e.g. ``"http://localhost:8501"``.
        model: str. Model name. Defaults to ``"feseq"``.
        version: int or None. A specific version (None: the latest the server has).
        timeout: float. Seconds per HTTP request. Defaults to 30.

    Example:
    >>> client = ServingClient("http://localhost:8501")
    >>> client.predict_probabilities([{"user_id": "10004304", ...}])
    [0.0412...]
    """

    def __init__(
        self,
        url: str,
        model: str = DEFAULT_MODEL,
        *,
        version: int | None = None,
        timeout: float = 30.0,
    ):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {url!r}.")
        if version is not None and (not isinstance(version, int) or version < 1):
            raise ValueError(f"version must be an integer >= 1, got {version!r}.")
        self.base = url.rstrip("/") + f"/v1/models/{model}"
        if version is not None:
            self.base += f"/versions/{version}"
        self.model = model
        self.timeout = timeout
        self._signatures: dict[str, dict[str, Any]] | None = None

    # ---- HTTP ----------------------------------------------------------------------------
    def _call(self, suffix: str, payload: Any | None = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode("utf-8")
        request = urllib.request.Request(
            self.base + suffix,
            data=data,
            method="GET" if data is None else "POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            body = err.read()
            try:
                message = json.loads(body).get("error", body.decode("utf-8", "replace"))
            except (ValueError, AttributeError):
                message = body.decode("utf-8", "replace")
            raise ServingError(err.code, message) from None
        except urllib.error.URLError as err:
            raise ServingError(0, f"cannot reach {self.base}: {err.reason}") from None

    def status(self) -> dict[str, Any]:
        """The model status API reply (``model_version_status``)."""
        return self._call("")

    def metadata(self) -> dict[str, Any]:
        """The model metadata API reply (``model_spec`` and the signature defs)."""
        return self._call("/metadata")

    def _signature(self, signature_name: str) -> dict[str, Any]:
        """``{"inputs": {name: {"dtype", "history"}}, "outputs": [names]}`` of a signature,
        from the metadata API (fetched once)."""
        if self._signatures is None:
            defs = self.metadata()["metadata"]["signature_def"]["signature_def"]
            self._signatures = {}
            for key, sig in defs.items():
                inputs = {}
                for name, info in sig.get("inputs", {}).items():
                    shape = info.get("tensor_shape", {})
                    inputs[name] = {
                        "dtype": info.get("dtype", "DT_INVALID"),
                        # Histories take a string or a list per row: unknown rank.
                        "history": bool(shape.get("unknown_rank", False)),
                    }
                self._signatures[key] = {
                    "inputs": inputs,
                    "outputs": sorted(sig.get("outputs", {})),
                }
        if signature_name not in self._signatures:
            raise ValueError(
                f"The model has no signature {signature_name!r}; it has {sorted(self._signatures)}."
            )
        return self._signatures[signature_name]

    def signature_inputs(
        self, signature_name: str = DEFAULT_SIGNATURE
    ) -> dict[str, dict[str, Any]]:
        """Input name -> ``{"dtype": "DT_...", "history": bool}`` of a signature."""
        return self._signature(signature_name)["inputs"]

    # ---- requests ------------------------------------------------------------------------
    def make_request(
        self,
        rows: Sequence[Mapping[str, Any]],
        *,
        form: str = "instances",
        signature_name: str = DEFAULT_SIGNATURE,
    ) -> dict[str, Any]:
        """The predict request body for raw ``rows`` in row or columnar ``form``."""
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {form!r}.")
        if not rows:
            raise ValueError("rows is empty: nothing to predict.")
        inputs = self.signature_inputs(signature_name)
        encoded = []
        for i, row in enumerate(rows):
            missing = [n for n in inputs if n not in row]
            if missing:
                raise ValueError(f"row {i} lacks the field(s) {missing}.")
            try:
                encoded.append(
                    {
                        n: encode_value(n, row[n], info["dtype"], history=info["history"])
                        for n, info in inputs.items()
                    }
                )
            except ValueError as err:
                raise ValueError(f"row {i}: {err}") from None
        body: dict[str, Any] = {"signature_name": signature_name}
        if form == "instances":
            body["instances"] = encoded
        else:
            body["inputs"] = {n: [r[n] for r in encoded] for n in inputs}
        return body

    def predict(
        self,
        rows: Sequence[Mapping[str, Any]],
        *,
        form: str = "instances",
        signature_name: str = DEFAULT_SIGNATURE,
    ) -> dict[str, list[Any]]:
        """Output name -> one value per row, for one request holding all ``rows``."""
        reply = self._call(
            ":predict", self.make_request(rows, form=form, signature_name=signature_name)
        )
        names = self._signature(signature_name)["outputs"]
        if form == "instances":
            predictions = reply["predictions"]
            if len(names) == 1:  # TF Serving omits the name of a single output
                return {names[0]: predictions}
            return {k: [p[k] for p in predictions] for k in names}
        outputs = reply["outputs"]
        return {names[0]: outputs} if len(names) == 1 else dict(outputs)

    def predict_probabilities(
        self,
        rows: Iterable[Mapping[str, Any]],
        *,
        form: str = "instances",
        batch_size: int = 256,
    ) -> list[float]:
        """Click probabilities of ``rows``, sent ``batch_size`` rows per request."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        rows = list(rows)
        out: list[float] = []
        for start in range(0, len(rows), batch_size):
            out += self.predict(rows[start : start + batch_size], form=form)["probability"]
        return out


def read_rows(path: str) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file (``-`` reads standard input); blank lines are skipped."""
    rows = []
    with contextlib.nullcontext(sys.stdin) if path == "-" else open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not valid JSON ({err}).") from None
            if not isinstance(row, dict):
                raise ValueError(
                    f"{path}:{number}: a row must be a JSON object, got {type(row).__name__}."
                )
            rows.append(row)
    return rows


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m export.client",
        description="Send raw rows (JSON lines) to a FESeq model on TF Serving's REST API "
        "and print one click probability per row.",
    )
    p.add_argument("rows", help="JSON-lines file of raw rows ('-' for standard input)")
    p.add_argument(
        "--url",
        default="http://localhost:8501",
        help="server root (default: http://localhost:8501)",
    )
    p.add_argument(
        "--grpc",
        metavar="HOST:PORT",
        help="send the rows over TF Serving's gRPC API at HOST:PORT (e.g. localhost:8500) "
        "instead of REST; needs grpcio and tensorflow-serving-api (--url and --format unused)",
    )
    p.add_argument("--model", default=DEFAULT_MODEL, help="model name (default: feseq)")
    p.add_argument("--version", type=int, help="model version (default: the latest served)")
    p.add_argument(
        "--format",
        choices=FORMS,
        default="instances",
        dest="form",
        help="request format: row 'instances' (default) or columnar 'inputs'",
    )
    p.add_argument("--batch-size", type=int, default=256, help="rows per request (default: 256)")
    p.add_argument(
        "--attention",
        action="store_true",
        help="use the 'attention' signature and print JSON lines with the pooling weights",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default: 30)")
    return p


@cli.command
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rows = read_rows(args.rows)
        if args.grpc:
            from export.grpc_client import GrpcServingClient  # loads gRPC and TensorFlow

            client = GrpcServingClient(
                args.grpc, args.model, version=args.version, timeout=args.timeout
            )
        else:
            client = ServingClient(args.url, args.model, version=args.version, timeout=args.timeout)
        if args.attention:
            for start in range(0, len(rows), args.batch_size):
                out = client.predict(
                    rows[start : start + args.batch_size],
                    form=args.form,
                    signature_name="attention",
                )
                for i in range(len(next(iter(out.values())))):
                    print(json.dumps({k: v[i] for k, v in out.items()}))
        else:
            for p in client.predict_probabilities(rows, form=args.form, batch_size=args.batch_size):
                print(f"{p:.6f}")
    except (OSError, ValueError, ServingError) as err:
        print(cli.error_line(err), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
