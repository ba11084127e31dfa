"""One worker against two local workers (MultiWorkerMirroredStrategy on loopback), same data.

    python -m benchmarks.multi_worker [--rows 40000] [--epochs 2] [--batch-size 512]

Prepares a synthetic dataset with as many training shards as workers, then trains FESeq
(``python -m feseq_tf.train``, no export) once in one process and once as two worker
processes on 127.0.0.1 with the same global batch, seed and epochs, and prints for each:
training samples/s over all workers (global batch x steps / seconds, first step
excluded), seconds of the whole run and the final validation AUC. On one machine the two
workers share its cores, so the figure shows the cost of synchronous all-reduce and of
every worker scoring the validation split, not a speed-up; across machines each worker
brings its own cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from feseq_tf import cli


def _train_args(args: argparse.Namespace, out: str, strategy: str) -> list[str]:
    return [
        sys.executable, "-m", "feseq_tf.train", "--dataset", args.data, "--output-dir", out,
        "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--seed", "1",
        "--strategy", strategy, "--no-export", "--no-attention-summaries", "--overwrite",
        "--set", "train.patience=100", *(x for s in args.set for x in ("--set", s)),
    ]


def run_workers(args: argparse.Namespace, workers: int) -> dict:
    """Train with ``workers`` processes; the chief's metrics plus the wall-clock seconds."""
    out = os.path.join(args.output_dir, f"workers{workers}")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    start = time.time()
    if workers == 1:
        procs = [subprocess.Popen(_train_args(args, out, "default"), env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)]
    else:
        from feseq_tf.distribute import loopback_workers

        hosts = loopback_workers(workers)
        procs = []
        for i in range(workers):
            tf_config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}}
            procs.append(subprocess.Popen(
                _train_args(args, out, "multi_worker"), env=dict(env, TF_CONFIG=json.dumps(tf_config)),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = [p.communicate()[0] for p in procs]
    seconds = time.time() - start
    if any(p.returncode for p in procs):
        for i, log in enumerate(logs):
            print(f"--- worker {i}\n" + "\n".join(log.splitlines()[-30:]), file=sys.stderr)
        raise SystemExit(f"the {workers}-worker run failed")
    with open(os.path.join(out, "metrics.json")) as fh:
        metrics = json.load(fh)
    return {"workers": workers, "seconds": seconds, **metrics}


@cli.command
def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=40_000, help="synthetic raw rows")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=512, help="global batch (both runs)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override of both runs (repeatable)")
    p.add_argument("--output-dir", default="runs/benchmark/multi_worker")
    args = p.parse_args(argv)
    if args.rows < 1000 or args.epochs < 1 or args.batch_size < 2:
        raise SystemExit("error: --rows >= 1000, --epochs >= 1 and --batch-size >= 2 please")

    from pipelines.synthetic import make_synthetic_dataset

    args.data = os.path.join(args.output_dir, "data")
    print(f"preparing {args.rows:,} synthetic rows (4 training shards) ...", flush=True)
    make_synthetic_dataset(args.data, num_rows=args.rows, num_shards=4, progress=False)
    results = []
    for workers in (1, 2):
        print(f"training with {workers} worker(s) ...", flush=True)
        results.append(run_workers(args, workers))

    base = results[0]["train_samples_per_s"]
    print()
    print(f"FESeq, synthetic {args.rows:,} rows, global batch {args.batch_size}, "
          f"{args.epochs} epoch(s), {os.cpu_count()} CPU cores on one machine")
    print(f"{'workers':>7s} {'train samples/s':>16s} {'x 1 worker':>10s} {'run s':>7s} "
          f"{'valid AUC':>9s} {'test AUC':>9s}")
    for r in results:
        print(f"{r['workers']:7d} {r['train_samples_per_s']:16.0f} "
              f"{r['train_samples_per_s'] / base:10.2f} {r['seconds']:7.0f} "
              f"{r['valid']['auc']:9.4f} {r['test']['auc']:9.4f}")
    return results


if __name__ == "__main__":
    main()
