"""The raw Ele.me files (Tianchi dataset 131047): their layout, and reading, checking
and writing day files.

The raw day files (``D1_0.csv``, ``D3_1.csv``, ``D5_0.csv``, ...) are comma separated,
without a header, with the 39 columns of :data:`RAW_COLUMNS`. Some published files
contain corrupted lines; every line is checked and a bad one is counted by reason and
skipped, never shifting the other rows:

* ``malformed:wrong_column_count``: not 39 comma-separated columns;
* ``malformed:unparsable``: invalid UTF-8, a NUL byte, or a carriage return inside it;
* ``malformed:empty_line``;
* ``malformed:non_numeric:<column>``: a value in a numeric column (``label``,
  ``avg_price``, ``ctr_30``, ``ord_30``, ``total_amt_30``) that is not a number, or a
  ``times`` value that is not an integer.

Rows with a missing value in any non-list column (``missing:<column>``; this includes
the :data:`DROPPED_COLUMNS`, as the reference preprocessing does) or with an "unknown"
code (``unknown_code:<column>``, :data:`UNKNOWN_CODES`) are dropped too. Values are
read by the rules of :mod:`feseq_tf.raw_format` (through :mod:`pipelines.parsing`).

Oracle side files: a raw file ``X.csv`` may have a sibling ``X.oracle.csv`` with one
float per line (line i = the true click probability of raw line i, as written by the
synthetic data generator).
"""

from __future__ import annotations

import dataclasses
import io
import os
import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from feseq_tf import raw_format
from pipelines import parsing

TIANCHI_URL = "https://tianchi.aliyun.com/dataset/131047"
DEFAULT_DAYS = ("D1_0", "D3_1", "D5_0")
ORACLE_SUFFIX = ".oracle.csv"

#: The 39 raw columns, in file order (no header in the files).
RAW_COLUMNS: tuple[str, ...] = tuple(
    """
    label user_id gender visit_city avg_price is_super_vip ctr_30 ord_30 total_amt_30
    shop_id item_id city_id district_id shop_aoi_id shop_geohash_6 shop_geohash_12
    brand_id category_1_id merge_standard_food_id rank_7 rank_30 rank_90
    shop_id_list item_id_list category_1_id_list merge_standard_food_id_list brand_id_list
    price_list shop_aoi_id_list shop_geohash_6_list timediff_list hours_list time_type_list
    weekdays_list times hours time_type weekdays geohash12
    """.split()
)
#: Raw history columns: not used (histories are rebuilt from the impressions).
LIST_COLUMNS: tuple[str, ...] = tuple(c for c in RAW_COLUMNS if c.endswith("_list"))
#: Read, checked for missing values (as the reference preprocessing does), then dropped.
DROPPED_COLUMNS: tuple[str, ...] = ("brand_id", "merge_standard_food_id")

LABEL_COLUMN = "label"
TIME_COLUMN = "times"
USER_KEY = "user_id"

#: Raw columns that must hold numbers (a value that is not is a malformed line): the
#: label and the numeric fields of :mod:`pipelines.eleme`.
NUMERIC_COLUMNS: tuple[str, ...] = (LABEL_COLUMN, "avg_price", "ctr_30", "ord_30", "total_amt_30")
#: Raw values meaning "unknown" (from the reference preprocessing); such rows are dropped.
UNKNOWN_CODES: dict[str, tuple[str, ...]] = {
    "gender": ("-99",),
    **{
        name: ("-1",)
        for name in """
        city_id district_id shop_aoi_id shop_geohash_6 shop_geohash_12 rank_7 rank_30 rank_90
        geohash12
        """.split()
    },
}
#: The non-list raw columns the pipeline reads, in file order.
USED_COLUMNS: tuple[str, ...] = tuple(c for c in RAW_COLUMNS if c not in LIST_COLUMNS)


def missing_files_message(raw_dir: str, missing: Sequence[str]) -> str:
    """What to do when raw day files are missing: where they come from and go."""
    return (
        f"Ele.me raw files not found: {', '.join(missing)} missing in {raw_dir!r}.\n"
        f"The Ele.me data is Tianchi dataset 131047 ({TIANCHI_URL}); it cannot be "
        "downloaded automatically (a Tianchi account is needed). Download it, unpack "
        f"the day files ({', '.join(os.path.basename(m) for m in missing)}) into one "
        "directory and pass that directory as --raw-dir (prepare(raw_dir=...))."
    )


def raw_paths(raw_dir: str, days: Sequence[str]) -> list[str]:
    """Paths of the day files; raises FileNotFoundError with download instructions."""
    if not days:
        raise ValueError("days must name at least one raw day file, e.g. ('D1_0',).")
    paths = [os.path.join(raw_dir, d if d.endswith(".csv") else f"{d}.csv") for d in days]
    missing = [os.path.basename(p) for p in paths if not os.path.isfile(p)]
    if not os.path.isdir(raw_dir) or missing:
        raise FileNotFoundError(
            missing_files_message(
                raw_dir,
                [os.path.basename(p) for p in paths] if not os.path.isdir(raw_dir) else missing,
            )
        )
    return paths


