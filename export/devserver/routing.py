"""TF Serving's REST URLs over loaded models (status, metadata, predict), without HTTP."""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import traceback
from collections.abc import Mapping
from typing import Any

from export.devserver.batching import DEFAULT_BATCH_TIMEOUT_MICROS
from export.devserver.protocol import RequestError
from export.devserver.servable import ServableVersion, latest_version
from export.devserver.versions import DEFAULT_POLL_WAIT_SECONDS, ModelVersions

DEFAULT_MAX_REQUEST_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_BATCH_SIZE = 8192

_URL = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<tail>/metadata|:[A-Za-z]+)?/?$"
)


class ModelServer:
    """TF Serving's REST API over loaded models, without the HTTP layer.

    Args:
        models: dict. Model name -> its loaded :class:`ServableVersion`, or its
            :class:`~export.devserver.versions.ModelVersions` (which polls for new
            versions).
        max_request_bytes: int. Largest accepted request body.
        max_batch_size: int. Most rows in one predict request.
    """

    def __init__(
        self,
        models: Mapping[str, ServableVersion | ModelVersions],
        *,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    ):
        if max_request_bytes < 1:
            raise ValueError(f"max_request_bytes must be >= 1, got {max_request_bytes}.")
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}.")
        self.versions = {
            name: m if isinstance(m, ModelVersions) else ModelVersions(m)
            for name, m in models.items()
        }
        self.max_request_bytes = max_request_bytes
        self.max_batch_size = max_batch_size
        # Open client connections of the HTTP layer: each has at most one request in
        # flight, so the batchers wait (briefly) for that many requests.
        self.open_connections = 0
        self._connections_lock = threading.Lock()
        for versions in self.versions.values():
            versions.on_load = self._wire_batcher
            self._wire_batcher(versions.current)

    @property
    def models(self) -> dict[str, ServableVersion]:
        """Model name -> the version it serves now."""
        return {name: versions.current for name, versions in self.versions.items()}

    def _wire_batcher(self, servable: ServableVersion) -> None:
        if servable.batcher is not None:
            servable.batcher.expected_requests = lambda: self.open_connections

    def connection_opened(self) -> None:
        """Count a client connection the HTTP layer opened."""
        with self._connections_lock:
            self.open_connections += 1

    def connection_closed(self) -> None:
        """Count a client connection the HTTP layer closed."""
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
        poll_wait_s: float = DEFAULT_POLL_WAIT_SECONDS,
        **kwargs: Any,
    ) -> ModelServer:
        """Load the latest version under ``base_path`` as model ``name`` (default: the
        base path's last component); ``batching`` merges concurrent requests. The base
        path is polled every ``poll_wait_s`` seconds (0: never) and a new latest version
        swapped in (:class:`~export.devserver.versions.ModelVersions`)."""
        name = name or os.path.basename(os.path.normpath(base_path))

        def load(version: int, path: str) -> ServableVersion:
            return ServableVersion(
                name,
                version,
                path,
                batching=batching,
                max_batch_rows=max_batch_rows,
                batch_threads=batch_threads,
                batch_timeout_micros=batch_timeout_micros,
            )

        versions = ModelVersions(
            load(*latest_version(base_path)),
            base_path=base_path,
            load=load,
            poll_wait_s=poll_wait_s,
        )
        try:
            return cls({name: versions}, **kwargs)
        except ValueError:
            versions.close()
            raise

    def close(self) -> None:
        """Stop polling and the models' batching threads."""
        for versions in self.versions.values():
            versions.close()

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """Answer one request: (HTTP status, JSON reply)."""
        try:
            return 200, self._handle(method, path.split("?", 1)[0], body)
        except RequestError as err:
            return err.status, {"error": err.message}
        except Exception as err:  # a bug, not a bad request: report it, keep serving
            traceback.print_exc(file=sys.stderr)
            return 500, {"error": f"Internal error: {type(err).__name__}: {err}"}

    def servable(
        self, name: str, version: str | None = None, label: str | None = None
    ) -> ServableVersion:
        """The loaded version a request names (the gRPC API's lookup too); a
        :class:`RequestError` (404) when there is none."""
        return self._servable(name, version, label)

    def _servable(self, name: str, version: str | None, label: str | None) -> ServableVersion:
        if label is not None:
            raise RequestError(404, "Version labels are not supported by this development server.")
        return self._versions(name).get(version)

    def _versions(self, name: str) -> ModelVersions:
        versions = self.versions.get(name)
        if versions is None:
            raise RequestError(404, f"Servable not found for request: Latest({name})")
        return versions

    def _handle(self, method: str, path: str, body: bytes) -> dict[str, Any]:
        match = _URL.match(path)
        if not match:
            raise RequestError(404, f"Malformed request: {method} {path}")
        tail = match["tail"] or ""
        if tail == "" and match["label"] is None:  # the status of every version seen
            statuses = self._versions(match["name"]).status(match["version"])
            if method != "GET":
                raise RequestError(405, f"Malformed request: {method} {path} (use GET)")
            return {"model_version_status": statuses}
        servable = self._servable(match["name"], match["version"], match["label"])
        if tail in ("", "/metadata"):
            if method != "GET":
                raise RequestError(405, f"Malformed request: {method} {path} (use GET)")
            return {
                "model_spec": {
                    "name": servable.name,
                    "signature_name": "",
                    "version": str(servable.version),
                },
                "metadata": {"signature_def": {"signature_def": servable.metadata}},
            }
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
