"""Ele.me (Tianchi dataset 131047) raw files -> prepared dataset.

The raw day files and their checks are described in :mod:`pipelines.eleme_raw` (its
names are importable from here too). Then the paper's preprocessing (configurable
through :func:`prepare`):

1. keep a seeded random ``sample_frac`` of the lines of each day file (the paper keeps
   1/3 of D1_0, D3_1 and D5_0): every line is kept with probability ``sample_frac``,
   drawn from a generator seeded by ``seed`` and the file name;
2. drop rows with a missing value in any non-list column (``missing:<column>``; like the
   reference preprocessing this includes ``brand_id`` and ``merge_standard_food_id``,
   which are then dropped) or with an "unknown" code (``unknown_code:<column>``:
   ``gender`` -99, -1 in the id/rank columns of :data:`UNKNOWN_CODES`);
3. the ``*_list`` columns are not used: histories are rebuilt from the impressions
   themselves by :func:`pipelines.generic.build_dataset` (group by ``user_id``, sort by
   ``times``, up to ``max_len`` previous impressions, 8:1:1 split by time, vocabularies
   with ``min_count`` from the training split).

A raw file's oracle side file ``X.oracle.csv`` (see :mod:`pipelines.eleme_raw`) is
carried into the records as ``oracle_prob``, aligned by raw line number.

Command line::

    python -m pipelines.eleme --raw-dir RAW --out DATA/eleme
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from feseq_tf import cli, schema
from pipelines import extend, generic, parsing
from pipelines.eleme_raw import (
    DEFAULT_DAYS,
    DROPPED_COLUMNS,
    LABEL_COLUMN,
    LIST_COLUMNS,
    NUMERIC_COLUMNS,
    ORACLE_SUFFIX,
    RAW_COLUMNS,
    TIANCHI_URL,
    TIME_COLUMN,
    UNKNOWN_CODES,
    USED_COLUMNS,
    USER_KEY,
    RawFile,
    missing_files_message,
    oracle_path,
    raw_paths,
    read_oracle,
    read_raw_file,
    write_raw_csv,
)
from pipelines.progress import StepTimer
from pipelines.spec import FieldConfig, PipelineSpec
from pipelines.writer import PrepareResult

__all__ = [
    "DATASET_NAME",
    "DEFAULT_DAYS",
    "DROPPED_COLUMNS",
    "FIELD_LAYOUT",
    "LABEL_COLUMN",
    "LIST_COLUMNS",
    "NON_SEQUENTIAL_FIELDS",
    "NUMERIC_COLUMNS",
    "ORACLE_SUFFIX",
    "RAW_COLUMNS",
    "SEQUENTIAL_FIELDS",
    "TIANCHI_URL",
    "TIME_COLUMN",
    "UNKNOWN_CODES",
    "USED_COLUMNS",
    "USER_KEY",
    "RawFile",
    "main",
    "missing_files_message",
    "oracle_path",
    "pipeline_spec",
    "prepare",
    "raw_paths",
    "read_days",
    "read_oracle",
    "read_raw_file",
    "write_raw_csv",
]

DATASET_NAME = "eleme"

#: The 9 non-sequential fields, in the model's field order.
NON_SEQUENTIAL_FIELDS: tuple[FieldConfig, ...] = (
    FieldConfig("user_id", "categorical", "user"),
    FieldConfig("gender", "categorical", "user"),
    FieldConfig("visit_city", "categorical", "user"),
    FieldConfig("is_super_vip", "categorical", "user"),
    FieldConfig("geohash12", "categorical", "context"),
    FieldConfig("avg_price", "numeric", "user"),
    FieldConfig("ctr_30", "numeric", "user"),
    FieldConfig("ord_30", "numeric", "user"),
    FieldConfig("total_amt_30", "numeric", "user"),
)
#: The 14 sequential fields: 11 describing the item, 3 the impression's time context.
SEQUENTIAL_FIELDS: tuple[FieldConfig, ...] = tuple(
    FieldConfig(name, "categorical", "item")
    for name in """
    shop_id item_id city_id district_id shop_aoi_id shop_geohash_6 shop_geohash_12
    category_1_id rank_7 rank_30 rank_90
    """.split()
) + tuple(
    FieldConfig(name, "categorical", "context") for name in ("hours", "time_type", "weekdays")
)

#: (name, role, type, sequential) of every field, in the dataset spec's field order.
FIELD_LAYOUT: tuple[tuple[str, str, str, bool], ...] = tuple(
    (f.name, f.role, f.type, False) for f in NON_SEQUENTIAL_FIELDS
) + tuple((f.name, f.role, f.type, True) for f in SEQUENTIAL_FIELDS)


def pipeline_spec(
    *,
    max_len: int = 10,
    min_count: int = 10,
    time_unit: float = 1.0,
    time_clip: int = 4000,
    num_shards: int | None = None,
    seed: int = 2024,
    name: str = DATASET_NAME,
    feedback: bool = False,
) -> PipelineSpec:
    """The Ele.me layout as a generic pipeline spec (``feedback``: add the labels of the
    history, see :class:`pipelines.generic.PipelineSpec`)."""
    return PipelineSpec(
        name=name,
        user_key=USER_KEY,
        timestamp=TIME_COLUMN,
        label=LABEL_COLUMN,
        non_sequential_fields=NON_SEQUENTIAL_FIELDS,
        sequential_fields=SEQUENTIAL_FIELDS,
        max_len=max_len,
        min_count=min_count,
        split_ratios=(8, 1, 1),
        time_unit=time_unit,
        time_clip=time_clip,
        num_shards=num_shards,
        seed=seed,
        feedback=feedback,
    )


def read_days(
    raw_dir: str,
    days: Sequence[str] = DEFAULT_DAYS,
    *,
    sample_frac: float = 1 / 3,
    seed: int = 2024,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read, check and sample the day files into one impression table.

    Returns:
        (DataFrame with the used columns, plus ``oracle_prob`` when every day file has
        an oracle side file; read report for :func:`generic.build_dataset`).
    """
    paths = raw_paths(raw_dir, days)
    oracles = [oracle_path(p) for p in paths]
    has_oracle = [os.path.isfile(p) for p in oracles]
    if any(has_oracle) and not all(has_oracle):
        lacking = [os.path.basename(o) for o, h in zip(oracles, has_oracle, strict=True) if not h]
        raise ValueError(f"Oracle side files exist for some day files but not for {lacking}.")
    timer = StepTimer(DATASET_NAME, progress)
    tables = []
    oracle_parts = []
    files = []
    dropped: dict[str, int] = {}
    rows_read = 0
    for path, opath, with_oracle in zip(paths, oracles, has_oracle, strict=True):
        with timer.step(f"read {os.path.basename(path)}") as info:
            raw = read_raw_file(path, sample_frac=sample_frac, seed=seed)
            info["rows"] = raw.lines
            if with_oracle:
                oracle_parts.append(read_oracle(opath, raw.lines)[raw.line_numbers])
        tables.append(raw.table)
        rows_read += raw.lines
        for reason, count in raw.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + count
        files.append(
            {
                "file": os.path.basename(path),
                "lines": raw.lines,
                "sampled": raw.sampled,
                "kept": raw.table.num_rows,
                "dropped": dict(sorted(raw.dropped.items())),
                "oracle": os.path.basename(opath) if with_oracle else None,
            }
        )
    with timer.step("convert") as info:
        table = pa.concat_tables(tables).drop_columns(list(DROPPED_COLUMNS))
        info["rows"] = table.num_rows
        data: dict[str, Any] = {}
        for name in table.column_names:
            col = table.column(name).combine_chunks()
            if name in NUMERIC_COLUMNS:
                data[name] = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
            elif name == TIME_COLUMN:
                data[name] = parsing.integer_timestamps(col)
            else:
                data[name] = pd.Series(pd.arrays.ArrowExtensionArray(col), copy=False)
        df = pd.DataFrame(data)
        if all(has_oracle):
            df[schema.ORACLE_KEY] = np.concatenate(oracle_parts)
    report = {
        "rows_read": rows_read,
        "rows_sampled": int(sum(f["sampled"] for f in files)),
        "rows_sampled_out": int(rows_read - sum(f["sampled"] for f in files)),
        "rows_dropped": dict(sorted(dropped.items())),
        "sample_frac": sample_frac,
        "files": files,
        "timings_s": dict(timer.timings),
    }
    return df, report


