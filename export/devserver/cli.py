"""The command line of the development server: ``python -m export.devserver`` (or
``python -m export.serve``).

Under concurrent batch-1 load on a few cores, ``--enable-batching --intra-op-threads 1``
serves best: a model call has a fixed cost of a few ms of CPU whatever its rows, which
merging amortises, and a second thread per op only adds wake-ups at that size.
"""

from __future__ import annotations

import argparse
import logging
import sys

from export.devserver.batching import DEFAULT_BATCH_TIMEOUT_MICROS
from export.devserver.http_server import DEFAULT_PORT, make_http_server
from export.devserver.routing import (
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_REQUEST_BYTES,
    ModelServer,
)
from export.devserver.versions import DEFAULT_POLL_WAIT_SECONDS
from feseq_tf import cli, tf_logging

DEFAULT_GRPC_PORT = 8500  # TF Serving's --port


def build_parser() -> argparse.ArgumentParser:
    """The development server's argument parser."""
    p = argparse.ArgumentParser(
        prog="python -m export.devserver",
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
        "--grpc-port",
        type=int,
        default=DEFAULT_GRPC_PORT,
        help="gRPC port of TF Serving's PredictionService and ModelService (default: 8500; "
        "0 serves no gRPC)",
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
    p.add_argument(
        "--file-system-poll-wait-seconds",
        type=float,
        default=DEFAULT_POLL_WAIT_SECONDS,
        help="seconds between looks at the base path for a new version, which is loaded, "
        "warmed up and swapped in (as TF Serving's --file_system_poll_wait_seconds); "
        f"0 never looks (default: {DEFAULT_POLL_WAIT_SECONDS:g})",
    )
    p.add_argument("--verbose", action="store_true", help="log every request")
    return p


@cli.command
def main(argv: list[str] | None = None) -> int:
    """Serve the latest version under ``--model-base-path`` until interrupted; 0 on a
    clean stop, 2 (with a one-line error) when the model cannot be loaded."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.file_system_poll_wait_seconds >= 0:
        parser.error(
            f"--file-system-poll-wait-seconds must be >= 0, got {args.file_system_poll_wait_seconds}"
        )
    if not logging.getLogger().handlers:  # loads, warm-ups and version swaps
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    tf_logging.import_tensorflow()  # C++ logs: warnings and errors
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
            poll_wait_s=args.file_system_poll_wait_seconds,
        )
    except (FileNotFoundError, ValueError) as err:
        print(cli.error_line(err), file=sys.stderr)
        return 2
    httpd = make_http_server(model_server, args.host, args.port, verbose=args.verbose)
    host, port = httpd.server_address[:2]
    grpc_server = None
    if args.grpc_port:
        from export.devserver.grpc_server import make_grpc_server

        try:
            grpc_server, grpc_port = make_grpc_server(model_server, args.host, args.grpc_port)
        except OSError as err:
            print(cli.error_line(err), file=sys.stderr)
            httpd.server_close()
            model_server.close()
            return 2
        grpc_server.start()
        print(f"serving gRPC (TF Serving's PredictionService) at {host}:{grpc_port}", flush=True)
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
        if grpc_server is not None:
            grpc_server.stop(None)
        httpd.server_close()
        model_server.close()
    return 0
