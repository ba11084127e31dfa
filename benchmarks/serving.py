"""Latency and throughput of the exported FESeq model behind TF Serving's REST API.

    python -m benchmarks.serving [--model-base-path EXPORT/feseq | --run-dir RUN]
                                 [--requests 1000] [--concurrency 8] [--large-batch 256]
                                 [--duration 60 --rate 20 [--grpc] [--soak-only]]

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
   the model itself costs, apart from HTTP, JSON and merging;
5. with ``--duration`` (seconds), a soak phase (:mod:`benchmarks.serving_soak`): a fixed
   request rate (``--rate``) of mixed sizes (1 to 256 rows) with 5 % bad requests, every
   other one over gRPC with ``--grpc``, every answer checked, the server's RSS at start
   and end (``--soak-only`` runs it alone).

Rows are random raw rows of the model's request contract (vocabulary values with a
share of unseen ones, histories of 0 to max_len + 2 entries as '^'-joined strings).
With neither ``--model-base-path`` nor ``--run-dir`` the model is the paper's Ele.me
configuration (23 fields, d = 16, 8-head refiner, pooling 128, MLP 1024-512-256) with
untrained weights over an Ele.me-shaped dataset spec, exported to a temporary
directory: serving cost does not depend on the weights' values (``--model-size tiny``
exports a model too small to cost anything instead: its figures are the floor of the
server itself, HTTP, JSON, merging and the raw-feature encoder). Any request that does
not answer 200 counts as an error; the exit status is 1 when there was one (or when
the soak saw an unexpected answer or RSS growth of 10 % or more).

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

from benchmarks.http_exchange import Exchange, predict_requests
from benchmarks.serving_model import MODEL_SIZES, eleme_shaped_export, request_rows
from benchmarks.serving_soak import WARMUP_S as SOAK_WARMUP_S
from benchmarks.serving_soak import format_report, run_soak, soak_failed
from feseq_tf import cli

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER_START_TIMEOUT_S = 180
# One TensorFlow thread per op: the server's batch threads run merged calls side by
# side, and a model call over a few rows gains nothing from a second thread per op but
# its wake-ups (about 0.25 ms of CPU per batch-1 request with 8 clients on 2 cores).
SERVER_THREAD_ARGS = ["--intra-op-threads", "1"]


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
    prepared = predict_requests(port, model, bodies)
    rows = [len(json.loads(body)["instances"]) for body in bodies]
    selector = selectors.DefaultSelector()
    issued = 0  # requests handed to a connection so far
    in_flight: dict[Exchange, int] = {}  # connection -> index of its request

    def drop(conn: Exchange) -> None:
        in_flight.pop(conn, None)
        selector.unregister(conn.sock)
        conn.close()

    def issue(conn: Exchange | None) -> None:
        """Send the next request on ``conn`` (a new connection when None), or close it
        when all requests are out. A request that cannot be sent counts as an error."""
        nonlocal issued
        while issued < requests:
            i, issued = issued, issued + 1
            try:
                if conn is None:
                    conn = Exchange(port)
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

    def fail(conn: Exchange, message: str) -> None:
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
    p.add_argument(
        "--duration",
        type=float,
        default=0.0,
        help="seconds of the soak phase: --rate requests a second of 1 to --soak-max-rows "
        "rows, 5 %% bad, every answer checked, the server's RSS at start and end "
        "(default: 0, no soak)",
    )
    p.add_argument(
        "--rate", type=float, default=20.0, help="soak requests per second (default: 20)"
    )
    p.add_argument(
        "--soak-max-rows", type=int, default=256, help="most rows of a soak request (default: 256)"
    )
    p.add_argument(
        "--soak-warmup",
        type=float,
        default=SOAK_WARMUP_S,
        help="seconds of the same load before the soak's start RSS is read: the server's "
        "memory rises most in its first seconds of mixed-size load (new batch shapes) "
        f"(default: {SOAK_WARMUP_S:g})",
    )
    p.add_argument(
        "--grpc",
        action="store_true",
        help="the server also serves gRPC, and the soak sends every other request over it",
    )
    p.add_argument(
        "--soak-only",
        action="store_true",
        help="run the soak phase alone (not the closed-loop phases and the in-process calls)",
    )
    p.add_argument("--output", help="also write the results as JSON here")
    return p


def _free_port() -> int:
    """A TCP port nothing listens on now (for the server's gRPC port)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _closed_loop_phases(
    port: int, model: str, rows: list[dict[str, Any]], args: argparse.Namespace, pid: int
) -> dict[str, Any]:
    """Phases 1-3 (after a warm-up): batch 1 concurrent and sequential, large batches."""
    small = _bodies(rows, 1, 500)
    large = _bodies(rows, args.large_batch, 8)
    _run_phase(port, model, small, 50, min(args.concurrency, 4))  # warm-up
    _run_phase(port, model, large, 4, 2)
    return {
        "batch_1": _run_phase(port, model, small, args.requests, args.concurrency, pid),
        "batch_1_sequential": _run_phase(port, model, small, args.sequential_requests, 1, pid),
        f"batch_{args.large_batch}": _run_phase(
            port, model, large, args.large_requests, args.concurrency, pid
        ),
    }


