"""The soak phase of the serving benchmark: a fixed request rate for a while, with mixed
request sizes and bad requests, checking every answer and the server's memory.

Requests leave on a fixed schedule (request i at ``i / rate`` seconds, open loop: a
slow answer does not delay the next request), from one event-loop thread over as many
keep-alive REST connections as are in flight and, with a gRPC target, every other
request over gRPC (asynchronous calls). Good requests hold 1 to ``max_rows`` rows
(log-uniform: most are small, as online traffic is); one in 20 is bad, of several
kinds (:data:`REST_BAD_KINDS`, :data:`GRPC_BAD_KINDS`). Latency counts from the
scheduled send time, so that a server falling behind shows as latency, not as a lower
rate. An answer is unexpected when a good request does not get one probability in
[0, 1] per row, or a bad one does not get 400 (REST) or ``INVALID_ARGUMENT`` (gRPC).
The server's resident memory (``VmRSS``) is read after a warm-up at the same load and
at the end: it may grow by less than :data:`MAX_RSS_GROWTH_PCT`.
"""

from __future__ import annotations

import json
import math
import queue
import selectors
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from benchmarks.http_exchange import Exchange, predict_requests

MAX_RSS_GROWTH_PCT = 10.0
BAD_EVERY = 20  # one request in 20 (5 %) is bad
MAX_CONNECTIONS = 64
RSS_SAMPLE_S = 5.0
# The server's memory rises most in its first seconds of mixed-size load (TensorFlow's
# oneDNN ops cache primitives per input shape, in bounded caches; a thread per new
# client connection): the start RSS is read after this much of the same load.
WARMUP_S = 20.0
TIMEOUT_S = 60.0
# Bad requests sent as the same columns over both APIs, and those only JSON can be.
COLUMN_BAD_KINDS = (
    "unknown_input",
    "missing_input",
    "wrong_dtype",
    "wrong_shape",
    "history_length_mismatch",
)
REST_BAD_KINDS = COLUMN_BAD_KINDS + ("malformed_json", "empty_instances")
GRPC_BAD_KINDS = COLUMN_BAD_KINDS


def memory_kib(pid: int) -> dict[str, int]:
    """``VmRSS`` (resident now) and ``VmHWM`` (peak resident) of a process, in KiB
    (Linux ``/proc``; empty elsewhere)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def bad_columns(kind: str, columns: Mapping[str, list]) -> dict[str, Any]:
    """A good columnar request's inputs made bad in one way (``COLUMN_BAD_KINDS``)."""
    out = dict(columns)
    histories = [n for n in out if n.endswith("_list")]
    time_field = next(n for n in out if f"{n}_list" in out and isinstance(out[n][0], int))
    strings = [n for n in out if n not in histories and isinstance(out[n][0], str)]
    numbers = [n for n in out if isinstance(out[n][0], float)]
    rows = len(out[time_field])
    if kind == "unknown_input":
        out["no_such_input"] = ["x"] * rows
    elif kind == "missing_input":
        del out[time_field]
    elif kind == "wrong_dtype":
        out[strings[0]] = [1.5] * rows
    elif kind == "wrong_shape":
        out[numbers[0]] = [[v] for v in out[numbers[0]]]
    elif kind == "history_length_mismatch":
        for n in histories:
            out[n] = ["5"] * rows if n == f"{time_field}_list" else ["7^8"] * rows
    else:
        raise ValueError(f"kind must be one of {COLUMN_BAD_KINDS}, got {kind!r}.")
    return out


def _rest_body(kind: str | None, chunk: Sequence[Mapping[str, Any]]) -> bytes:
    if kind is None:
        return json.dumps({"instances": list(chunk)}).encode("utf-8")
    if kind == "malformed_json":
        return _rest_body(None, chunk)[:-2]
    if kind == "empty_instances":
        return b'{"instances": []}'
    columns = {n: [r[n] for r in chunk] for n in chunk[0]}
    return json.dumps({"inputs": bad_columns(kind, columns)}).encode("utf-8")


