"""GPU readiness check: one run that says whether FESeq trains, compiles and serves on a GPU.

    bash benchmarks/gpu_check.sh [--output-dir DIR] [--synthetic-rows N]
    bash benchmarks/gpu_check.sh --cpu-dry-run   # every step on the CPU, tiny, no GPU checks

Steps; each prints PASS, FAIL or SKIP and the run exits non-zero when one fails:

1. ``gpu``: TensorFlow sees a GPU (skipped in the dry run, which hides every GPU).
2. ``train``: ``python -m feseq_tf.train`` on the synthetic dataset for one epoch with
   XLA and float16, then without XLA, each in its own process and output directory;
   ``metrics.json`` must show the asked precision and XLA really in effect (Keras turns
   ``jit_compile`` off silently for models it cannot compile). Prints the training
   samples/s of both.
3. ``throughput``: ``benchmarks.train_throughput`` at the paper's Ele.me preset, batch
   4096, mixed_float16 with and without XLA; prints its table.
4. ``parity``: the XLA run's exported SavedModel scores the test split, written back as
   raw serving requests, once on the GPU and once on the CPU; the probabilities must
   agree within ``--atol`` (1e-3).
5. ``budget``: the whole run took less than 8 minutes (GPU run only).

The dry run (``--cpu-dry-run``) runs the same steps on the CPU with tiny data and a tiny
model: 3,000 synthetic rows, float32 training (CPUs emulate float16, at some 10 s a
step even for the tiny model), float32 throughput variants of the tiny model at batch 64
for one step, and the parity check with both sides on the CPU. It checks that the script
and everything it calls work, not the GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from feseq_tf import cli

BUDGET_S = 480.0  # the GPU run must finish within 8 minutes
DRY_RUN_ROWS = 3000
#: Divides the 2,395 training rows of the dry run's data: five equal steps, so XLA compiles
#: the training step once (a partial last batch compiles it again) and four steps are timed.
DRY_RUN_BATCH = 479
DRY_RUN_PRECISION = "off"  # float16 is emulated on CPUs: 10 s a step even for the tiny model
DRY_RUN_MODEL = (  # a tiny FESeq, as the tests train
    "model.mlp_units=[16]",
    "model.pooling_hidden=16",
    "model.embedding_dim=4",
    "model.transformer_heads=2",
)
TRAIN_RUNS = {"xla": "--jit", "no_xla": "--no-jit"}


class CheckFailed(Exception):
    """A step's check did not hold; the message says what was seen."""


@dataclasses.dataclass
class StepResult:
    name: str
    status: str  # "PASS", "FAIL" or "SKIP"
    detail: str
    seconds: float


@dataclasses.dataclass
class Settings:
    """What the steps need from the command line."""

    dry_run: bool
    output_dir: str
    data_dir: str
    synthetic_rows: int | None
    precision: str
    throughput_batch_size: int
    parity_rows: int
    atol: float
    timeout_s: int


def _import_tensorflow() -> Any:
    from feseq_tf import tf_logging

    tf_logging.import_tensorflow()  # without the start-up log lines
    import tensorflow as tf

    return tf


def check_gpu_visible(settings: Settings, state: dict[str, Any]) -> str:
    tf = _import_tensorflow()

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        raise CheckFailed("TensorFlow sees no GPU (tf.config.list_physical_devices('GPU') is "
                          "empty): check the driver (nvidia-smi) and the CUDA libraries")
    names = []
    for gpu in gpus:
        details = tf.config.experimental.get_device_details(gpu)
        capability = details.get("compute_capability")
        names.append(f"{details.get('device_name', gpu.name)}"
                     + (f" (compute capability {capability[0]}.{capability[1]})" if capability else ""))
    return f"{len(gpus)} GPU(s): " + ", ".join(names)


def _run_logged(what: str, argv: list[str], log_path: str, timeout_s: int) -> None:
    """Run a command with its output in ``log_path``; its tail in the error if it fails."""
    with open(log_path, "w") as log:
        try:
            proc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise CheckFailed(f"{what} ran over {timeout_s} s (log: {log_path})") from None
    if proc.returncode != 0:
        with open(log_path) as log:
            tail = log.read()[-2000:]
        raise CheckFailed(f"{what} exited with {proc.returncode} (log: {log_path}):\n{tail}")


