"""Latency and throughput of the exported FESeq model behind TF Serving's REST API.

    python -m benchmarks.serving [--model-base-path EXPORT/feseq | --run-dir RUN]
                                 [--requests 1000] [--concurrency 8] [--large-batch 256]

Starts the development model server (``python -m export.devserver --enable-batching
--intra-op-threads 1``; ``--no-batching`` leaves merging off, ``--server-arg`` adds or
overrides arguments) in its own process on loopback, then sends TF Serving REST
``predict`` requests of raw rows from ``--concurrency`` closed-loop clients, each on its
own keep-alive connection with TCP_NODELAY, all driven by one event-loop thread (as
load generators such as wrk are: client threads would contend for Python's GIL and cost
the machine, which the server shares, as much CPU as the server; every reply is parsed
as JSON and checked):

1. ``--requests`` requests of one row each: latency p50 / p90 / p99 / max and requests/s;
2. the same, one client at a time (no queueing): the service time of one request;
3. ``--large-requests`` requests of ``--large-batch`` rows: rows/s;
4. with the server stopped, one ``serving_default`` call in this process (inputs already
   tensors, one thread per op as in the server) at 1, 8 and ``--large-batch`` rows: what
   the model itself costs, apart from HTTP, JSON and merging.

Rows are random raw rows of the model's request contract (vocabulary values with a
share of unseen ones, histories of 0 to max_len + 2 entries as '^'-joined strings).
With neither ``--model-base-path`` nor ``--run-dir`` the model is the paper's Ele.me
configuration (23 fields, d = 16, 8-head refiner, pooling 128, MLP 1024-512-256) with
untrained weights over an Ele.me-shaped dataset spec, exported to a temporary
directory: serving cost does not depend on the weights' values (``--model-size tiny``
exports a model too small to cost anything instead: its figures are the floor of the
server itself, HTTP, JSON, merging and the raw-feature encoder). Any request that does
not answer 200 counts as an error; the exit status is 1 when there was one.

The clients are closed-loop (each sends its next request when the previous one is
answered), so at concurrency C the latency is about C / throughput: the server's CPU
time per request, printed too, is the figure that other load on the machine distorts
least.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER_START_TIMEOUT_S = 180
# One TensorFlow thread per op: the server's batch threads run merged calls side by
# side, and a model call over a few rows gains nothing from a second thread per op but
# its wake-ups (about 0.25 ms of CPU per batch-1 request with 8 clients on 2 cores).
SERVER_THREAD_ARGS = ["--intra-op-threads", "1"]


# --model-size: the paper's Ele.me configuration, or a model too small to cost anything,
# whose figures are those of the server itself (HTTP, JSON, batching, raw-feature encoder).
MODEL_SIZES = {
    "paper": {},
    "tiny": dict(
        embedding_dim=4,
        input_interaction_layers=1,
        target_interaction_layers=1,
        transformer_heads=2,
        pooling_hidden=8,
        mlp_units=[16],
    ),
}


def _eleme_shaped_export(
    directory: str, precision: str = "float32", vocab_rows: int = 2000, size: str = "paper"
) -> str:
    """Export an untrained FESeq (``MODEL_SIZES[size]``) over an Ele.me-shaped spec; its
    base path."""
    import keras

    from benchmarks.train_throughput import eleme_shaped_spec
    from export.savedmodel import write_saved_model
    from feseq_tf.config import ModelConfig
    from feseq_tf.models.feseq import FESeq
    from feseq_tf.schema import DatasetSpec, FieldSpec, write_vocab

    shaped = eleme_shaped_spec()
    vocab_dir = os.path.join(directory, "run")
    fields = []
    for f in shaped.fields:
        if f.is_categorical:
            n = min(f.vocab_size - 2, vocab_rows)
            write_vocab(vocab_dir, f.name, [f"{f.name[:3]}{i}" for i in range(n)])
            fields.append(FieldSpec(f.name, f.role, f.type, f.sequential, vocab_size=n + 2))
        else:
            fields.append(FieldSpec(f.name, f.role, f.type, f.sequential, min=0.0, max=100.0))
    spec = DatasetSpec(name="eleme_shape", fields=tuple(fields), max_len=shaped.max_len)
    keras.utils.set_random_seed(0)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        model = FESeq(spec, ModelConfig(**MODEL_SIZES[size]), name="feseq")
    finally:
        keras.config.set_dtype_policy(previous)
    base = os.path.join(directory, "export", "feseq")
    write_saved_model(model, spec, os.path.join(vocab_dir, "vocab"), os.path.join(base, "1"))
    spec.save(os.path.join(base, "1", "assets.extra"))
    return base


def _request_rows(version_dir: str, n: int, seed: int) -> list[dict[str, Any]]:
    """Random raw rows for the exported model (histories '^'-joined)."""
    from export.savedmodel import CONTRACT_FILE, example_rows, to_request_row
    from feseq_tf.schema import DatasetSpec

    with open(os.path.join(version_dir, CONTRACT_FILE)) as fh:
        contract = json.load(fh)
    spec_path = os.path.join(version_dir, "assets.extra", "dataset_spec.json")
    if os.path.exists(spec_path):
        spec = DatasetSpec.load(spec_path)
    else:  # rebuild the field list from the contract: enough for random rows
        from feseq_tf.schema import FieldSpec

        names = {i["name"]: i for i in contract["inputs"]}
        fields = []
        for name, info in names.items():
            if info["kind"] in ("categorical", "numeric"):
                sequential = f"{name}_list" in names
                role = "item" if sequential else "user"
                fields.append(FieldSpec(name, role, info["kind"], sequential, vocab_size=2))
        spec = DatasetSpec(name="contract", fields=tuple(fields), max_len=contract["max_len"])
    vocabs = _vocabularies(version_dir)
    rows = example_rows(spec, vocabs, n, seed=seed)
    return [to_request_row(spec, r) for r in rows]


def _vocabularies(version_dir: str) -> dict[str, list[str]]:
    from export.raw_encoder import KEY_SEPARATOR, VOCABULARY_ASSET

    vocabs: dict[str, list[str]] = {}
    path = os.path.join(version_dir, "assets", VOCABULARY_ASSET)
    if os.path.exists(path):
        with open(path, encoding="utf-8", newline="\n") as fh:
            for line in fh:
                field, _, value = line.rstrip("\n").partition(KEY_SEPARATOR)
                vocabs.setdefault(field, []).append(value)
    return vocabs


def _start_server(
    base_path: str, extra_args: Sequence[str], log_dir: str
) -> tuple[subprocess.Popen, int]:
    cmd = [sys.executable, "-m", "export.devserver", "--model-base-path", base_path, "--port", "0"]
    cmd += list(extra_args)
    log_path = os.path.join(log_dir, "server.log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
    deadline = time.time() + SERVER_START_TIMEOUT_S
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if " at http://" in line:
            port = int(line.split(" at http://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # drain
            return proc, port
    proc.kill()
    with open(log_path) as fh:
        tail = fh.read()[-2000:]
    raise RuntimeError(f"the model server did not start: {' '.join(cmd)}\n{tail}")


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux ``/proc``; None elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class _Exchange:
    """One keep-alive client connection of the load generator (TCP_NODELAY, non-blocking).

    It sends a prepared request (head and body) and parses the reply incrementally: the
    status line, the headers (Content-Length framing) and the body. All connections of a
    phase are driven by one thread through ``selectors`` (as event-loop load generators
    such as wrk do), so that the clients neither contend for Python's GIL nor cost the
    machine, which the server shares, more than a few tens of microseconds per request;
    eight client threads cost about as much CPU as the server itself and their GIL
    hand-offs add milliseconds to the measured latencies.
    """

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60.0)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self._buf = b""
        self._out = b""
        self.started = 0.0

    def close(self) -> None:
        self.sock.close()

    def send(self, request: bytes) -> bool:
        """Start sending ``request``; True when it all went out at once."""
        self.started = time.perf_counter()
        self._out = request
        return self.flush()

    def flush(self) -> bool:
        """Send what is left of the request; True when nothing is left."""
        try:
            sent = self.sock.send(self._out)
        except BlockingIOError:
            sent = 0
        self._out = self._out[sent:]
        return not self._out

    def receive(self) -> tuple[int, bytes, bool] | None:
        """Read what arrived; (status, body, server closes) once a reply is complete."""
        try:
            data = self.sock.recv(1 << 16)
        except BlockingIOError:
            return None
        if not data:
            raise ConnectionError("the server closed the connection")
        self._buf += data
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = self._buf[:end].split(b"\r\n")
        status_line = head[0].split(None, 2)
        if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/"):
            raise ConnectionError(f"not an HTTP status line: {head[0][:100]!r}")
        length, close = None, False
        for line in head[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection":
                close = value.strip().lower() == b"close"
            elif name == b"transfer-encoding":
                raise ConnectionError(f"unexpected Transfer-Encoding: {value.strip()!r}")
        if length is None:
            raise ConnectionError("a reply without Content-Length")
        if len(self._buf) < end + 4 + length:
            return None
        body = self._buf[end + 4 : end + 4 + length]
        self._buf = self._buf[end + 4 + length :]
        return int(status_line[1]), body, close


def _requests(port: int, model: str, bodies: list[bytes]) -> list[bytes]:
    """Complete HTTP/1.1 predict requests (head and JSON body) for ``bodies``."""
    head = (
        f"POST /v1/models/{model}:predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n"
    )
    return [head.format(len(body)).encode("ascii") + body for body in bodies]


def _run_phase(
    port: int,
    model: str,
    bodies: list[bytes],
    requests: int,
    concurrency: int,
    server_pid: int | None = None,
) -> dict[str, Any]:
    """Send ``requests`` bodies (cycled) from ``concurrency`` closed-loop clients, each on
    its own keep-alive connection, all driven by this thread; latencies in ms and the
    server's CPU time per request (a figure that other load on the machine inflates less
    than latency). Each reply is parsed as JSON and must hold one prediction per row sent."""
    errors: list[str] = []
    latencies: list[float] = []
    prepared = _requests(port, model, bodies)
    rows = [len(json.loads(body)["instances"]) for body in bodies]
    selector = selectors.DefaultSelector()
    issued = 0  # requests handed to a connection so far
    in_flight: dict[_Exchange, int] = {}  # connection -> index of its request

    def drop(conn: _Exchange) -> None:
        in_flight.pop(conn, None)
        selector.unregister(conn.sock)
        conn.close()

    def issue(conn: _Exchange | None) -> None:
        """Send the next request on ``conn`` (a new connection when None), or close it
        when all requests are out. A request that cannot be sent counts as an error."""
        nonlocal issued
        while issued < requests:
            i, issued = issued, issued + 1
            try:
                if conn is None:
                    conn = _Exchange(port)
                    selector.register(conn.sock, selectors.EVENT_READ, conn)
                in_flight[conn] = i
                done = conn.send(prepared[i % len(prepared)])
            except OSError as err:
                errors.append(f"{type(err).__name__}: {err}")
                if conn is not None:
                    drop(conn)
                    conn = None
                continue
            events = selectors.EVENT_READ | (0 if done else selectors.EVENT_WRITE)
            selector.modify(conn.sock, events, conn)
            return
        if conn is not None:
            drop(conn)

    def fail(conn: _Exchange, message: str) -> None:
        errors.append(message)
        drop(conn)
        issue(None)  # a fresh connection takes the client's next request

    cpu0 = _cpu_seconds(server_pid) if server_pid else None
    t0 = time.perf_counter()
    for _ in range(min(concurrency, requests)):
        issue(None)
    while in_flight:
        events = selector.select(timeout=60.0)
        if not events:
            for conn in list(in_flight):
                fail(conn, "TimeoutError: no reply within 60 s")
            continue
        for key, mask in events:
            conn = key.data
            if conn not in in_flight:
                continue
            try:
                if mask & selectors.EVENT_WRITE and conn.flush():
                    selector.modify(conn.sock, selectors.EVENT_READ, conn)
                if not mask & selectors.EVENT_READ:
                    continue
                reply = conn.receive()
            except (OSError, ValueError) as err:
                fail(conn, f"{type(err).__name__}: {err}")
                continue
            if reply is None:
                continue
            latency = (time.perf_counter() - conn.started) * 1000.0
            status, payload, close = reply
            i = in_flight.pop(conn)
            try:
                parsed = json.loads(payload)
            except ValueError as err:
                fail(conn, f"{type(err).__name__}: {err}")
                continue
            predictions = parsed.get("predictions") if isinstance(parsed, dict) else None
            if status != 200:
                errors.append(f"HTTP {status}: {payload[:200]!r}")
            elif not isinstance(predictions, list) or len(predictions) != rows[i % len(rows)]:
                errors.append(f"a reply without one prediction per row: {payload[:200]!r}")
            else:
                latencies.append(latency)
            if close:
                drop(conn)
                conn = None
            issue(conn)
    seconds = time.perf_counter() - t0
    cpu1 = _cpu_seconds(server_pid) if server_pid else None
    selector.close()
    lat = np.array(latencies) if latencies else np.zeros(1)
    return {
        "requests": requests,
        "concurrency": concurrency,
        "errors": len(errors),
        "first_errors": errors[:3],
        "seconds": round(seconds, 3),
        "requests_per_s": round(requests / seconds, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p90_ms": round(float(np.percentile(lat, 90)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
        "max_ms": round(float(lat.max()), 2),
        "server_cpu_ms_per_request": (
            round((cpu1 - cpu0) * 1000.0 / requests, 2)
            if cpu0 is not None and cpu1 is not None
            else None
        ),
    }


def _model_call_ms(
    version_dir: str, rows: list[dict[str, Any]], batches: Sequence[int], calls: int = 100
) -> dict[str, float]:
    """Wall ms of one ``serving_default`` call in this process (inputs already tensors,
    no HTTP, JSON or merging), per batch size: what the server's model calls cost."""
    import tensorflow as tf

    fn = tf.saved_model.load(version_dir).signatures["serving_default"]
    _, specs = fn.structured_input_signature
    out = {}
    for batch in batches:
        chunk = [rows[i % len(rows)] for i in range(batch)]
        feeds = {
            n: tf.constant(
                np.array([r[n] for r in chunk], dtype=object if spec.dtype == tf.string else None),
                dtype=spec.dtype,
            )
            for n, spec in specs.items()
        }
        for _ in range(10):
            fn(**feeds)
        t0 = time.perf_counter()
        for _ in range(calls):
            fn(**feeds)
        out[f"batch_{batch}"] = round((time.perf_counter() - t0) * 1000.0 / calls, 2)
    return out


