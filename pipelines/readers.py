"""Reading impression tables from user files: CSV (with a header row) or Parquet."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import pandas as pd
import pyarrow as pa

from feseq_tf import schema


def read_table(
    path: str, columns: Sequence[str] | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a CSV (with a header row) or Parquet impression table.

    CSV columns are read as text (the pipeline parses them); lines with the wrong
    number of columns are skipped and counted.

    Returns:
        (table, read report with ``rows_read`` and ``rows_dropped``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is empty or has no rows.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"Input file {path} does not exist.")
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise ValueError(f"Input file {path} is empty.")
    df, report = _read(path, columns)
    if report["rows_read"] == 0:
        raise ValueError(f"Input file {path} has no rows.")
    return df, report


def _read(path: str, columns: Sequence[str] | None) -> tuple[pd.DataFrame, dict[str, Any]]:
    wanted = list(columns) if columns is not None else None
    if path.endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
        use = [c for c in wanted if c in names] if wanted is not None else None
        if wanted is not None and schema.ORACLE_KEY in names and schema.ORACLE_KEY not in use:
            use.append(schema.ORACLE_KEY)
        df = pd.read_parquet(path, columns=use)
        return df, {"rows_read": len(df), "rows_dropped": {}, "files": [os.path.basename(path)]}
    import pyarrow.csv as pacsv

    bad = {"count": 0}

    def on_invalid(row: Any) -> str:
        bad["count"] += 1
        return "skip"

    with open(path, "rb") as fh:
        header = fh.readline().decode("utf-8").rstrip("\r\n").split(",")
    header = [h.strip() for h in header]
    use = None
    if wanted is not None:
        use = [c for c in wanted if c in header]
        if schema.ORACLE_KEY in header and schema.ORACLE_KEY not in use:
            use.append(schema.ORACLE_KEY)
    table = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=header, skip_rows=1),
        parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in header},
            include_columns=use,
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )
    df = table.to_pandas(types_mapper={pa.string(): pd.ArrowDtype(pa.string())}.get)
    dropped = {"malformed:wrong_column_count": bad["count"]} if bad["count"] else {}
    report = {
        "rows_read": len(df) + bad["count"],
        "rows_dropped": dropped,
        "files": [os.path.basename(path)],
    }
    return df, report
