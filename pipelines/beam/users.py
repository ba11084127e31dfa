"""One user's impressions -> encoded records: the Beam pipeline's per-user step.

The impressions of a user (or of one time block of a user, with the last ``max_len``
impressions before the block carried over as context) become numpy arrays, and the
single-machine code does the rest, for a batch of users at a time: :func:`pipelines.transforms.lookup_ids` and
:func:`~pipelines.transforms.scale` encode the fields with the fitted statistics,
:func:`~pipelines.transforms.history_columns` cuts the histories and
:func:`pipelines.tfrecord.encode_examples` serialises the records. Memory: one user
(block) at a time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.transforms.window import GlobalWindows

from feseq_tf import hashing, schema
from pipelines.beam.rows import Row, categorical_names, numeric_names
from pipelines.beam.statistics import CutPoints
from pipelines.parsing import CleanedTable
from pipelines.spec import PipelineSpec
from pipelines.tfrecord import encode_examples, record_features
from pipelines.transforms import history_columns, lookup_ids, scale

STATS_TAG = "stats"
#: Impressions encoded in one call of the single-machine code.
BATCH_ROWS = 16384
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@dataclasses.dataclass
class Fitted:
    """Everything learnt from the whole log that encoding a user's records needs."""

    spec: schema.DatasetSpec
    cuts: CutPoints
    vocabularies: dict[str, list[str]]
    ranges: dict[str, tuple[float, float]]
    shards: dict[str, int]
    users: int
    lookups: dict[str, dict[str, int]] = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.lookups = {
            name: {v: schema.NUM_RESERVED_IDS + i for i, v in enumerate(values)}
            for name, values in self.vocabularies.items()
        }


def shuffle_keys(pos: np.ndarray, seed: int) -> np.ndarray:
    """A seeded pseudo-random uint64 per position (SplitMix64): the training records'
    shard and order within it."""
    with np.errstate(over="ignore"):
        z = pos.astype(np.uint64) + (np.uint64(seed) + np.uint64(1)) * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _categorical_ids(ps: PipelineSpec, name: str, values: list, fitted: Fitted) -> np.ndarray:
    field = next(f for f in ps.fields if f.name == name)
    uniques_list = sorted({v for v in values if v is not None})
    code_of = {v: i for i, v in enumerate(uniques_list)}
    codes = np.array([-1 if v is None else code_of[v] for v in values], dtype=np.int64)
    uniques = np.array(uniques_list, dtype=object)
    if field.hash_buckets is not None:
        id_of_code = hashing.hashed_ids_numpy(uniques, field.hash_buckets)
    else:
        lookup = fitted.lookups[name]
        id_of_code = np.array([lookup.get(v, schema.OOV_ID) for v in uniques_list], np.int64)
    return lookup_ids(codes, id_of_code)


class EncodeUser(beam.DoFn):
    """``((user, block), {"rows": [Row], "context": [(group_id, [Row])]})`` ->
    ``((split, shard), (order key, record bytes))`` and, tagged :data:`STATS_TAG`, sums
    for the report.

    Users are encoded in batches of about :data:`BATCH_ROWS` impressions (one call of
    the single-machine code for many users; memory: one batch and the largest user).
    """

    def __init__(self, ps: PipelineSpec) -> None:
        self.ps = ps
        self.batch_rows = BATCH_ROWS

    def start_bundle(self) -> None:
        self._pending: list[tuple[int, list[Row], list[Row]]] = []
        self._rows = 0
        self._fitted: Fitted | None = None

    def process(
        self, element: tuple[Any, dict[str, Iterable[Any]]], fitted: Fitted
    ) -> Iterator[Any]:
        _, groups = element
        own = sorted(groups["rows"])
        if not own:
            return
        ((group_id, context),) = groups["context"]
        self._fitted = fitted
        self._pending.append((group_id, sorted(context), own))
        self._rows += len(context) + len(own)
        if self._rows >= self.batch_rows:
            yield from self._flush()

    def finish_bundle(self) -> Iterator[Any]:
        for out in self._flush():
            if isinstance(out, beam.pvalue.TaggedOutput):
                yield beam.pvalue.TaggedOutput(out.tag, GlobalWindows.windowed_value(out.value))
            else:
                yield GlobalWindows.windowed_value(out)

    def _flush(self) -> Iterator[Any]:
        pending, fitted = self._pending, self._fitted
        self._pending, self._rows = [], 0
        if not pending:
            return
        ps = self.ps
        rows: list[Row] = []
        batch_group, group_ids, own_index = [], [], []
        for k, (group_id, context, own) in enumerate(pending):
            own_index.append(np.arange(len(own)) + len(rows) + len(context))
            rows += context + own
            # One group per entry: two blocks of a user are two groups of the batch.
            batch_group.append(np.full(len(context) + len(own), k, dtype=np.int64))
            group_ids.append(np.full(len(own), group_id, dtype=np.int64))
        out_rows = np.concatenate(own_index)
        times = np.array([r.time for r in rows], dtype=np.int64)
        data = CleanedTable(
            rows_in=len(rows),
            dropped={},
            group_id=np.concatenate(batch_group),
            times=times,
            label=np.array([r.label for r in rows], dtype=np.float32),
            categorical={},
            numeric={},
            oracle=(
                np.array([r.oracle for r in rows], dtype=np.float32)
                if fitted.spec.has_oracle
                else None
            ),
        )
        encoded: dict[str, np.ndarray] = {}
        for i, name in enumerate(categorical_names(ps)):
            encoded[name] = _categorical_ids(ps, name, [r.categorical[i] for r in rows], fitted)
        for i, name in enumerate(numeric_names(ps)):
            values = np.array([r.numeric[i] for r in rows], dtype=np.float64)
            encoded[name] = scale(values, np.isnan(values), *fitted.ranges[name])
        columns = history_columns(ps, data, encoded, out_rows)
        columns[schema.GROUP_KEY] = np.concatenate(group_ids)
        pos = np.array([rows[i].pos for i in out_rows.tolist()], dtype=np.int64)
        yield from _records(ps, fitted, columns, times[out_rows], pos)


