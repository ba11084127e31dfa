"""Merging concurrent predict requests into one model call (``--enable-batching``)."""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping

import numpy as np

from export.devserver.protocol import RequestError, Signature

# How long a merged call waits for the requests of the other open connections after
# the latest arrival (see Batcher); TF Serving's batching_parameters.txt has
# batch_timeout_micros 1000 too.
DEFAULT_BATCH_TIMEOUT_MICROS = 1000

# What runs one model call: (signature, input arrays) -> output arrays.
RunFn = Callable[[Signature, Mapping[str, np.ndarray]], dict[str, np.ndarray]]


@dataclasses.dataclass
class _Task:
    signature: Signature
    arrays: Mapping[str, np.ndarray]
    rows: int
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    outputs: dict[str, np.ndarray] | None = None
    error: RequestError | None = None


class Batcher:
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

    Args:
        run: callable. Runs one model call: (signature, input arrays) -> output arrays;
            raises :class:`RequestError` for a bad request.
        max_rows: int. Most rows in one merged call.
        num_threads: int. Worker threads running merged calls. Defaults to 2.
        timeout_s: float. The wait for the requests of the other open connections
            after the latest arrival; 0 never waits. Defaults to 0.
        parallel_rows: int. Fewest pending rows for which a call starts beside a
            running one. Defaults to 64.

    Attributes:
        expected_requests: callable or None. How many requests to expect at once (the
            HTTP layer's open connections); None never waits.
    """

    def __init__(
        self,
        run: RunFn,
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

    def run(self, signature: Signature, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The outputs of one request, computed in a merged call; blocks until done."""
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
        """Stop the worker threads once the pending requests are answered."""
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
