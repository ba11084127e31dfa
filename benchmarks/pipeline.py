"""Throughput of the data pipeline at Ele.me scale: raw files -> TFRecords -> reader.

    python -m benchmarks.pipeline [--rows 1200000] [--work DIR] [--generator auto] [--beam]

Three phases, each in its own process so that its peak memory is measured alone
(``os.wait4`` returns the child's ``ru_maxrss``):

1. ``generate``: raw day files in the Ele.me layout (``pipelines.synthetic`` when it
   is available, else random rows with long-tailed ids written by
   :func:`pipelines.eleme.write_raw_csv`); not timed as part of the pipeline;
2. ``prepare``: ``python -m pipelines.eleme --sample-frac 1`` (raw -> TFRecords, the
   whole pipeline: read and check, histories, vocabularies, serialisation);
3. ``read``: one pass over the training split with ``feseq_tf.data.make_dataset``
   (batch 4096, training order) or, without it, a plain TFRecordDataset -> batch ->
   parse_example -> prefetch loop.

With ``--beam``, the same log as an impression table in Parquet shards (the Ele.me
rows after their raw-file checks; not timed) is prepared twice more, each in its own
process: by :func:`pipelines.generic.build_dataset` (one machine: read the shards,
concatenate, prepare) and by the Beam pipeline (:mod:`pipelines.beam`, DirectRunner), so
that their time and peak memory stand side by side.

Prints rows/s, seconds and peak memory per phase and the reader's examples/s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from feseq_tf import cli

# The fewest raw rows the synthetic generator writes.
MIN_ROWS = 50


def _run_child(args: Sequence[str]) -> dict[str, Any]:
    """Run ``python -m benchmarks.pipeline <args>``; its JSON result plus peak RSS."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.pipeline", *args], stdout=subprocess.PIPE, text=True
    )
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"phase {args[1]!r} failed with exit code {proc.returncode} (its error is above)")
    result = json.loads(out.strip().splitlines()[-1])
    result["wall_s"] = round(time.perf_counter() - start, 2)
    result["peak_rss_gib"] = round(usage.ru_maxrss / 2**20, 3)  # ru_maxrss is in KiB
    return result


def _random_raw(raw_dir: str, rows: int, seed: int) -> None:
    """Random Ele.me-layout rows: Zipf-like ids, ~1/3 of rows per day file."""
    import numpy as np
    import pandas as pd

    from pipelines import eleme

    rng = np.random.default_rng(seed)
    pool = np.array(
        ["^".join(map(str, rng.integers(1, 10**6, rng.integers(0, 30)))) for _ in range(2000)]
    )
    for d, day in enumerate(eleme.DEFAULT_DAYS):
        n = rows // 3 + (1 if d < rows % 3 else 0)

        def zipf(k: int, n: int = n) -> np.ndarray:
            return (rng.zipf(1.2, n) % k).astype(np.int64)

        frame = {
            "label": (rng.random(n) < 0.03).astype(np.int64),
            "user_id": zipf(400_000),
            "gender": rng.integers(0, 3, n),
            "visit_city": zipf(300),
            "avg_price": rng.gamma(2.0, 20.0, n).round(2),
            "is_super_vip": rng.integers(0, 2, n),
            "ctr_30": rng.random(n).round(4),
            "ord_30": rng.integers(0, 60, n),
            "total_amt_30": rng.gamma(2.0, 500.0, n).round(2),
            "shop_id": zipf(100_000),
            "item_id": zipf(450_000),
            "city_id": zipf(300),
            "district_id": zipf(1500),
            "shop_aoi_id": zipf(8000),
            "shop_geohash_6": zipf(3000),
            "shop_geohash_12": zipf(60_000),
            "brand_id": zipf(5000),
            "category_1_id": zipf(40),
            "merge_standard_food_id": zipf(900),
            "rank_7": rng.integers(0, 100, n),
            "rank_30": rng.integers(0, 100, n),
            "rank_90": rng.integers(0, 100, n),
            "times": (d * 1440 + rng.integers(0, 1440, n)).astype(np.int64),
            "hours": rng.integers(0, 24, n),
            "time_type": rng.integers(0, 5, n),
            "weekdays": np.full(n, d + 1),
            "geohash12": zipf(200_000),
        }
        for col in eleme.LIST_COLUMNS:
            frame[col] = pool[rng.integers(0, len(pool), n)]
        eleme.write_raw_csv(
            pd.DataFrame(frame), os.path.join(raw_dir, f"{day}.csv"), oracle=rng.random(n)
        )