def prepare(
    raw_dir: str,
    out_dir: str | None,
    *,
    days: Sequence[str] = DEFAULT_DAYS,
    sample_frac: float = 1 / 3,
    max_len: int = 10,
    min_count: int = 10,
    seed: int = 2024,
    time_unit: float = 1.0,
    time_clip: int = 4000,
    num_shards: int | None = None,
    progress: bool = True,
    name: str = DATASET_NAME,
    feedback: bool = False,
    extend_from: str | None = None,
    refit_scaling: bool = False,
) -> PrepareResult:
    """Raw Ele.me day files -> prepared dataset in ``out_dir`` (see ``docs/data_format.md``).

    Args:
        raw_dir: str. Directory holding the day files (``D1_0.csv``...).
        out_dir: str or None. Output directory; None only computes the tables.
        days: sequence of str. Day files to read, without ``.csv``.
        sample_frac: float. Fraction of each day file's lines kept (paper: 1/3).
        max_len: int. History length L.
        min_count: int. Vocabulary minimum count in the training split.
        seed: int. Seed of the line sampling and of the training-record order.
        time_unit: float. Time-interval divisor recorded in the dataset spec.
        time_clip: int. Time-interval clip recorded in the dataset spec.
        num_shards: int or None. Training shards (None: about 100k samples each).
        progress: bool. Print progress lines.
        name: str. Dataset name in the spec (the synthetic data uses its own).
        feedback: bool. Add the history-only field ``feedback``: the labels of the
            history's impressions (leak-free; see ``docs/data_format.md``). Defaults
            to False, the paper's inputs.
        extend_from: str or None. A prepared dataset to extend with ``days`` (the new
            days; :func:`pipelines.extend.extend_dataset`): vocabularies grow
            append-only, scaling stays, histories continue. The other settings must be
            those it was prepared with.
        refit_scaling: bool. With ``extend_from``: widen the numeric ranges.

    Returns:
        PrepareResult (dataset spec, report, in-memory tables).
    """
    df, read_report = read_days(
        raw_dir, days, sample_frac=sample_frac, seed=seed, progress=progress
    )
    spec = pipeline_spec(
        max_len=max_len,
        min_count=min_count,
        time_unit=time_unit,
        time_clip=time_clip,
        num_shards=num_shards,
        seed=seed,
        name=name,
        feedback=feedback,
    )
    if extend_from is not None:
        return extend.extend_dataset(df, spec, extend_from, out_dir, refit_scaling=refit_scaling,
                                     progress=progress, read_report=read_report)
    extra = {"days": list(days), "sample_frac": sample_frac, "seed": seed, "source": TIANCHI_URL}
    return generic.build_dataset(
        df, spec, out_dir, progress=progress, read_report=read_report, extra=extra
    )