def oracle_path(raw_path: str) -> str:
    """``X.csv`` -> ``X.oracle.csv``."""
    base = raw_path[: -len(".csv")] if raw_path.endswith(".csv") else raw_path
    return base + ORACLE_SUFFIX


@dataclasses.dataclass
class RawFile:
    """The checked rows of one raw file.

    Attributes:
        table: pyarrow.Table. Kept rows, the :data:`USED_COLUMNS` as trimmed strings.
        line_numbers: int64 [rows]. 0-based raw line number of each kept row.
        lines: int. Lines in the file.
        sampled: int. Lines kept by the sampling.
        dropped: dict. Rows dropped by reason (among the sampled lines).
    """

    table: pa.Table
    line_numbers: np.ndarray
    lines: int
    sampled: int
    dropped: dict[str, int]


def _line_checks(arr: np.ndarray, starts: np.ndarray, ends: np.ndarray, data: bytes) -> np.ndarray:
    """Reason code per line: 0 ok, 1 empty, 2 unparsable, 3 wrong column count."""
    has_cr = (ends > starts) & (arr[np.maximum(ends - 1, 0)] == 13)
    content_end = ends - has_cr
    commas = np.flatnonzero(arr == 44)
    n_commas = np.searchsorted(commas, content_end) - np.searchsorted(commas, starts)
    special = np.flatnonzero((arr == 0) | (arr == 13) | (arr >= 128))
    n_special = np.searchsorted(special, content_end) - np.searchsorted(special, starts)
    reason = np.zeros(len(starts), dtype=np.int8)
    reason[n_commas != len(RAW_COLUMNS) - 1] = 3
    for i in np.flatnonzero(n_special):  # rare lines only: NUL, stray CR or non-ASCII
        line = data[starts[i] : content_end[i]]
        if b"\x00" in line or b"\r" in line:
            reason[i] = 2
            continue
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            reason[i] = 2
    reason[content_end == starts] = 1
    return reason


_LINE_REASONS = {
    1: "malformed:empty_line",
    2: "malformed:unparsable",
    3: "malformed:wrong_column_count",
}


def _parse_lines(data: bytes) -> pa.Table:
    """Parse well-formed raw lines (39 columns each) into string columns."""
    return pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=list(RAW_COLUMNS), block_size=1 << 24),
        parse_options=pacsv.ParseOptions(
            delimiter=",",
            quote_char=False,
            double_quote=False,
            escape_char=False,
            newlines_in_values=False,
            ignore_empty_lines=False,
        ),
        convert_options=pacsv.ConvertOptions(
            include_columns=list(USED_COLUMNS),
            column_types={c: pa.string() for c in USED_COLUMNS},
            strings_can_be_null=False,
        ),
    )


def _check_values(table: pa.Table) -> tuple[pa.Table, np.ndarray, dict[str, np.ndarray]]:
    """Trim values and find rows to drop: (trimmed table, keep mask, reason -> mask)."""
    n = table.num_rows
    columns = {}
    missing = {}
    for name in USED_COLUMNS:
        col = parsing.trim(table.column(name).combine_chunks())
        columns[name] = col
        missing[name] = parsing.missing_mask(col).to_numpy(zero_copy_only=False)
    reasons: list[tuple[str, np.ndarray]] = []
    for name in NUMERIC_COLUMNS + (TIME_COLUMN,):
        pattern = (
            raw_format.INTEGER_TIMESTAMP_PATTERN
            if name == TIME_COLUMN
            else raw_format.FLOAT_PATTERN
        )
        ok = parsing.full_match(columns[name], pattern)
        reasons.append((f"malformed:non_numeric:{name}", ~ok & ~missing[name]))
    for name in USED_COLUMNS:
        reasons.append((f"missing:{name}", missing[name]))
    for name, codes in UNKNOWN_CODES.items():
        values = pa.array(codes + tuple(c + ".0" for c in codes))
        reasons.append(
            (
                f"unknown_code:{name}",
                pc.is_in(columns[name], value_set=values).to_numpy(zero_copy_only=False),
            )
        )
    keep = np.ones(n, dtype=bool)
    hits: dict[str, np.ndarray] = {}
    for reason, mask in reasons:
        hit = mask & keep
        if hit.any():
            hits[reason] = hit
            keep &= ~mask
    return pa.table(columns), keep, hits


