"""The versions of one served model: polling its base path, swapping and retiring versions.

Like TF Serving with its default version policy (``latest { num_versions: 1 }``, as in
``export/serving/models.config``), one version is served: the largest number under the
base path. :class:`ModelVersions` polls the base path every ``poll_wait_s`` seconds
(TF Serving's ``--file_system_poll_wait_seconds``, default 1). When the largest version
changes it loads and warms up that version beside the served one, then swaps it in
atomically: requests that started on the old version finish there, later ones go to
the new one, and the old one is retired once its requests are answered. A version that
fails to load (or to warm up) leaves the served one serving; the error is logged and
shown in the model status, and that version is not tried again until its
``saved_model.pb`` changes (TF Serving retries a failed load up to 5 times a minute
apart). Removing the served version's directory rolls back to the largest remaining
one; with none left the served one stays (TF Serving would unload it).

The model status lists every version seen, newest first, in TF Serving's JSON:
``AVAILABLE`` (served), ``LOADING``, or ``END`` (retired, with ``error_code`` ``OK``, or
failed, with the error's code and message).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
from collections.abc import Callable
from typing import Any

from export.devserver.protocol import RequestError
from export.devserver.servable import ServableVersion, version_dirs

log = logging.getLogger(__name__)

# TF Serving's --file_system_poll_wait_seconds defaults to 1.
DEFAULT_POLL_WAIT_SECONDS = 1.0

# Loads (and warms up) one version: (version, path) -> the loaded version.
LoadFn = Callable[[int, str], ServableVersion]


@dataclasses.dataclass
class _VersionState:
    state: str  # AVAILABLE, LOADING or END
    error_code: str = "OK"
    error_message: str = ""
    fingerprint: tuple = ()  # of the saved_model.pb that failed to load

    def entry(self, version: int) -> dict[str, Any]:
        return {
            "version": str(version),
            "state": self.state,
            "status": {"error_code": self.error_code, "error_message": self.error_message},
        }


def error_code(err: BaseException) -> str:
    """TF Serving's name of an error's code: ``NOT_FOUND`` for ``tf.errors.NotFoundError``
    (and ``FileNotFoundError``), ``INVALID_ARGUMENT`` for ``ValueError``, else ``UNKNOWN``."""
    name = type(err).__name__
    if hasattr(err, "error_code") and name.endswith("Error"):  # a tf.errors.OpError
        return re.sub(r"(?<!^)(?=[A-Z])", "_", name[: -len("Error")]).upper()
    if isinstance(err, FileNotFoundError):
        return "NOT_FOUND"
    if isinstance(err, ValueError):
        return "INVALID_ARGUMENT"
    return "UNKNOWN"


def _fingerprint(path: str) -> tuple:
    try:
        stat = os.stat(os.path.join(path, "saved_model.pb"))
    except OSError:
        return ()
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


class ModelVersions:
    """The served version of one model, and the poller that swaps in new ones.

    Args:
        servable: ServableVersion. The version served first.
        base_path: str or None. The model's base path, polled for versions; None serves
            ``servable`` only. Defaults to None.
        load: callable or None. Loads and warms up a version: (version, path) ->
            ServableVersion; needed with ``base_path``. Defaults to None.
        poll_wait_s: float. Seconds between polls of ``base_path``; 0 never polls.
            Defaults to ``DEFAULT_POLL_WAIT_SECONDS`` (1, as TF Serving).

    Attributes:
        on_load: callable or None. Called with each newly loaded version before it
            serves (the server wires its batcher to the HTTP connections there).
    """

    def __init__(
        self,
        servable: ServableVersion,
        *,
        base_path: str | None = None,
        load: LoadFn | None = None,
        poll_wait_s: float = DEFAULT_POLL_WAIT_SECONDS,
    ):
        if not poll_wait_s >= 0:
            raise ValueError(f"poll_wait_s must be >= 0, got {poll_wait_s}.")
        if base_path is not None and load is None:
            raise ValueError("load must be given with base_path (it loads the new versions).")
        self.name = servable.name
        self.base_path = base_path
        self.poll_wait_s = poll_wait_s
        self.on_load: Callable[[ServableVersion], None] | None = None
        self._load = load
        self._current = servable
        self._states = {servable.version: _VersionState("AVAILABLE")}
        self._lock = threading.Lock()  # guards _current and _states
        self._poll_lock = threading.Lock()  # one poll at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if base_path is not None and poll_wait_s > 0:
            self._thread = threading.Thread(
                target=self._poll_loop, name=f"feseq-poll-{self.name}", daemon=True
            )
            self._thread.start()

    @property
    def current(self) -> ServableVersion:
        """The version that answers requests without a version."""
        return self._current

    def get(self, version: str | None = None) -> ServableVersion:
        """The loaded version a request names (None: the served one).

        Raises:
            RequestError: 404 when that version is not loaded.
        """
        servable = self._current
        if version is not None and version != str(servable.version):
            raise RequestError(
                404, f"Servable not found for request: Specific({self.name}, {version})"
            )
        return servable

    def status(self, version: str | None = None) -> list[dict[str, Any]]:
        """The ``model_version_status`` list of TF Serving's model status reply: every
        version seen, newest first, or the one named.

        Raises:
            RequestError: 404 for a version never seen.
        """
        with self._lock:
            states = dict(self._states)
        if version is None:
            return [states[v].entry(v) for v in sorted(states, reverse=True)]
        if not version.isdigit() or int(version) not in states:
            raise RequestError(
                404, f"Servable not found for request: Specific({self.name}, {version})"
            )
        return [states[int(version)].entry(int(version))]

    def poll(self) -> None:
        """Look at the base path once; load, warm up and swap in its largest version
        when that is not the served one (and has not failed to load as it is now)."""
        if self.base_path is None:
            return
        with self._poll_lock:
            versions = version_dirs(self.base_path)
            with self._lock:
                failed = {v: s.fingerprint for v, s in self._states.items() if s.fingerprint}
            candidates = [v for v, path in versions.items() if failed.get(v) != _fingerprint(path)]
            if not candidates:
                return
            target = max(candidates)
            if target != self._current.version:
                self._swap_in(target, versions[target])

    def _swap_in(self, version: int, path: str) -> None:
        with self._lock:
            self._states[version] = _VersionState("LOADING")
        log.info("model %r: loading version %d from %s", self.name, version, path)
        try:
            servable = self._load(version, path)
            if self.on_load is not None:
                self.on_load(servable)
        except Exception as err:  # any failure leaves the served version serving
            failed = _VersionState(
                "END", error_code(err), f"{type(err).__name__}: {err}", _fingerprint(path)
            )
            with self._lock:
                self._states[version] = failed
            log.error(
                "model %r: version %d failed to load, still serving version %d: %s",
                self.name,
                version,
                self._current.version,
                failed.error_message,
            )
            return
        with self._lock:
            old, self._current = self._current, servable
            self._states[version] = _VersionState("AVAILABLE")
            self._states[old.version] = _VersionState("END")
        log.info("model %r: serving version %d (was %d)", self.name, version, old.version)
        old.close()  # waits for the requests it holds

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_wait_s):
            try:
                self.poll()
            except Exception:  # keep polling whatever happens
                log.exception("model %r: polling %s failed", self.name, self.base_path)

    def close(self) -> None:
        """Stop polling and close the served version."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._current.close()