@cli.command
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipelines.eleme --raw-dir RAW --out DIR``."""
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.eleme",
        description="Prepare the Ele.me dataset (Tianchi 131047) for FESeq.",
    )
    parser.add_argument(
        "--raw-dir", required=True, help="Directory with D1_0.csv, D3_1.csv, D5_0.csv."
    )
    parser.add_argument("--out", required=True, help="Output dataset directory.")
    parser.add_argument(
        "--days", nargs="+", default=list(DEFAULT_DAYS), help="Day files (without .csv)."
    )
    parser.add_argument(
        "--sample-frac",
        type=float,
        default=1 / 3,
        help="Fraction of each day file kept (paper: 1/3).",
    )
    parser.add_argument("--max-len", type=int, default=10)
    parser.add_argument("--min-count", type=int, default=10)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--time-unit", type=float, default=1.0, help="Divisor of time intervals.")
    parser.add_argument(
        "--time-clip", type=int, default=4000, help="Clip of time intervals (in units)."
    )
    parser.add_argument(
        "--num-shards",
        type=int,
        default=None,
        help="Training shards (default: ~100k samples each).",
    )
    parser.add_argument(
        "--feedback",
        action="store_true",
        help="Add the labels of the history as the field 'feedback' (not in the paper).",
    )
    parser.add_argument(
        "--extend",
        metavar="PREPARED_DIR",
        help="Prepare --days (new day files) on top of this prepared dataset: vocabularies "
        "grow append-only, scaling stays, histories continue (docs: the daily loop).",
    )
    parser.add_argument("--refit-scaling", action="store_true",
                        help="With --extend: widen the numeric fields' ranges to the new days.")
    parser.add_argument("--quiet", action="store_true", help="No progress lines.")
    args = parser.parse_args(argv)
    if args.refit_scaling and not args.extend:
        parser.error("--refit-scaling needs --extend")
    try:
        result = prepare(
            args.raw_dir,
            args.out,
            days=args.days,
            sample_frac=args.sample_frac,
            max_len=args.max_len,
            min_count=args.min_count,
            seed=args.seed,
            time_unit=args.time_unit,
            time_clip=args.time_clip,
            num_shards=args.num_shards,
            progress=not args.quiet,
            feedback=args.feedback,
            extend_from=args.extend,
            refit_scaling=args.refit_scaling,
        )
    except FileNotFoundError as err:
        print(cli.error_line(err), file=sys.stderr)
        return 2
    print(
        json.dumps(
            {"out": args.out, "samples": result.report["samples"], "ctr": result.report["ctr"]}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
