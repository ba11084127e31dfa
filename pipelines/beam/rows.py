"""Input shards -> cleaned impression rows: the Beam pipeline's reading and cleaning.

Every shard is read by :func:`pipelines.readers.read_table` and cleaned by
:func:`pipelines.parsing.clean_table` (the rules of the single-machine pipeline), then
split into one :data:`Row` per kept impression. A row's position ``pos`` orders the
impressions as the single-machine pipeline orders the shards concatenated in path order
(the tie-breaker of equal timestamps); a user's ``first`` key orders the users by their
first appearance, which numbers them (``group_id``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any, NamedTuple

import apache_beam as beam
import numpy as np

from pipelines.parsing import categorical_codes, clean_table
from pipelines.readers import read_table
from pipelines.spec import PipelineSpec

#: Bits of a position given to the row number within its shard (the shard index above).
ROW_BITS = 40
FILES_TAG = "files"
FIRSTS_TAG = "firsts"


class Row(NamedTuple):
    """One kept impression: parsed, not yet encoded."""

    pos: int  # shard index << ROW_BITS | kept row number in the shard
    time: int
    label: float
    oracle: float | None
    categorical: tuple[str | None, ...]  # canonical raw values of the categorical fields
    numeric: tuple[float, ...]  # values of the numeric fields, NaN where missing


def shard_of(key: int) -> int:
    """The shard index of a position or a first-appearance key."""
    return key >> ROW_BITS


def categorical_names(ps: PipelineSpec) -> list[str]:
    return [f.name for f in ps.fields if f.type == "categorical"]


def numeric_names(ps: PipelineSpec) -> list[str]:
    return [f.name for f in ps.fields if f.type != "categorical"]


def local_copy(path: str, directory: str) -> str:
    """``path`` itself when it is a local file, else a copy of it in ``directory`` (any
    filesystem Beam reads: ``gs://``, ``s3://``, ``hdfs://``)."""
    if os.path.exists(path):
        return path
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    local = os.path.join(directory, os.path.basename(path))
    with (
        FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as src,
        open(local, "wb") as dst,
    ):
        shutil.copyfileobj(src, dst, 1 << 24)
    return local


class ReadShard(beam.DoFn):
    """``(shard index, path)`` -> ``(user, Row)`` for every kept row; tagged outputs:
    :data:`FILES_TAG` one report per shard, :data:`FIRSTS_TAG` ``(user, (first key,
    whether the user has a kept row))`` once per user of the shard."""

    def __init__(self, ps: PipelineSpec) -> None:
        self.ps = ps

    def process(self, element: tuple[int, str]) -> Iterator[Any]:
        index, path = element
        ps = self.ps
        with tempfile.TemporaryDirectory(prefix="feseq_beam_") as tmp:
            df, read_report = read_table(local_copy(path, tmp), ps.required_columns)
        missing_cols = [c for c in ps.required_columns if c not in df.columns]
        if missing_cols:
            raise ValueError(
                f"Input file {path} lacks the columns {missing_cols} named by pipeline spec "
                f"{ps.name!r}; it has {list(df.columns)}."
            )
        data = clean_table(df, ps, allow_empty=True)
        # Users are numbered by their first appearance, on a dropped row too.
        _, seen = categorical_codes(df[ps.user_key])
        del df
        dropped = dict(read_report["rows_dropped"])
        for reason, count in data.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + count
        yield beam.pvalue.TaggedOutput(
            FILES_TAG,
            {
                "index": index,
                "file": os.path.basename(path),
                "rows_read": int(read_report["rows_read"]),
                "rows_in": int(data.rows_in),
                "rows_dropped": dropped,
                "has_oracle": data.oracle is not None,
            },
        )
        base = index << ROW_BITS
        kept = set(data.users.tolist())
        for code, user in enumerate(seen.tolist()):
            yield beam.pvalue.TaggedOutput(FIRSTS_TAG, (user, (base | code, user in kept)))
        categorical = []
        for name in categorical_names(ps):
            codes, uniques = data.categorical[name]
            values = np.empty(len(codes), dtype=object)
            present = codes >= 0
            values[present] = uniques[codes[present]]
            categorical.append(values.tolist())
        numeric = [data.numeric[name][0].tolist() for name in numeric_names(ps)]
        oracle = data.oracle.tolist() if data.oracle is not None else [None] * data.rows
        users = data.users[data.group_id].tolist()
        times, labels = data.times.tolist(), data.label.tolist()
        for i in range(data.rows):
            yield (
                users[i],
                Row(
                    base | i,
                    times[i],
                    labels[i],
                    oracle[i],
                    tuple(c[i] for c in categorical),
                    tuple(v[i] for v in numeric),
                ),
            )