def train_command(settings: Settings, run: str) -> list[str]:
    """The ``feseq_tf.train`` command line of one training run (``run``: xla or no_xla)."""
    argv = [sys.executable, "-m", "feseq_tf.train", "--dataset", "synthetic",
            "--data-dir", settings.data_dir, "--output-dir", os.path.join(settings.output_dir, run),
            "--epochs", "1", TRAIN_RUNS[run], "--mixed-precision", settings.precision,
            "--seed", "1", "--no-attention-summaries", "--overwrite"]
    if settings.synthetic_rows is not None:
        argv += ["--synthetic-rows", str(settings.synthetic_rows)]
    if run != "xla":
        argv.append("--no-export")  # the parity step uses the XLA run's export
    if settings.dry_run:  # equal batches: XLA compiles the training step once
        argv += ["--batch-size", str(DRY_RUN_BATCH)]
        for item in DRY_RUN_MODEL:
            argv += ["--set", item]
    return argv


def check_training(settings: Settings, state: dict[str, Any]) -> str:
    expected_policy = {"float16": "mixed_float16", "bfloat16": "mixed_bfloat16",
                       "off": "float32"}[settings.precision]
    lines = []
    for run in TRAIN_RUNS:
        out = os.path.join(settings.output_dir, run)
        _run_logged(f"training run {run}", train_command(settings, run), out + ".log",
                    settings.timeout_s)
        with open(os.path.join(out, "metrics.json")) as fh:
            metrics = json.load(fh)
        if metrics["precision"] != expected_policy:
            raise CheckFailed(f"{run}: trained in {metrics['precision']}, not {expected_policy}")
        if metrics["jit_compile_effective"] != (run == "xla"):
            raise CheckFailed(f"{run}: metrics.json says jit_compile_effective="
                              f"{metrics['jit_compile_effective']} (asked {TRAIN_RUNS[run]})")
        state[run] = metrics
        lines.append(f"{run:7s} {metrics['train_samples_per_s']:10.0f} training samples/s  "
                     f"test AUC {metrics['test']['auc']:.4f}  ({metrics['seconds']:.0f} s in all)")
    if not state["xla"].get("export_path"):
        raise CheckFailed("the XLA run wrote no SavedModel (metrics.json has no export_path)")
    speedup = state["xla"]["train_samples_per_s"] / state["no_xla"]["train_samples_per_s"]
    lines.append(f"XLA / no XLA: {speedup:.2f}x")
    return "\n".join(lines)


def throughput_argv(settings: Settings) -> list[str]:
    """The ``benchmarks.train_throughput`` arguments of the throughput step."""
    if settings.dry_run:
        return ["--variants", "float32:on", "float32:off", "--batch-size", "64",
                "--steps", "1", "--eval-batches", "1",
                *[a for item in DRY_RUN_MODEL for a in ("--set", item)]]
    return ["--variants", "mixed_float16:on", "mixed_float16:off",
            "--batch-size", str(settings.throughput_batch_size)]


def check_throughput(settings: Settings, state: dict[str, Any]) -> str:
    from benchmarks import train_throughput

    try:
        results = train_throughput.main(throughput_argv(settings))
    except SystemExit as err:  # it exits with a message when a variant fails
        raise CheckFailed(f"benchmarks.train_throughput failed: {err}") from None
    for r in results:
        if r["jit"] and not r["jit_effective"]:
            raise CheckFailed(f"{r['precision']} with XLA: Keras turned jit_compile off")
    return "\n".join(
        f"{r['precision']:14s} XLA {'on ' if r['jit'] else 'off'}  "
        f"{r['train_samples_per_s']:9.0f} training, {r['eval_samples_per_s']:9.0f} prediction "
        "samples/s" for r in results
    )