def _print_phases(results: dict[str, Any]) -> None:
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


@cli.command
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("requests", "concurrency", "large_batch", "large_requests"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1")
    if args.duration < 0 or args.rate <= 0 or args.soak_warmup < 0:
        raise SystemExit("--duration and --soak-warmup must be >= 0 and --rate > 0")
    if args.soak_only and not args.duration:
        raise SystemExit("--soak-only needs --duration SECONDS")
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
            base = eleme_shaped_export(tmp, args.precision, size=args.model_size)
            what = "paper Ele.me configuration" if args.model_size == "paper" else "tiny model"
            model_desc = f"{what}, untrained weights, {args.precision}"
        from export.devserver import latest_version

        version, version_dir = latest_version(base)
        model = os.path.basename(os.path.normpath(base))
        rows = request_rows(version_dir, max(args.large_batch, 512), args.seed)
        grpc_port = _free_port() if args.grpc else 0
        server_args = (
            ([] if args.no_batching else ["--enable-batching"])
            + SERVER_THREAD_ARGS
            + ["--grpc-port", str(grpc_port)]
            + args.server_arg
        )
        proc, port = _start_server(base, server_args, tmp)
        results: dict[str, Any] = {
            "model": model_desc,
            "server_args": server_args,
            "cpu_count": os.cpu_count(),
            "load_average_1min": round(os.getloadavg()[0], 2),
        }
        try:
            if not args.soak_only:
                results.update(_closed_loop_phases(port, model, rows, args, proc.pid))
            if args.duration:
                results["soak"] = run_soak(
                    port,
                    model,
                    rows,
                    duration_s=args.duration,
                    rate=args.rate,
                    grpc_target=f"127.0.0.1:{grpc_port}" if grpc_port else None,
                    server_pid=proc.pid,
                    max_rows=args.soak_max_rows,
                    warmup_s=args.soak_warmup,
                    seed=args.seed,
                )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        if not args.soak_only:
            results["model_call_ms"] = _model_call_ms(version_dir, rows, (1, 8, args.large_batch))
    print(
        f"model: {results['model']}; loopback, {args.concurrency} concurrent clients, "
        f"{results['cpu_count']} CPUs, load average {results['load_average_1min']}; "
        f"server: python -m export.devserver {' '.join(results['server_args'])}"
    )
    errors = sum(r["errors"] for k, r in results.items() if k.startswith("batch_"))
    if not args.soak_only:
        big = results[f"batch_{args.large_batch}"]
        big["rows_per_s"] = round(big["requests_per_s"] * args.large_batch, 1)
        _print_phases(results)
    failed = False
    if "soak" in results:
        print(format_report(results["soak"]))
        failed = soak_failed(results["soak"])
    print(json.dumps(results))
    if args.output:
        with open(args.output, "w") as fh:
            json.dump(results, fh, indent=2)
    return 1 if errors or failed else 0


if __name__ == "__main__":
    sys.exit(main())