def read_raw_file(
    path: str,
    *,
    sample_frac: float = 1.0,
    seed: int = 2024,
    block_bytes: int = 64 << 20,
) -> RawFile:
    """Read and check one raw day file (see the module docstring for the checks).

    Args:
        path: str. The raw CSV file (39 columns, no header).
        sample_frac: float. Probability of keeping each line (1 keeps all).
        seed: int. Sampling seed; the file name is mixed in.
        block_bytes: int. Bytes read at a time (memory bound).

    Returns:
        RawFile with the kept rows and the counts.
    """
    if not 0 < sample_frac <= 1:
        raise ValueError(f"sample_frac must be in (0, 1], got {sample_frac!r}.")
    rng = np.random.default_rng([seed, zlib.crc32(os.path.basename(path).encode())])
    tables: list[pa.Table] = []
    line_numbers: list[np.ndarray] = []
    dropped: dict[str, int] = {}
    lines = sampled = 0
    carry = b""
    with open(path, "rb") as fh:
        while True:
            block = fh.read(block_bytes)
            if block:
                data = carry + block
                cut = data.rfind(b"\n") + 1
                carry, data = data[cut:], data[:cut]
                if not data:
                    continue
            else:
                data, carry = carry, b""
                if not data:
                    break
                if not data.endswith(b"\n"):
                    data += b"\n"
            arr = np.frombuffer(data, dtype=np.uint8)
            ends = np.flatnonzero(arr == 10)
            starts = np.empty_like(ends)
            starts[0] = 0
            starts[1:] = ends[:-1] + 1
            take = (
                rng.random(len(ends)) < sample_frac if sample_frac < 1 else np.ones(len(ends), bool)
            )
            reason = _line_checks(arr, starts, ends, data)
            for code, name in _LINE_REASONS.items():
                count = int(np.count_nonzero(take & (reason == code)))
                if count:
                    dropped[name] = dropped.get(name, 0) + count
            good = take & (reason == 0)
            sampled += int(take.sum())
            if good.any():
                lines_data = (
                    data if good.all() else arr[np.repeat(good, ends - starts + 1)].tobytes()
                )
                table = _parse_lines(lines_data)
                if table.num_rows != int(good.sum()):
                    raise RuntimeError(
                        f"{path}: parsed {table.num_rows} rows from {int(good.sum())} checked lines."
                    )
                table, keep, hits = _check_values(table)
                for name, mask in hits.items():
                    dropped[name] = dropped.get(name, 0) + int(mask.sum())
                tables.append(table.filter(pa.array(keep)))
                line_numbers.append((lines + np.flatnonzero(good))[keep])
            lines += len(ends)
            if not block:
                break
    if tables:
        table = pa.concat_tables(tables)
    else:
        table = pa.table({c: pa.array([], pa.string()) for c in USED_COLUMNS})
    numbers = np.concatenate(line_numbers) if line_numbers else np.zeros(0, np.int64)
    return RawFile(
        table=table,
        line_numbers=numbers.astype(np.int64),
        lines=lines,
        sampled=sampled,
        dropped=dropped,
    )


def read_oracle(path: str, lines: int) -> np.ndarray:
    """The oracle side file: float64 [lines], NaN where a line is not a number."""
    with open(path, "rb") as fh:
        text = fh.read().decode("utf-8", errors="replace")
    values = text.split("\n")
    if values and values[-1] == "":
        values.pop()
    if len(values) != lines:
        raise ValueError(
            f"Oracle file {path} has {len(values)} lines but its raw file has {lines}; "
            "line i must be the click probability of raw line i."
        )
    floats, _, _ = parsing.numeric_values(pa.array(values, type=pa.string()))
    return floats


def write_raw_csv(
    frame: pd.DataFrame, path: str, oracle: Sequence[float] | np.ndarray | None = None
) -> str:
    """Write impressions in the raw Ele.me layout (39 columns, no header).

    ``frame`` needs every column of :data:`USED_COLUMNS` except the
    :data:`DROPPED_COLUMNS` (written as ``0`` when absent); absent ``*_list`` columns
    are written empty. With ``oracle`` (one probability per row) the side file
    ``X.oracle.csv`` is written too.
    """
    needed = [c for c in USED_COLUMNS if c not in DROPPED_COLUMNS and c not in frame.columns]
    if needed:
        raise ValueError(f"write_raw_csv: the frame lacks the raw columns {needed}.")
    n = len(frame)
    arrays = []
    for c in RAW_COLUMNS:
        if c in frame.columns:
            arrays.append(pa.array(frame[c], from_pandas=True))
        else:
            arrays.append(
                pa.array(np.full(n, "0" if c in DROPPED_COLUMNS else "", dtype=object), pa.string())
            )
    table = pa.Table.from_arrays(arrays, names=list(RAW_COLUMNS))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    pacsv.write_csv(
        table, path, write_options=pacsv.WriteOptions(include_header=False, quoting_style="none")
    )
    if oracle is not None:
        probs = np.asarray(oracle, dtype=np.float64)
        if probs.shape != (n,):
            raise ValueError(f"write_raw_csv: oracle has shape {probs.shape}, expected ({n},).")
        pacsv.write_csv(
            pa.table({"p": probs}),
            oracle_path(path),
            write_options=pacsv.WriteOptions(include_header=False),
        )
    return path