def _records(
    ps: PipelineSpec,
    fitted: Fitted,
    columns: dict[str, np.ndarray],
    times: np.ndarray,
    pos: np.ndarray,
) -> Iterator[Any]:
    """The encoded records of a batch, keyed by shard, and the batch's report sums."""
    split = fitted.cuts.split_array(times, pos)
    keys = shuffle_keys(pos, ps.seed)
    kinds = record_features(fitted.spec)
    stats: dict[str, float] = {}
    for s, name in enumerate(schema.SPLITS):
        idx = np.flatnonzero(split == s)
        if idx.size == 0:
            continue
        buf, offsets = encode_examples([(k, kind, columns[k][idx]) for k, kind in kinds])
        data_bytes, bounds = buf.tobytes(), offsets.tolist()
        shard = (keys[idx] % np.uint64(fitted.shards[name])).astype(np.int64).tolist()
        if name == "train" and ps.shuffle_train:
            order = keys[idx].tolist()
        else:
            order = list(zip(times[idx].tolist(), pos[idx].tolist(), strict=True))
        for j in range(idx.size):
            yield (name, shard[j]), (order[j], data_bytes[bounds[j] : bounds[j + 1]])
        stats[f"samples/{name}"] = int(idx.size)
        stats[f"label_sum/{name}"] = float(columns[ps.label][idx].sum(dtype=np.float64))
        stats[f"hist_len_sum/{name}"] = int(columns[schema.HIST_LEN][idx].sum())
        if name == "test":
            for f in fitted.spec.fields:
                if f.is_categorical and not f.history_only:
                    hits = int(np.count_nonzero(columns[f.name][idx] == schema.OOV_ID))
                    stats[f"oov_test/{f.name}"] = hits
    yield beam.pvalue.TaggedOutput(STATS_TAG, stats)


def contexts(
    kv: tuple[str, dict[str, Iterable[Any]]], max_len: int
) -> Iterator[tuple[tuple[str, int], tuple[int, list[Row]]]]:
    """``(user, {"group_id": [id], "tails": [(block, last rows)]})`` -> for every block
    of the user, ``((user, block), (group_id, the last max_len rows before the block))``."""
    user, groups = kv
    (group_id,) = groups["group_id"]
    carried: list[Row] = []
    for block, tail in sorted(groups["tails"], key=lambda bt: bt[0]):
        yield (user, block), (group_id, carried)
        carried = sorted(carried + list(tail), key=time_order)[-max_len:]


def time_order(row: Row) -> tuple[int, int]:
    """The order of the single-machine pipeline: time, then input position."""
    return row.time, row.pos


class SumStats(beam.CombineFn):
    """Sums dicts of numbers key by key."""

    def create_accumulator(self) -> dict[str, float]:
        return {}

    def add_input(self, acc: dict[str, float], stats: dict[str, float]) -> dict[str, float]:
        for k, v in stats.items():
            acc[k] = acc.get(k, 0) + v
        return acc

    def merge_accumulators(self, accs: Iterable[dict[str, float]]) -> dict[str, float]:
        out: dict[str, float] = {}
        for acc in accs:
            self.add_input(out, acc)
        return out

    def extract_output(self, acc: dict[str, float]) -> dict[str, float]:
        return acc