def _bodies(rows: list[dict[str, Any]], batch: int, count: int) -> list[bytes]:
    out = []
    for i in range(count):
        chunk = [rows[(i * batch + j) % len(rows)] for j in range(batch)]
        out.append(json.dumps({"instances": chunk}).encode("utf-8"))
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.serving",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--model-base-path", help="an exported model's base path (EXPORT/feseq)")
    source.add_argument(
        "--run-dir", help="a training run directory, exported to a temporary directory"
    )
    p.add_argument("--requests", type=int, default=1000, help="batch-1 requests (default: 1000)")
    p.add_argument("--concurrency", type=int, default=8, help="concurrent clients (default: 8)")
    p.add_argument(
        "--sequential-requests",
        type=int,
        default=200,
        help="batch-1 requests from one client (default: 200)",
    )
    p.add_argument(
        "--large-batch", type=int, default=256, help="rows per large request (default: 256)"
    )
    p.add_argument("--large-requests", type=int, default=48, help="large requests (default: 48)")
    p.add_argument(
        "--precision",
        choices=("float32", "mixed_bfloat16"),
        default="float32",
        help="compute precision of the untrained model (default: float32)",
    )
    p.add_argument(
        "--model-size",
        choices=sorted(MODEL_SIZES),
        default="paper",
        help="the untrained model: the paper's Ele.me configuration, or 'tiny' (d = 4, "
        "one interacting layer, MLP 16), whose figures are the server's own floor "
        "(default: paper)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--no-batching",
        action="store_true",
        help="run the server without --enable-batching (merging concurrent requests)",
    )
    p.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra argument for python -m export.devserver (repeatable)",
    )
    p.add_argument("--output", help="also write the results as JSON here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("requests", "concurrency", "large_batch", "large_requests"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1")
    import tensorflow as tf

    # The in-process model calls (the last phase) run as the server's: one thread per op.
    tf.config.threading.set_intra_op_parallelism_threads(1)
    with tempfile.TemporaryDirectory(prefix="feseq_serving_bench_") as tmp:
        if args.model_base_path:
            base, model_desc = args.model_base_path, args.model_base_path
        elif args.run_dir:
            from export.savedmodel import export_run

            base = os.path.dirname(export_run(args.run_dir, tmp))
            model_desc = f"run {args.run_dir}"
        else:
            print(f"exporting an untrained {args.model_size} FESeq (Ele.me shape)...", flush=True)
            base = _eleme_shaped_export(tmp, args.precision, size=args.model_size)
            what = "paper Ele.me configuration" if args.model_size == "paper" else "tiny model"
            model_desc = f"{what}, untrained weights, {args.precision}"
        from export.devserver import latest_version

        version, version_dir = latest_version(base)
        model = os.path.basename(os.path.normpath(base))
        rows = _request_rows(version_dir, max(args.large_batch, 512), args.seed)
        server_args = (
            ([] if args.no_batching else ["--enable-batching"])
            + SERVER_THREAD_ARGS
            + args.server_arg
        )
        proc, port = _start_server(base, server_args, tmp)
        try:
            small = _bodies(rows, 1, 500)
            large = _bodies(rows, args.large_batch, 8)
            _run_phase(port, model, small, 50, min(args.concurrency, 4))  # warm-up
            _run_phase(port, model, large, 4, 2)
            results = {
                "model": model_desc,
                "server_args": server_args,
                "cpu_count": os.cpu_count(),
                "load_average_1min": round(os.getloadavg()[0], 2),
                "batch_1": _run_phase(
                    port, model, small, args.requests, args.concurrency, proc.pid
                ),
                "batch_1_sequential": _run_phase(
                    port, model, small, args.sequential_requests, 1, proc.pid
                ),
                f"batch_{args.large_batch}": _run_phase(
                    port, model, large, args.large_requests, args.concurrency, proc.pid
                ),
            }
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        results["model_call_ms"] = _model_call_ms(version_dir, rows, (1, 8, args.large_batch))
    big = results[f"batch_{args.large_batch}"]
    big["rows_per_s"] = round(big["requests_per_s"] * args.large_batch, 1)
    errors = sum(r["errors"] for k, r in results.items() if k.startswith("batch_"))
    print(
        f"model: {results['model']}; loopback, {args.concurrency} concurrent clients, "
        f"{results['cpu_count']} CPUs, load average {results['load_average_1min']}; "
        f"server: python -m export.devserver {' '.join(results['server_args'])}"
    )
    print(
        f"{'phase':<22}{'requests':>9}{'clients':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'req/s':>9}{'rows/s':>10}{'server cpu ms/req':>19}{'errors':>8}"
    )
    for key, r in results.items():
        if not key.startswith("batch_"):
            continue
        rows_s = r.get("rows_per_s", r["requests_per_s"])
        cpu = r["server_cpu_ms_per_request"]
        print(
            f"{key:<22}{r['requests']:>9}{r['concurrency']:>8}{r['p50_ms']:>9}{r['p99_ms']:>9}"
            f"{r['max_ms']:>9}{r['requests_per_s']:>9}{rows_s:>10}{str(cpu):>19}{r['errors']:>8}"
        )
    calls = ", ".join(f"{k.split('_')[1]} rows {v} ms" for k, v in results["model_call_ms"].items())
    print(
        f"one serving_default call in-process, one thread per op (no HTTP, JSON, merging): {calls}"
    )
    print(json.dumps(results))
    if args.output:
        with open(args.output, "w") as fh:
            json.dump(results, fh, indent=2)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
