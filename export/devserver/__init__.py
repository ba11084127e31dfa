"""A development server that answers TensorFlow Serving's REST and gRPC APIs for a SavedModel.

Production serves the exported model with TensorFlow Serving (``tensorflow/serving``
Docker image or ``tensorflow_model_server``; see ``export/serving/README.md``). This
package is a small stand-in for machines where TF Serving cannot be installed: it loads
the latest version under a model base path and answers, with TF Serving's URLs and
JSON shapes,

* ``GET  /v1/models/<name>[/versions/<v>]``: model status;
* ``GET  /v1/models/<name>[/versions/<v>]/metadata``: the signature defs;
* ``POST /v1/models/<name>[/versions/<v>]:predict``: row (``"instances"``) or columnar
  (``"inputs"``) requests, ``{"predictions": ...}`` / ``{"outputs": ...}`` replies.

Errors are ``{"error": "<message>"}`` with HTTP 400 for a bad request (malformed JSON,
an empty body, a missing or unknown input, a value of the wrong JSON type, a body over
``--max-request-bytes`` or a batch over ``--max-batch-size``) and 404 for an unknown
model, version or URL. ``--enable-batching`` merges concurrent requests into one model
call (as TF Serving's ``--enable_batching`` does; a call waits up to
``--batch-timeout-micros`` for the requests of the other open connections). On
``--grpc-port`` (default 8500) it serves TF Serving's gRPC ``PredictionService``
(``Predict``, ``GetModelMetadata``) and ``ModelService.GetModelStatus`` over the same
loaded versions and batcher; a bad request gets ``INVALID_ARGUMENT`` with the REST
API's message (:mod:`~export.devserver.grpc_server`).

Versions as TF Serving's default policy (``latest``, one version): a version replays its
warm-up requests (``assets.extra/tf_serving_warmup_requests``) before it serves; the
base path is polled every ``--file-system-poll-wait-seconds`` (default 1) and a new
largest version is loaded, warmed up and swapped in atomically; one that fails to load
leaves the served version serving, its error in the model status
(:mod:`~export.devserver.versions`).

Command line::

    python -m export.devserver --model-base-path EXPORT_DIR/feseq [--port 8501]
        [--grpc-port 8500] [--enable-batching] [--intra-op-threads 1]

(``python -m export.serve`` is the same command.) Modules, one job each:
:mod:`~export.devserver.protocol` (request and reply JSON, errors),
:mod:`~export.devserver.servable` (loading a version, calling its signatures),
:mod:`~export.devserver.batching` (merging concurrent requests),
:mod:`~export.devserver.routing` (the REST URLs), :mod:`~export.devserver.http_server`
(the HTTP transport, a background server), :mod:`~export.devserver.grpc_server` (the
gRPC API), :mod:`~export.devserver.versions` (polling
and swapping versions) and :mod:`~export.devserver.cli`.
TensorFlow is imported only when a model is loaded.
"""

from __future__ import annotations

from export.devserver.batching import DEFAULT_BATCH_TIMEOUT_MICROS
from export.devserver.cli import build_parser, main
from export.devserver.http_server import (
    DEFAULT_PORT,
    BackgroundServer,
    make_http_server,
    running_server,
)
from export.devserver.protocol import DEFAULT_SIGNATURE, RequestError
from export.devserver.routing import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_REQUEST_BYTES, ModelServer
from export.devserver.servable import ServableVersion, latest_version
from export.devserver.versions import DEFAULT_POLL_WAIT_SECONDS, ModelVersions

__all__ = [
    "DEFAULT_BATCH_TIMEOUT_MICROS",
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_POLL_WAIT_SECONDS",
    "DEFAULT_PORT",
    "DEFAULT_SIGNATURE",
    "BackgroundServer",
    "ModelServer",
    "ModelVersions",
    "RequestError",
    "ServableVersion",
    "build_parser",
    "latest_version",
    "main",
    "make_http_server",
    "running_server",
]