def raw_test_requests(run_dir: str, dataset_dir: str, num_rows: int) -> dict[str, np.ndarray]:
    """The first ``num_rows`` records of the test split written back as raw requests.

    Categorical ids become their vocabulary values (padding and OOV ids a missing-value
    token, which encodes to OOV again; hashed fields, whose values cannot be recovered,
    the id as a string), scaled numbers their raw values, and every history its
    ``hist_len`` most recent entries joined into one string (the serving contract of
    :mod:`export.contract`).

    Returns:
        Input name -> one value per row (strings as an object array).
    """
    from feseq_tf import raw_format
    from feseq_tf.data import make_dataset
    from feseq_tf.schema import HIST_LEN, DatasetSpec, read_vocab

    spec = DatasetSpec.load(run_dir)
    features, _ = next(iter(make_dataset(dataset_dir, "test", num_rows, spec=spec)))
    records = {name: value.numpy() for name, value in features.items()}
    lengths = records[HIST_LEN]

    def histories(values: np.ndarray) -> np.ndarray:  # left-padded, most recent last
        width = values.shape[1]
        return np.array([raw_format.join_history(row[width - n:] if n else [])
                         for row, n in zip(values, lengths, strict=True)], dtype=object)

    columns: dict[str, np.ndarray] = {}
    for f in spec.fields:
        if f.is_categorical and getattr(f, "hash_buckets", None):
            def decode(ids: np.ndarray) -> np.ndarray:
                return ids.astype(str).astype(object)
        elif f.is_categorical:
            table = np.array([raw_format.MISSING_ENTRY] * raw_format.FIRST_VOCABULARY_ID
                             + read_vocab(run_dir, f.name), dtype=object)

            def decode(ids: np.ndarray, table: np.ndarray = table) -> np.ndarray:
                return table[ids]
        else:
            def decode(scaled: np.ndarray, f: Any = f) -> np.ndarray:
                return f.min + scaled.astype(np.float64) * (f.max - f.min)
        if not f.history_only:
            columns[f.name] = decode(records[f.name])
        if f.sequential:
            columns[f.hist_name] = histories(decode(records[f.hist_name]))
    columns[spec.time_field] = records[spec.time_field]
    columns[spec.time_hist_name] = histories(records[spec.time_hist_name])
    return columns


def serve(export_path: str, requests: dict[str, np.ndarray], device: str,
          batch_size: int = 4096) -> np.ndarray:
    """Probabilities of the SavedModel's serving signature, loaded and run on ``device``."""
    tf = _import_tensorflow()

    with tf.device(device):
        signature = tf.saved_model.load(export_path).signatures["serving_default"]
        inputs = signature.structured_input_signature[1]
        missing = sorted(set(inputs) - set(requests))
        if missing:
            raise CheckFailed(f"the serving signature takes {missing}, which the requests lack")
        rows = len(next(iter(requests.values())))
        out = []
        for start in range(0, rows, batch_size):
            feed = {name: tf.constant(requests[name][start:start + batch_size], dtype=ts.dtype)
                    for name, ts in inputs.items()}
            out.append(signature(**feed)["probability"].numpy().reshape(-1))
    return np.concatenate(out).astype(np.float64)


def check_parity(settings: Settings, state: dict[str, Any]) -> str:
    _import_tensorflow()
    metrics = state["xla"]
    run_dir = os.path.join(settings.output_dir, "xla")
    requests = raw_test_requests(run_dir, metrics["dataset_dir"], settings.parity_rows)
    reference = serve(metrics["export_path"], requests, "/CPU:0")
    device = "/CPU:0" if settings.dry_run else "/GPU:0"
    got = serve(metrics["export_path"], requests, device)
    if got.shape != reference.shape or not np.isfinite(got).all():
        raise CheckFailed(f"{device} gave {got.shape[0]} probabilities ({np.isfinite(got).sum()} "
                          f"finite) for {reference.shape[0]} requests")
    diff = float(np.max(np.abs(got - reference)))
    detail = (f"{len(reference)} test rows, {metrics['export_path']}: max |{device} - /CPU:0| = "
              f"{diff:.2e} (tolerance {settings.atol:g})")
    if not diff <= settings.atol:
        raise CheckFailed(detail)
    return detail


STEPS: dict[str, Callable[[Settings, dict[str, Any]], str]] = {
    "gpu": check_gpu_visible,
    "train": check_training,
    "throughput": check_throughput,
    "parity": check_parity,
}
NEEDS = {"parity": "train"}  # a step skipped when the step it needs did not pass


def _print_result(r: StepResult) -> None:
    head, *rest = r.detail.splitlines() or [""]
    print(f"[{r.status}] {r.name}: {head} ({r.seconds:.0f} s)", flush=True)
    for line in rest:
        print(f"         {line}", flush=True)