def _grpc_request(kind: str | None, chunk: Sequence[Mapping[str, Any]], client: Any) -> Any:
    """A ``PredictRequest`` of ``chunk`` (bad of ``kind``, unless None)."""
    import tensorflow as tf

    request = client.predict_request(chunk)
    if kind is not None:
        request.ClearField("inputs")
        for name, values in bad_columns(kind, {n: [r[n] for r in chunk] for n in chunk[0]}).items():
            array = np.array(values)
            if array.dtype.kind == "U":
                array = np.array([v.encode("utf-8") for v in array.ravel()], dtype=object)
                array = array.reshape(np.shape(values))
            request.inputs[name].CopyFrom(tf.make_tensor_proto(array))
    return request


class SoakRequests:
    """The prepared requests of a soak: a pool of good ones of mixed sizes and one of
    every bad kind, per API (gRPC ones when ``client`` is given)."""

    def __init__(
        self,
        port: int,
        model: str,
        rows: Sequence[Mapping[str, Any]],
        *,
        client: Any,
        max_rows: int,
        pool_size: int,
        seed: int,
    ):
        rng = np.random.default_rng(seed)
        sizes = np.exp(rng.uniform(0.0, math.log(max_rows + 1), size=pool_size)).astype(int)
        sizes = np.clip(sizes, 1, max_rows)
        chunks = []
        for size in sizes:
            start = int(rng.integers(len(rows)))
            chunks.append([rows[(start + j) % len(rows)] for j in range(int(size))])
        self.rows = [len(c) for c in chunks]
        self.rest = predict_requests(port, model, [_rest_body(None, c) for c in chunks])
        bad_chunk = [rows[0], rows[-1]]
        self.rest_bad = list(
            zip(
                REST_BAD_KINDS,
                predict_requests(port, model, [_rest_body(k, bad_chunk) for k in REST_BAD_KINDS]),
                strict=True,
            )
        )
        self.grpc = [_grpc_request(None, c, client) for c in chunks] if client else []
        self.grpc_bad = (
            [(k, _grpc_request(k, bad_chunk, client)) for k in GRPC_BAD_KINDS] if client else []
        )
        self.picks_seed = seed


class _Tally:
    """What came back during one run of the schedule."""

    def __init__(self, grpc: bool):
        self.status = {"rest": {"200": 0, "400": 0, "other": 0}}
        if grpc:
            self.status["grpc"] = {"OK": 0, "INVALID_ARGUMENT": 0, "other": 0}
        self.bad_sent = {api: 0 for api in self.status}
        self.latencies_ms: list[float] = []
        self.unexpected: list[str] = []
        self.good_rows = 0
        self.sent = 0
        self.answered = 0
        self.max_send_lag_s = 0.0
        self.last_answer = 0.0
        self.elapsed_s = 0.0
        self.rss_samples_kib: list[int] = []  # the server's VmRSS every RSS_SAMPLE_S

    def record(
        self,
        api: str,
        key: str,
        bad: str | None,
        problem: str | None,
        latency_s: float,
        rows: int,
        now: float,
    ) -> None:
        """Count an answer; ``problem`` says what was unexpected about it, if anything."""
        self.status[api][key] += 1
        self.answered += 1
        self.last_answer = max(self.last_answer, now)
        if problem is not None:
            self.unexpected.append(f"{api}: {problem}")
        elif bad is None:
            self.latencies_ms.append(latency_s * 1000.0)
            self.good_rows += rows

    def fail(self, api: str, bad: str | None, rows: int, error: Exception | str) -> None:
        """Count a request that got no answer (a connection error, a timeout)."""
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self.record(api, "other", bad, text, 0.0, rows, time.perf_counter())


def _probabilities_ok(values: Any, rows: int) -> bool:
    array = np.asarray(values, dtype=np.float64)
    return array.shape == (rows,) and bool(np.all((array >= 0.0) & (array <= 1.0)))


def rest_answer_problem(status: int, payload: bytes, bad: str | None, rows: int) -> str | None:
    """What is unexpected about a REST answer (None: nothing) to a request of ``rows``
    rows, bad of kind ``bad`` (None: a good request)."""
    if bad is not None:
        return None if status == 400 else f"bad request ({bad}) answered HTTP {status}"
    if status != 200:
        return f"HTTP {status}: {payload[:200]!r}"
    try:
        predictions = json.loads(payload).get("predictions")
    except (ValueError, AttributeError):
        predictions = None
    if predictions is None or not _probabilities_ok(predictions, rows):
        return f"a reply without one probability in [0, 1] per row: {payload[:200]!r}"
    return None