def phase_generate(raw_dir: str, rows: int, generator: str, seed: int) -> dict[str, Any]:
    start = time.perf_counter()
    used = generator
    if generator in ("auto", "synthetic"):
        try:
            from pipelines import synthetic

            synthetic.generate(raw_dir, num_rows=rows, seed=seed)
            used = "synthetic"
        except ImportError:
            if generator == "synthetic":
                raise
            used = "random"
    if used == "random":
        _random_raw(raw_dir, rows, seed)
    size = sum(os.path.getsize(os.path.join(raw_dir, f)) for f in os.listdir(raw_dir))
    return {"generator": used, "seconds": round(time.perf_counter() - start, 2), "raw_bytes": size}


def phase_prepare(raw_dir: str, out_dir: str) -> dict[str, Any]:
    from pipelines import eleme

    start = time.perf_counter()
    result = eleme.prepare(raw_dir, out_dir, sample_frac=1.0, progress=True)
    seconds = time.perf_counter() - start
    return {
        "seconds": round(seconds, 2),
        "rows_read": result.report["rows_read"],
        "rows_per_s": round(result.report["rows_read"] / seconds),
        "samples": result.report["samples"],
        "rows_dropped_total": result.report["rows_dropped_total"],
        "timings_s": result.report["timings_s"],
    }


TABLE_SHARDS = 8


def phase_table(raw_dir: str, table_dir: str, seed: int) -> dict[str, Any]:
    """The Ele.me rows after their raw-file checks -> Parquet shards and a pipeline spec."""
    import numpy as np

    from pipelines import eleme

    df, _ = eleme.read_days(raw_dir, eleme.DEFAULT_DAYS, sample_frac=1.0, seed=seed, progress=False)
    os.makedirs(table_dir, exist_ok=True)
    bounds = np.linspace(0, len(df), TABLE_SHARDS + 1).round().astype(int)
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        df.iloc[a:b].to_parquet(os.path.join(table_dir, f"part-{i:05d}.parquet"), index=False)
    eleme.pipeline_spec(seed=seed).save(os.path.join(table_dir, "spec.yaml"))
    return {"rows": len(df), "shards": TABLE_SHARDS}


def _prepared(start: float, report: dict[str, Any]) -> dict[str, Any]:
    seconds = time.perf_counter() - start
    return {
        "seconds": round(seconds, 2),
        "rows_per_s": round(report["rows_read"] / seconds),
        "samples": report["samples"],
    }


def phase_table_generic(table_dir: str, out_dir: str) -> dict[str, Any]:
    """The single-machine pipeline on the shards: read, concatenate, prepare."""
    import glob

    import pandas as pd

    from pipelines import generic
    from pipelines.spec import PipelineSpec

    start = time.perf_counter()
    spec = PipelineSpec.load(os.path.join(table_dir, "spec.yaml"))
    paths = sorted(glob.glob(os.path.join(table_dir, "part-*.parquet")))
    df = pd.concat([generic.read_table(p, spec.required_columns)[0] for p in paths])
    result = generic.build_dataset(df.reset_index(drop=True), spec, out_dir, progress=False)
    return _prepared(start, result.report)


def phase_table_beam(table_dir: str, out_dir: str) -> dict[str, Any]:
    """The Beam pipeline (DirectRunner) on the shards."""
    from pipelines.beam.pipeline import run
    from pipelines.spec import PipelineSpec

    start = time.perf_counter()
    spec = PipelineSpec.load(os.path.join(table_dir, "spec.yaml"))
    report = run(os.path.join(table_dir, "part-*.parquet"), spec, out_dir)
    return _prepared(start, report)


def phase_read(out_dir: str, batch_size: int) -> dict[str, Any]:
    import tensorflow as tf

    from feseq_tf import schema

    try:
        from feseq_tf.data import make_dataset

        ds = make_dataset(out_dir, "train", batch_size, training=True, seed=0)
        reader = "feseq_tf.data.make_dataset"
    except ImportError:
        spec = schema.DatasetSpec.load(out_dir)
        files = sorted(tf.io.gfile.glob(os.path.join(out_dir, "train", "*.tfrecord")))
        features = spec.tfrecord_features()
        ds = (
            tf.data.TFRecordDataset(files)
            .batch(batch_size)
            .map(lambda s: tf.io.parse_example(s, features), num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE)
        )
        reader = "TFRecordDataset -> batch -> parse_example"

    def count(batch: Any) -> int:
        first = batch[1] if isinstance(batch, tuple) else next(iter(batch.values()))
        return int(first.shape[0])

    it = iter(ds)
    examples = count(next(it))  # the first batch pays for graph building
    start = time.perf_counter()
    timed = 0
    for batch in it:
        timed += count(batch)
    seconds = time.perf_counter() - start
    return {
        "reader": reader,
        "batch_size": batch_size,
        "examples": examples + timed,
        "seconds": round(seconds, 2),
        "examples_per_s": round(timed / seconds) if seconds > 0 else None,
    }