def run_checks(settings: Settings) -> list[StepResult]:
    """Run every step in order; a failing step does not stop the ones that do not need it."""
    start = time.perf_counter()
    results: list[StepResult] = []
    state: dict[str, Any] = {}
    passed: set[str] = set()
    for name, step in STEPS.items():
        t0 = time.perf_counter()
        if name == "gpu" and settings.dry_run:
            r = StepResult(name, "SKIP", "dry run on the CPU: no GPU check", 0.0)
        elif "gpu" in {x.name for x in results if x.status == "FAIL"}:
            r = StepResult(name, "SKIP", "no GPU (use --cpu-dry-run to check the steps on the CPU)", 0.0)
        elif NEEDS.get(name) and NEEDS[name] not in passed:
            r = StepResult(name, "SKIP", f"needs the {NEEDS[name]} step, which did not pass", 0.0)
        else:
            print(f"[....] {name} ...", flush=True)
            try:
                r = StepResult(name, "PASS", step(settings, state), 0.0)
                passed.add(name)
            except CheckFailed as err:
                r = StepResult(name, "FAIL", str(err), 0.0)
            except Exception as err:  # noqa: BLE001  (any error fails the step, not the run)
                r = StepResult(name, "FAIL", f"{type(err).__name__}: {err}", 0.0)
        r.seconds = time.perf_counter() - t0
        results.append(r)
        _print_result(r)
    total = time.perf_counter() - start
    if settings.dry_run:
        budget = StepResult("budget", "SKIP", f"dry run: {total:.0f} s in all", 0.0)
    else:
        ok = total < BUDGET_S
        budget = StepResult("budget", "PASS" if ok else "FAIL",
                            f"{total:.0f} s in all (limit {BUDGET_S:.0f} s)", 0.0)
    results.append(budget)
    _print_result(budget)
    return results


def summary(results: list[StepResult]) -> str:
    failed = [r.name for r in results if r.status == "FAIL"]
    counts = ", ".join(f"{sum(r.status == s for r in results)} {s}" for s in ("PASS", "FAIL", "SKIP"))
    verdict = f"FAILED: {', '.join(failed)}" if failed else "all checks passed"
    return f"gpu_check summary: {counts}; {verdict}"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu-dry-run", action="store_true",
                   help="run every step on the CPU (GPUs hidden) with tiny data; no GPU checks")
    p.add_argument("--output-dir", help="where the runs and logs go (default: runs/gpu_check, "
                   "runs/gpu_check_dry for the dry run); its xla/ and no_xla/ runs are replaced")
    p.add_argument("--data-dir", help="where the synthetic dataset is prepared (default: the "
                   "training CLI's, data/; OUTPUT_DIR/data for the dry run)")
    p.add_argument("--synthetic-rows", type=_positive_int,
                   help=f"rows of the synthetic dataset (default: the generator's default; "
                        f"{DRY_RUN_ROWS} in the dry run)")
    p.add_argument("--throughput-batch-size", type=_positive_int, default=4096,
                   help="batch size of the Ele.me-preset throughput step (default 4096)")
    p.add_argument("--parity-rows", type=_positive_int, default=2048,
                   help="test rows scored on both devices (default 2048, fewer if the split is "
                        "smaller; the CPU side computes float16 in emulation, slowly)")
    p.add_argument("--atol", type=_positive_float, default=1e-3,
                   help="largest allowed difference of a probability between GPU and CPU")
    p.add_argument("--timeout-s", type=_positive_int, default=420,
                   help="limit of each training process in seconds (default 420)")
    return p


def settings_from_args(args: argparse.Namespace) -> Settings:
    dry = args.cpu_dry_run
    output_dir = os.path.abspath(args.output_dir or os.path.join(
        "runs", "gpu_check_dry" if dry else "gpu_check"))
    if args.data_dir:
        data_dir = args.data_dir
    elif dry:
        data_dir = os.path.join(output_dir, "data")
    else:
        from feseq_tf.train import DEFAULT_DATA_DIR

        data_dir = DEFAULT_DATA_DIR
    rows = args.synthetic_rows if args.synthetic_rows or not dry else DRY_RUN_ROWS
    return Settings(dry_run=dry, output_dir=output_dir, data_dir=os.path.abspath(data_dir),
                    synthetic_rows=rows, precision=DRY_RUN_PRECISION if dry else "float16",
                    throughput_batch_size=args.throughput_batch_size,
                    parity_rows=args.parity_rows, atol=args.atol, timeout_s=args.timeout_s)


@cli.command
def main(argv: list[str] | None = None) -> int:
    """Run the checks; returns the exit status (0 when none failed)."""
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.cpu_dry_run:  # hidden before TensorFlow starts here or in a child process
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    settings = settings_from_args(args)
    os.makedirs(settings.output_dir, exist_ok=True)
    mode = "CPU dry run" if settings.dry_run else "GPU run"
    print(f"gpu_check ({mode}): outputs and logs in {settings.output_dir}", flush=True)
    results = run_checks(settings)
    print(summary(results), flush=True)
    return 1 if any(r.status == "FAIL" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