def grpc_answer_outcome(future: Any, bad: str | None, rows: int) -> tuple[str, str | None]:
    """(status key, what is unexpected or None) of a finished gRPC ``Predict`` call."""
    import grpc
    import tensorflow as tf

    error = future.exception()
    if error is None:
        if bad is not None:
            return "OK", f"bad request ({bad}) answered OK"
        reply = future.result()
        if "probability" not in reply.outputs or not _probabilities_ok(
            tf.make_ndarray(reply.outputs["probability"]), rows
        ):
            return "OK", "a reply without one probability in [0, 1] per row"
        return "OK", None
    code = error.code()
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return "INVALID_ARGUMENT", None if bad else f"INVALID_ARGUMENT: {error.details()}"
    return "other", f"{code.name}: {error.details()}"


def _drive(
    port: int,
    plan: SoakRequests,
    stub: Any,
    duration_s: float,
    rate: float,
    server_pid: int | None = None,
) -> _Tally:
    """Send ``duration_s * rate`` requests on schedule and check every answer; read the
    server's memory every ``RSS_SAMPLE_S``."""
    total = max(1, round(duration_s * rate))
    tally = _Tally(grpc=stub is not None)
    picks = np.random.default_rng(plan.picks_seed + total).integers(len(plan.rows), size=total)
    selector = selectors.DefaultSelector()
    idle: list[Exchange] = []
    in_flight: dict[Exchange, tuple] = {}
    backlog: list[tuple] = []  # REST requests due while MAX_CONNECTIONS were busy
    answers: queue.SimpleQueue = queue.SimpleQueue()  # finished gRPC calls
    grpc_pending = 0
    bad_count = {"rest": 0, "grpc": 0}

    def drop(conn: Exchange) -> None:
        in_flight.pop(conn, None)
        selector.unregister(conn.sock)
        conn.close()

    def send_rest(record: tuple, request: bytes) -> None:
        conn = idle.pop() if idle else None
        if conn is None:
            if len(in_flight) >= MAX_CONNECTIONS:
                backlog.append((record, request))
                return
            try:
                conn = Exchange(port)
            except OSError as err:
                _, bad, rows, _ = record
                tally.fail("rest", bad, rows, err)
                return
            selector.register(conn.sock, selectors.EVENT_READ, conn)
        in_flight[conn] = record
        try:
            done = conn.send(request)
        except OSError as err:
            _, bad, rows, _ = record
            drop(conn)
            tally.fail("rest", bad, rows, err)
            return
        events = selectors.EVENT_READ | (0 if done else selectors.EVENT_WRITE)
        selector.modify(conn.sock, events, conn)

    def issue(i: int, scheduled: float) -> None:
        nonlocal grpc_pending
        api = "grpc" if stub is not None and i % 2 else "rest"
        bad = None
        if (i // 2) % BAD_EVERY == BAD_EVERY // 4:
            kinds = plan.grpc_bad if api == "grpc" else plan.rest_bad
            bad, request = kinds[bad_count[api] % len(kinds)]
            bad_count[api] += 1
            tally.bad_sent[api] += 1
            rows = 0
        else:
            pick = int(picks[i])
            request = (plan.grpc if api == "grpc" else plan.rest)[pick]
            rows = plan.rows[pick]
        tally.sent += 1
        record = (api, bad, rows, scheduled)
        if api == "rest":
            send_rest(record, request)
            return
        future = stub.Predict.future(request, timeout=TIMEOUT_S)
        grpc_pending += 1
        future.add_done_callback(lambda f, r=record: answers.put((r, time.perf_counter(), f)))

    t0 = time.perf_counter() + 0.01
    next_sample = t0
    deadline = t0 + total / rate + TIMEOUT_S
    issued = 0
    while issued < total or in_flight or grpc_pending or backlog:
        now = time.perf_counter()
        if server_pid and now >= next_sample:
            tally.rss_samples_kib.append(memory_kib(server_pid).get("VmRSS", 0))
            next_sample += RSS_SAMPLE_S
        while issued < total and t0 + issued / rate <= now:
            scheduled = t0 + issued / rate
            tally.max_send_lag_s = max(tally.max_send_lag_s, now - scheduled)
            issue(issued, scheduled)
            issued += 1
        while backlog and (idle or len(in_flight) < MAX_CONNECTIONS):
            send_rest(*backlog.pop(0))
        while not answers.empty():
            (api, bad, rows, scheduled), finished, future = answers.get()
            grpc_pending -= 1
            key, problem = grpc_answer_outcome(future, bad, rows)
            tally.record(api, key, bad, problem, finished - scheduled, rows, finished)
        if now > deadline:
            for conn in list(in_flight):
                _, bad, rows, _ = in_flight[conn]
                tally.fail("rest", bad, rows, "no reply in time")
                drop(conn)
            tally.unexpected += ["grpc: no reply in time"] * grpc_pending
            break
        wait = (t0 + issued / rate - time.perf_counter()) if issued < total else 0.05
        if grpc_pending:
            wait = min(wait, 0.001)  # finished gRPC calls queue up: collect them soon
        for key, mask in selector.select(max(wait, 0.0)):
            conn = key.data
            if conn not in in_flight:
                continue
            api, bad, rows, scheduled = in_flight[conn]
            try:
                if mask & selectors.EVENT_WRITE and conn.flush():
                    selector.modify(conn.sock, selectors.EVENT_READ, conn)
                reply = conn.receive() if mask & selectors.EVENT_READ else None
            except (OSError, ValueError) as err:
                drop(conn)
                tally.fail(api, bad, rows, err)
                continue
            if reply is None:
                continue
            finished = time.perf_counter()
            status, payload, close = reply
            del in_flight[conn]
            key_ = "200" if status == 200 else "400" if status == 400 else "other"
            problem = rest_answer_problem(status, payload, bad, rows)
            tally.record(api, key_, bad, problem, finished - scheduled, rows, finished)
            if close:
                selector.unregister(conn.sock)
                conn.close()
            else:
                idle.append(conn)
    for conn in idle:
        selector.unregister(conn.sock)
        conn.close()
    selector.close()
    tally.elapsed_s = (tally.last_answer or time.perf_counter()) - t0
    return tally


def run_soak(
    port: int,
    model: str,
    rows: Sequence[Mapping[str, Any]],
    *,
    duration_s: float,
    rate: float,
    grpc_target: str | None = None,
    server_pid: int | None = None,
    max_rows: int = 256,
    warmup_s: float = WARMUP_S,
    pool_size: int = 64,
    seed: int = 0,
) -> dict[str, Any]:
    """Soak the server on ``port`` (and ``grpc_target``, ``HOST:PORT``, if given) for
    ``duration_s`` seconds at ``rate`` requests a second, after ``warmup_s`` seconds
    of the same load; the report (see the module docstring).

    Args:
        port: int. The server's REST port on loopback.
        model: str. Model name.
        rows: list of dict. Raw request rows (histories '^'-joined) to draw requests from.
        duration_s: float. Seconds of measured load.
        rate: float. Requests a second (REST and gRPC together).
        grpc_target: str or None. Also send every other request over gRPC there.
        server_pid: int or None. The server process, whose memory is read.
        max_rows: int. Most rows of a good request. Defaults to 256.
        warmup_s: float. Seconds of the same load before the start memory is read.
            Defaults to ``WARMUP_S``.
        pool_size: int. Distinct good requests (sizes drawn log-uniform). Defaults to 64.
        seed: int. Seed of the sizes and picks. Defaults to 0.
    """
    for name, value, low in (("duration_s", duration_s, 0.0), ("rate", rate, 0.0)):
        if not value > low:
            raise ValueError(f"{name} must be > 0, got {value!r}.")
    if warmup_s < 0:
        raise ValueError(f"warmup_s must be >= 0, got {warmup_s!r}.")
    if max_rows < 1 or pool_size < 1:
        raise ValueError(f"max_rows and pool_size must be >= 1, got {max_rows}, {pool_size}.")
    client = None
    if grpc_target:
        from export.grpc_client import GrpcServingClient  # loads gRPC and TensorFlow

        client = GrpcServingClient(grpc_target, model, timeout=TIMEOUT_S)
    try:
        plan = SoakRequests(
            port, model, rows, client=client, max_rows=max_rows, pool_size=pool_size, seed=seed
        )
        stub = client.stub if client else None
        if warmup_s:
            _drive(port, plan, stub, warmup_s, rate)
        memory_start = memory_kib(server_pid) if server_pid else {}
        tally = _drive(port, plan, stub, duration_s, rate, server_pid)
        memory_end = memory_kib(server_pid) if server_pid else {}
    finally:
        if client is not None:
            client.close()
    return _report(tally, duration_s, rate, warmup_s, max_rows, memory_start, memory_end)


def _report(
    tally: _Tally,
    duration_s: float,
    rate: float,
    warmup_s: float,
    max_rows: int,
    memory_start: Mapping[str, int],
    memory_end: Mapping[str, int],
) -> dict[str, Any]:
    lat = np.array(tally.latencies_ms) if tally.latencies_ms else np.zeros(1)
    elapsed = max(tally.elapsed_s, 1e-9)
    report: dict[str, Any] = {
        "duration_s": duration_s,
        "warmup_s": warmup_s,
        "target_rate": rate,
        "max_rows": max_rows,
        "requests": tally.sent,
        "answered": tally.answered,
        "requests_per_s": round(tally.answered / elapsed, 1),
        "good_rows_per_s": round(tally.good_rows / elapsed, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
        "max_ms": round(float(lat.max()), 2),
        "max_send_lag_ms": round(tally.max_send_lag_s * 1000.0, 2),
        "rss_samples_mib": [round(k / 1024, 1) for k in tally.rss_samples_kib],
        "status": tally.status,
        "bad_requests": tally.bad_sent,
        "unexpected_errors": len(tally.unexpected),
        "first_unexpected": tally.unexpected[:5],
    }
    rss0, rss1 = memory_start.get("VmRSS"), memory_end.get("VmRSS")
    growth = (rss1 - rss0) * 100.0 / rss0 if rss0 and rss1 else None
    report.update(
        rss_start_mib=round(rss0 / 1024, 1) if rss0 else None,
        rss_end_mib=round(rss1 / 1024, 1) if rss1 else None,
        peak_rss_start_mib=round(memory_start["VmHWM"] / 1024, 1) if memory_start else None,
        peak_rss_end_mib=round(memory_end["VmHWM"] / 1024, 1) if memory_end else None,
        rss_growth_pct=None if growth is None else round(growth, 2),
        rss_check=None if growth is None else ("PASS" if growth < MAX_RSS_GROWTH_PCT else "FAIL"),
    )
    return report


def soak_failed(report: Mapping[str, Any]) -> bool:
    """True when the soak saw an unexpected answer or the memory grew too much."""
    return bool(report["unexpected_errors"]) or report["rss_check"] == "FAIL"


def format_report(report: Mapping[str, Any]) -> str:
    """The soak's figures as a few lines of text."""
    status = "; ".join(
        f"{api}: " + ", ".join(f"{k} {v}" for k, v in counts.items())
        for api, counts in report["status"].items()
    )
    bad = ", ".join(f"{api} {n}" for api, n in report["bad_requests"].items())
    lines = [
        f"soak: {report['requests']} requests in {report['duration_s']} s at "
        f"{report['target_rate']} requests/s (1-{report['max_rows']} rows, 5 % bad; after "
        f"{report['warmup_s']} s of warm-up)",
        f"  good requests: p50 {report['p50_ms']} ms, p99 {report['p99_ms']} ms, max "
        f"{report['max_ms']} ms (from the scheduled send; largest send lag "
        f"{report['max_send_lag_ms']} ms); {report['requests_per_s']} requests/s, "
        f"{report['good_rows_per_s']} rows/s",
        f"  answers by status: {status}; bad requests sent: {bad}",
        f"  unexpected errors: {report['unexpected_errors']}"
        + "".join(f"\n    {e}" for e in report["first_unexpected"]),
        f"  server RSS: {report['rss_start_mib']} MiB at start, {report['rss_end_mib']} MiB "
        f"at end ({report['rss_growth_pct']} %, limit {MAX_RSS_GROWTH_PCT:g} %: "
        f"{report['rss_check']}); peak {report['peak_rss_start_mib']} -> "
        f"{report['peak_rss_end_mib']} MiB; every {RSS_SAMPLE_S:g} s: "
        f"{', '.join(map(str, report['rss_samples_mib']))} MiB",
    ]
    return "\n".join(lines)
