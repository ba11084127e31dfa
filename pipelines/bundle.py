"""The paper's Bundle dataset as a generic pipeline spec.

Bundle (paper section 4.1.1) is a private bundle-recommendation log of an online game
(4.19 M impressions, 118,931 users, 11 bundles, 2021-11-01 .. 2021-12-30); the label says
whether the user bought the shown bundle. It is *not* public: the authors share it on
request. This module only describes its schema, so that whoever has the data (or a log
of the same shape) can prepare it with the generic pipeline.

The schema follows the paper's counts (24 sequence fields, 9 non-sequence fields,
``max_len`` 8) and the field names of the authors' published configuration. Those
name 8 user attributes; the 9th non-sequence field, ``device_language``, is an
invented but plausible stand-in: rename or drop it to match your file. The sequence
fields are the shown bundle (``bundle_id``, ``bundle_price``: role item) and 22 game
states of the user at the impression (role context), each with its history of the
user's previous impressions. ``min_count`` is 1, as in the authors' configuration.

Expected input: one CSV (with a header row) or Parquet file, or a directory of them,
one row per impression with the columns of :func:`pipeline_spec` (``uid`` the user,
``ftime`` an integer timestamp, ``impression_result`` the 0/1 label).

Command line::

    python -m pipelines.bundle --input bundle.parquet --out DATA/bundle
    python -m pipelines.bundle --write-spec bundle.yaml   # to adapt the schema
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import pandas as pd

from feseq_tf import cli
from pipelines import generic
from pipelines.readers import read_table
from pipelines.spec import FieldConfig, PipelineSpec
from pipelines.writer import PrepareResult

DATASET_NAME = "bundle"
USER_KEY = "uid"
TIME_COLUMN = "ftime"
LABEL_COLUMN = "impression_result"

#: 9 non-sequential user fields (``device_language`` is invented, see the module doc).
NON_SEQUENTIAL_FIELDS: tuple[FieldConfig, ...] = (
    FieldConfig("uid", "categorical", "user"),
    FieldConfig("gender", "categorical", "user"),
    FieldConfig("is_visitor", "categorical", "user"),
    FieldConfig("register_country", "categorical", "user"),
    FieldConfig("register_device", "categorical", "user"),
    FieldConfig("register_device_brand", "categorical", "user"),
    FieldConfig("register_os", "categorical", "user"),
    FieldConfig("device_language", "categorical", "user"),
    FieldConfig("register_time", "numeric", "user"),
)

_NUMERIC_STATES = (
    "island_no",
    "spin_stock",
    "coin_stock",
    "diamond_stock",
    "island_complete_gap_coin",
    "island_complete_gap_building_cnt",
    "tournament_rank",
    "login_cnt_1d",
    "ads_watch_cnt_1d",
    "register_country_arpu",
    "life_time",
    "star",
    "battle_pass_exp",
    "pet_heart_stock",
    "pet_exp_stock",
    "friend_cnt",
    "social_friend_cnt",
    "pay_amt",
    "pay_cnt",
    "pay_per_day",
    "pay_mean",
)

#: 24 sequential fields: the bundle shown (item) and the user's game state (context).
SEQUENTIAL_FIELDS: tuple[FieldConfig, ...] = (
    FieldConfig("bundle_id", "categorical", "item"),
    FieldConfig("bundle_price", "numeric", "item"),
    FieldConfig("is_up_to_date_version", "categorical", "context"),
) + tuple(FieldConfig(name, "numeric", "context") for name in _NUMERIC_STATES)


def pipeline_spec(
    *,
    max_len: int = 8,
    min_count: int = 1,
    time_unit: float = 1.0,
    time_clip: int = 4000,
    num_shards: int | None = None,
    timestamp_format: str | None = None,
    feedback: bool = False,
) -> PipelineSpec:
    """The Bundle schema (paper Table 1/2: 24 sequence fields, 9 non-sequence, L = 8);
    ``feedback`` adds the labels of the history (not in the paper)."""
    return PipelineSpec(
        name=DATASET_NAME,
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
        timestamp_format=timestamp_format,
        feedback=feedback,
    )


def input_files(path: str) -> list[str]:
    """A CSV/Parquet file, or every ``*.csv``/``*.parquet`` file of a directory (sorted)."""
    if os.path.isdir(path):
        files = sorted(
            f for ext in ("csv", "parquet", "pq") for f in glob.glob(os.path.join(path, f"*.{ext}"))
        )
        if not files:
            raise FileNotFoundError(f"No .csv or .parquet files in {path!r}.")
        return files
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Bundle input {path!r} does not exist. The Bundle dataset is private (available "
            "from the paper's authors on request); pass your own copy with --input."
        )
    return [path]


def prepare(
    input_path: str,
    out_dir: str | None,
    *,
    spec: PipelineSpec | None = None,
    progress: bool = True,
    **spec_options: Any,
) -> PrepareResult:
    """Prepare a Bundle-shaped impression log.

    Args:
        input_path: str. CSV/Parquet file or a directory of them (concatenated in name
            order).
        out_dir: str or None. Output dataset directory (None: tables only).
        spec: PipelineSpec or None. A schema to use instead of :func:`pipeline_spec`.
        progress: bool. Print progress lines.
        **spec_options: keyword arguments of :func:`pipeline_spec` (``max_len``...).

    Returns:
        PrepareResult of :func:`pipelines.generic.build_dataset`.
    """
    if spec is not None and spec_options:
        raise ValueError(
            f"Give either spec or spec options, not both (got {sorted(spec_options)})."
        )
    spec = spec or pipeline_spec(**spec_options)
    start = time.perf_counter()
    frames, dropped, rows_read = [], {}, 0
    for path in input_files(input_path):
        frame, report = read_table(path, spec.required_columns)
        frames.append(frame)
        rows_read += report["rows_read"]
        for reason, count in report["rows_dropped"].items():
            dropped[reason] = dropped.get(reason, 0) + count
    df = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    read_report = {
        "rows_read": rows_read,
        "rows_dropped": dropped,
        "files": [os.path.basename(p) for p in input_files(input_path)],
        "timings_s": {"read": round(time.perf_counter() - start, 3)},
    }
    return generic.build_dataset(df, spec, out_dir, progress=progress, read_report=read_report)


@cli.command
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipelines.bundle --input FILE --out DIR``."""
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.bundle",
        description="Prepare a Bundle-shaped impression log (the paper's private dataset).",
    )
    parser.add_argument("--input", help="CSV (with header) / Parquet file, or a directory of them.")
    parser.add_argument("--out", help="Output dataset directory.")
    parser.add_argument("--spec", help="A pipeline spec (YAML/JSON) replacing the built-in schema.")
    parser.add_argument(
        "--write-spec", metavar="PATH", help="Write the built-in schema as YAML/JSON and exit."
    )
    parser.add_argument("--max-len", type=int, default=8)
    parser.add_argument("--min-count", type=int, default=1)
    parser.add_argument(
        "--timestamp-format",
        default=None,
        help="'iso8601' or a strftime format for text timestamps.",
    )
    parser.add_argument(
        "--feedback",
        action="store_true",
        help="Add the labels of the history as the field 'feedback' (not in the paper).",
    )
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    options = dict(
        max_len=args.max_len,
        min_count=args.min_count,
        timestamp_format=args.timestamp_format,
        feedback=args.feedback,
    )
    if args.write_spec:
        pipeline_spec(**options).save(args.write_spec)
        print(args.write_spec)
        return 0
    if not args.input or not args.out:
        parser.error("--input and --out are required (or --write-spec).")
    if args.spec:
        spec = PipelineSpec.load(args.spec)
        if args.feedback:
            spec = dataclasses.replace(spec, feedback=True)
    else:
        spec = pipeline_spec(**options)
    try:
        result = prepare(args.input, args.out, spec=spec, progress=not args.quiet)
    except FileNotFoundError as err:
        print(cli.error_line(err), file=sys.stderr)
        return 2
    print(json.dumps({"out": args.out, "samples": result.report["samples"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
