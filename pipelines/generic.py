"""Impression table -> prepared dataset (TFRecord shards, vocabularies, dataset spec).

This is the one core every pipeline goes through (``eleme``, ``bundle``,
``synthetic`` and bring-your-own data). It takes an impression table (one row per
impression, a pandas DataFrame) and a :class:`PipelineSpec` naming its columns, and
writes the layout of ``docs/data_format.md``, composing the modules of the package:

1. clean (:mod:`pipelines.parsing`): rows without a user key or timestamp, or with a
   label other than 0/1, are dropped and counted by reason;
2. split by time, vocabularies and scaling from the training split, histories
   (:mod:`pipelines.transforms`);
3. write (:mod:`pipelines.writer`, :mod:`pipelines.tfrecord`)
   ``{split}/part-*.tfrecord``, ``vocab/<field>.txt``, ``dataset_spec.json`` and
   ``report.json`` (rows read, rows dropped by reason, samples, CTR and mean history
   length per split, vocabulary sizes, test OOV rates, timings). Training records are
   written in a seeded random order, valid and test records in time order.

The spec lives in :mod:`pipelines.spec`, the file readers in :mod:`pipelines.readers`;
their public names are importable from here too.

Command line::

    python -m pipelines.generic --input impressions.parquet --spec spec.yaml --out DIR
    python -m pipelines.generic --input next_day.csv --spec spec.yaml --extend DIR --out DIR2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from feseq_tf import cli, raw_format, schema
from pipelines import extend
from pipelines.parsing import (
    CleanedTable,
    categorical_codes,
    clean_table,
    numeric_values,
    timestamp_values,
)
from pipelines.progress import StepTimer
from pipelines.readers import read_table
from pipelines.spec import NON_SEQUENTIAL_ROLES, SEQUENTIAL_ROLES, FieldConfig, PipelineSpec
from pipelines.tfrecord import encode_examples, record_features, write_tfrecords
from pipelines.transforms import (
    build_vocabulary,
    encode_fields,
    history_columns,
    split_bounds,
    split_rows,
)
from pipelines.writer import PrepareResult, shard_paths, write_dataset, write_json

# Raw-value rules, under the names other modules have imported them by.
MISSING_TOKENS = raw_format.MISSING_TOKENS
FLOAT_PATTERN = raw_format.FLOAT_PATTERN

__all__ = [
    "FLOAT_PATTERN",
    "MISSING_TOKENS",
    "NON_SEQUENTIAL_ROLES",
    "SEQUENTIAL_ROLES",
    "FieldConfig",
    "PipelineSpec",
    "PrepareResult",
    "StepTimer",
    "build_dataset",
    "build_vocabulary",
    "categorical_codes",
    "encode_examples",
    "main",
    "numeric_values",
    "read_table",
    "record_features",
    "shard_paths",
    "split_bounds",
    "timestamp_values",
    "write_dataset",
    "write_tfrecords",
]


def build_dataset(
    df: pd.DataFrame,
    pipeline_spec: PipelineSpec,
    out_dir: str | None,
    *,
    progress: bool = True,
    read_report: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> PrepareResult:
    """Turn an impression table into a prepared dataset.

    Args:
        df: DataFrame with the spec's columns (any extra columns are ignored, except an
            ``oracle_prob`` column, which is carried into the records as the true click
            probability and sets ``has_oracle``). Row order is the tie-breaker of equal
            timestamps.
        pipeline_spec: PipelineSpec. Columns and options.
        out_dir: str or None. Output directory (created; earlier shards, vocabularies
            and spec in it are replaced). None computes the tables without writing.
        progress: bool. Print one line per step (rows, seconds) to stderr.
        read_report: dict or None. What the raw reader did (``rows_read``,
            ``rows_dropped``, ``timings_s``, anything else is kept under ``source``);
            merged into ``report.json``.
        extra: dict or None. Provenance stored in ``dataset_spec.json`` ``extra``.

    Returns:
        PrepareResult with the dataset spec, the report, the in-memory tables and the
        vocabularies.
    """
    ps = pipeline_spec
    missing_cols = [c for c in ps.required_columns if c not in df.columns]
    if missing_cols:
        raise ValueError(
            f"Input table lacks the columns {missing_cols} named by pipeline spec "
            f"{ps.name!r}; it has {list(df.columns)}."
        )
    timer = StepTimer(ps.name, progress)
    with timer.step("parse and clean") as info:
        info["rows"] = len(df)
        data = clean_table(df, ps)
    with timer.step("split by time") as info:
        info["rows"] = data.rows
        rows_of = split_rows(data.times, ps)
        train_mask = np.zeros(data.rows, dtype=bool)
        train_mask[rows_of["train"]] = True
    with timer.step("vocabularies and scaling") as info:
        info["rows"] = len(rows_of["train"])
        counts = extend.training_counts(ps, data, train_mask)  # the next extension's
        encoded, vocabs, field_specs = encode_fields(ps, data, train_mask)
    with timer.step("histories") as info:
        info["rows"] = data.rows
        out_rows = np.concatenate([rows_of[s] for s in schema.SPLITS])
        columns = history_columns(ps, data, encoded, out_rows)

    sizes = {s: len(rows_of[s]) for s in schema.SPLITS}
    spec = ps.dataset_spec(
        field_specs,
        has_oracle=data.oracle is not None,
        split_sizes=sizes,
        extra={"rows_in": data.rows_in, **dict(extra or {})},
    )
    tables = split_tables(columns, spec, sizes)
    report = _make_report(ps, spec, tables, data, read_report, timer)
    result = PrepareResult(spec=spec, report=report, tables=tables, vocabularies=vocabs)
    if out_dir is not None:
        with timer.step("write") as info:
            info["rows"] = data.rows
            write_dataset(result, out_dir, num_shards=ps.num_shards, records=True)
            extend.write_state(out_dir, df, ps, data, counts)
        report["timings_s"].update(_prefixed(timer.timings, "build"))
        report["timings_s"]["total"] = round(
            sum(v for k, v in report["timings_s"].items() if k != "total"), 3
        )
        write_json(os.path.join(out_dir, "report.json"), report)
        spec.save(out_dir)  # last: a dataset without a spec is incomplete
        timer.log(f"wrote {out_dir}: " + ", ".join(f"{s} {sizes[s]:,}" for s in schema.SPLITS))
    return result


def split_tables(
    columns: Mapping[str, np.ndarray], spec: schema.DatasetSpec, sizes: Mapping[str, int]
) -> dict[str, dict[str, np.ndarray]]:
    """The record features of rows laid out split after split (``sizes`` rows each), cut
    into ``split -> feature -> array``."""
    tables: dict[str, dict[str, np.ndarray]] = {}
    start = 0
    for s in schema.SPLITS:
        stop = start + sizes[s]
        tables[s] = {name: columns[name][start:stop] for name, _ in record_features(spec)}
        start = stop
    return tables


def _prefixed(timings: Mapping[str, float], prefix: str) -> dict[str, float]:
    return {f"{prefix}/{k}": v for k, v in timings.items()}


def _make_report(
    ps: PipelineSpec,
    spec: schema.DatasetSpec,
    tables: Mapping[str, Mapping[str, np.ndarray]],
    data: CleanedTable,
    read_report: Mapping[str, Any] | None,
    timer: StepTimer,
) -> dict[str, Any]:
    read_report = dict(read_report or {})
    all_dropped = dict(read_report.pop("rows_dropped", {}))
    for reason, count in data.dropped.items():
        all_dropped[reason] = all_dropped.get(reason, 0) + count
    timings = _prefixed(read_report.pop("timings_s", {}), "read")
    timings.update(_prefixed(timer.timings, "build"))
    rows_read = read_report.pop("rows_read", data.rows_in)
    report: dict[str, Any] = {
        "dataset": spec.name,
        "rows_read": int(rows_read),
        "rows_dropped": {k: int(v) for k, v in sorted(all_dropped.items())},
        "rows_dropped_total": int(sum(all_dropped.values())),
        "rows_kept": data.rows,
        "users": int(data.group_id.max()) + 1,
        "samples": {s: int(len(tables[s][spec.label])) for s in schema.SPLITS},
        "ctr": {
            s: (float(tables[s][spec.label].mean()) if len(tables[s][spec.label]) else None)
            for s in schema.SPLITS
        },
        "mean_hist_len": {
            s: (
                float(tables[s][schema.HIST_LEN].mean())
                if len(tables[s][schema.HIST_LEN])
                else None
            )
            for s in schema.SPLITS
        },
        "vocab_sizes": {f.name: f.vocab_size for f in spec.fields if f.is_categorical},
        "oov_rate_test": {
            f.name: (
                float(np.mean(tables["test"][f.name] == schema.OOV_ID))
                if len(tables["test"][f.name])
                else None
            )
            for f in spec.fields
            if f.is_categorical and not f.history_only  # its target is unknown by design
        },
        "min_count": ps.min_count,
        "max_len": ps.max_len,
        "timings_s": timings,
    }
    if read_report:
        report["source"] = read_report
    return report


@cli.command
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipelines.generic --input FILE --spec SPEC.yaml --out DIR``."""
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.generic",
        description="Turn a CSV/Parquet impression log into a prepared FESeq dataset "
        "(TFRecord shards, vocabularies, dataset_spec.json, report.json).",
    )
    parser.add_argument("--input", required=True, help="CSV (with header) or Parquet file.")
    parser.add_argument("--spec", required=True, help="Pipeline spec (YAML or JSON).")
    parser.add_argument("--out", required=True, help="Output dataset directory.")
    parser.add_argument(
        "--feedback",
        action="store_true",
        help="Add the labels of the history as the field 'feedback' (feedback_list; "
        "same as 'feedback: true' in the spec).",
    )
    parser.add_argument(
        "--extend",
        metavar="PREPARED_DIR",
        help="Prepare the input (a new day's impressions) on top of this prepared dataset: "
        "vocabularies grow append-only, scaling stays, histories continue "
        "(pipelines.extend; docs: the daily loop).",
    )
    parser.add_argument(
        "--refit-scaling",
        action="store_true",
        help="With --extend: widen the numeric fields' ranges to the new training rows.",
    )
    parser.add_argument("--quiet", action="store_true", help="No progress lines.")
    args = parser.parse_args(argv)
    if args.refit_scaling and not args.extend:
        parser.error("--refit-scaling needs --extend")
    spec = PipelineSpec.load(args.spec)
    if args.feedback:
        spec = dataclasses.replace(spec, feedback=True)
    start = time.perf_counter()
    df, read_report = read_table(args.input, spec.required_columns)
    read_report["timings_s"] = {"read": round(time.perf_counter() - start, 3)}
    if args.extend:
        result = extend.extend_dataset(
            df, spec, args.extend, args.out, refit_scaling=args.refit_scaling,
            progress=not args.quiet, read_report=read_report,
        )
    else:
        result = build_dataset(df, spec, args.out, progress=not args.quiet, read_report=read_report)
    print(json.dumps({"out": args.out, "samples": result.report["samples"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