@cli.command
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.pipeline", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--rows", type=int, default=1_200_000, help="Raw rows over the three day files."
    )
    parser.add_argument(
        "--work", default=None, help="Working directory (default: a temporary one)."
    )
    parser.add_argument("--generator", choices=("auto", "synthetic", "random"), default="auto")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--keep", action="store_true", help="Keep the working directory.")
    parser.add_argument(
        "--beam",
        action="store_true",
        help="Also prepare the log as Parquet shards with the single-machine and the Beam "
        "pipeline (DirectRunner), side by side.",
    )
    phases = ("generate", "prepare", "read", "table", "generic", "beam")
    parser.add_argument("--phase", choices=phases, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rows < MIN_ROWS:
        raise ValueError(f"--rows must be at least {MIN_ROWS}, got {args.rows}.")

    if args.phase:  # child process
        raw_dir = os.path.join(args.work, "raw")
        out_dir = os.path.join(args.work, "prepared")
        table_dir = os.path.join(args.work, "table")
        if args.phase == "generate":
            os.makedirs(raw_dir, exist_ok=True)
            result = phase_generate(raw_dir, args.rows, args.generator, args.seed)
        elif args.phase == "prepare":
            result = phase_prepare(raw_dir, out_dir)
        elif args.phase == "table":
            result = phase_table(raw_dir, table_dir, args.seed)
        elif args.phase == "generic":
            result = phase_table_generic(table_dir, os.path.join(args.work, "prepared_generic"))
        elif args.phase == "beam":
            result = phase_table_beam(table_dir, os.path.join(args.work, "prepared_beam"))
        else:
            result = phase_read(out_dir, args.batch_size)
        print(json.dumps(result))
        return 0

    work = args.work or tempfile.mkdtemp(prefix="feseq_pipeline_bench_")
    os.makedirs(work, exist_ok=True)
    common = ["--work", work, "--rows", str(args.rows), "--seed", str(args.seed)]
    try:
        gen = _run_child(["--phase", "generate", "--generator", args.generator, *common])
        prep = _run_child(["--phase", "prepare", *common])
        read = _run_child(["--phase", "read", "--batch-size", str(args.batch_size), *common])
        side = {}
        if args.beam:
            side["table"] = _run_child(["--phase", "table", *common])
            side["generic"] = _run_child(["--phase", "generic", *common])
            side["beam"] = _run_child(["--phase", "beam", *common])
    finally:
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"raw rows              {args.rows:,} ({gen['generator']} generator, "
        f"{gen['raw_bytes'] / 2**20:,.0f} MiB of CSV, generated in {gen['seconds']:.1f}s)"
    )
    print(
        f"raw -> TFRecords      {prep['seconds']:.1f}s  ({prep['rows_per_s']:,} rows/s), "
        f"peak RSS {prep['peak_rss_gib']:.2f} GiB, process wall {prep['wall_s']:.1f}s"
    )
    print(f"  samples             {prep['samples']}  (dropped {prep['rows_dropped_total']:,})")
    for step, sec in prep["timings_s"].items():
        print(f"    {step:<34s}{sec:8.2f}s")
    print(
        f"reader                {read['examples_per_s']:,} examples/s ({read['reader']}, "
        f"batch {read['batch_size']}, {read['examples']:,} examples), peak RSS {read['peak_rss_gib']:.2f} GiB"
    )
    if side:
        print(
            f"Parquet table         {side['table']['rows']:,} rows in {side['table']['shards']} shards"
        )
        for name, label in (("generic", "single machine"), ("beam", "Beam DirectRunner")):
            r = side[name]
            print(
                f"  {label:<20s}{r['seconds']:8.1f}s  ({r['rows_per_s']:,} rows/s), "
                f"peak RSS {r['peak_rss_gib']:.2f} GiB, samples {r['samples']}"
            )
    print(json.dumps({"generate": gen, "prepare": prep, "read": read, **side}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
