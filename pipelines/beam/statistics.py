"""The statistics of the whole log the Beam pipeline needs before it encodes a record:
time-split cut points, vocabularies and numeric ranges of the training split, user ids.

Each is a Beam transform over the ``(user, Row)`` collection of :mod:`pipelines.beam.rows`
whose result is small (one element, used as a side input):

- cut points (:class:`CutPoints`), exact: the count of every distinct timestamp is
  gathered in one place (memory: one number per distinct timestamp), which locates each
  cut at a timestamp and a number of its impressions; the positions of the impressions
  at those (at most two) timestamps order the ties as the single-machine pipeline does
  (input order), so the splits hold the very same impressions;
- vocabularies: per-value counts of the training rows (combiners), values seen at least
  ``min_count`` times ordered by :func:`pipelines.transforms.vocabulary_order`;
- numeric ranges: min and max of the training rows (a combiner);
- user ids: the dense ``group_id`` of each user in order of first appearance, ranked
  within each input shard and offset by the users first seen in the shards before.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
import numpy as np

from pipelines.beam.rows import Row, categorical_names, numeric_names, shard_of
from pipelines.spec import PipelineSpec
from pipelines.transforms import split_bounds, vocabulary_order

SPLIT_INDEX = {"train": 0, "valid": 1, "test": 2}


@dataclasses.dataclass(frozen=True)
class CutPoints:
    """Where the time-sorted impressions are cut into train / valid / test.

    An impression ``(time, pos)`` lies before a cut ``(t, p)`` when ``time < t``, or
    ``time == t`` and ``pos < p``; a cut of None lies after every impression.
    """

    sizes: dict[str, int]
    cuts: tuple[tuple[int, int] | None, tuple[int, int] | None]

    def split_of(self, time: int, pos: int) -> int:
        """0 train, 1 valid, 2 test."""
        for i, cut in enumerate(self.cuts):
            if cut is None or (time, pos) < cut:
                return i
        return 2

    def split_array(self, times: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """:meth:`split_of` of many impressions (int array)."""
        split = np.full(len(times), 2, dtype=np.int64)
        for i in (1, 0):
            cut = self.cuts[i]
            if cut is None:
                split[:] = i
            else:
                t, p = cut
                split[(times < t) | ((times == t) & (pos < p))] = i
        return split


def _boundaries(time_counts: Iterable[tuple[int, int]], ps: PipelineSpec) -> dict[str, Any]:
    """Sizes of the splits and, for each cut, the timestamp it falls on and how many of
    that timestamp's impressions lie before it (None: after every impression)."""
    counts = sorted(time_counts)
    n = sum(c for _, c in counts)
    if n == 0:
        raise ValueError(f"No rows left for dataset {ps.name!r} after cleaning.")
    b1, b2 = split_bounds(n, ps.split_ratios)
    if b1 == 0:
        raise ValueError(f"The training split of {ps.name!r} is empty ({n} samples).")
    cum = np.cumsum([c for _, c in counts])
    located = []
    for b in (b1, b2):
        if b >= n:
            located.append(None)
            continue
        i = int(np.searchsorted(cum, b, side="right"))  # first timestamp not wholly before
        located.append((counts[i][0], b - (int(cum[i - 1]) if i else 0)))
    sizes = {"train": b1, "valid": b2 - b1, "test": n - b2}
    return {"n": n, "sizes": sizes, "located": located}


def _cut_points(positions: Iterable[tuple[int, list[int]]], bounds: dict[str, Any]) -> CutPoints:
    at = dict(positions)
    cuts = []
    for loc in bounds["located"]:
        if loc is None:
            cuts.append(None)
        else:
            t, k = loc
            cuts.append((t, sorted(at[t])[k] if k else -1))
    return CutPoints(sizes=bounds["sizes"], cuts=tuple(cuts))


class ComputeCutPoints(beam.PTransform):
    """``(user, Row)`` -> one :class:`CutPoints`."""

    def __init__(self, ps: PipelineSpec) -> None:
        super().__init__()
        self.ps = ps

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        ps = self.ps
        bounds = (
            rows
            | "TimeOf" >> beam.Map(lambda kv: (kv[1].time, 1))
            | "CountPerTime" >> beam.CombinePerKey(sum)
            | "AllTimes" >> beam.combiners.ToList()
            | "Boundaries" >> beam.Map(_boundaries, ps)
        )

        def at_boundary(kv: tuple[str, Row], b: dict[str, Any]) -> Iterator[tuple[int, int]]:
            row = kv[1]
            if any(loc is not None and loc[1] and loc[0] == row.time for loc in b["located"]):
                yield row.time, row.pos

        positions = (
            rows
            | "AtBoundary" >> beam.FlatMap(at_boundary, beam.pvalue.AsSingleton(bounds))
            | "GroupTies" >> beam.GroupByKey()
            | "Ties" >> beam.Map(lambda kv: (kv[0], list(kv[1])))
            | "AllTies" >> beam.combiners.ToList()
        )
        return positions | "Cuts" >> beam.Map(_cut_points, beam.pvalue.AsSingleton(bounds))


def _train_rows(kv: tuple[str, Row], cuts: CutPoints) -> Iterator[Row]:
    row = kv[1]
    if cuts.split_of(row.time, row.pos) == 0:
        yield row


class _MinMax(beam.CombineFn):
    def create_accumulator(self) -> tuple[float, float]:
        return (math.inf, -math.inf)

    def add_input(self, acc: tuple[float, float], x: float) -> tuple[float, float]:
        return (min(acc[0], x), max(acc[1], x))

    def merge_accumulators(self, accs: Iterable[tuple[float, float]]) -> tuple[float, float]:
        accs = list(accs)
        return (min(a[0] for a in accs), max(a[1] for a in accs))

    def extract_output(self, acc: tuple[float, float]) -> tuple[float, float]:
        return acc


def _vocabularies(counted: Iterable[tuple[str, str, int]], ps: PipelineSpec) -> dict[str, list]:
    by_field: dict[str, list[tuple[str, int]]] = {
        f.name: [] for f in ps.fields if f.type == "categorical" and f.hash_buckets is None
    }
    for name, value, count in counted:
        by_field[name].append((value, count))
    vocabs = {}
    for name, pairs in by_field.items():
        uniques = np.array([v for v, _ in pairs], dtype=object)
        order = vocabulary_order(uniques, np.array([c for _, c in pairs], dtype=np.int64), 1)
        vocabs[name] = [str(v) for v in uniques[order]]
    return vocabs


def _ranges(found: Iterable[tuple[str, tuple[float, float]]], ps: PipelineSpec) -> dict:
    ranges = {name: (0.0, 0.0) for name in numeric_names(ps)}
    ranges.update({name: (float(lo), float(hi)) for name, (lo, hi) in found})
    return ranges


class TrainingStatistics(beam.PTransform):
    """``(user, Row)`` and the cut points -> ``(vocabularies, numeric ranges)``: two
    single-element collections (field -> values in id order; field -> (min, max))."""

    def __init__(self, ps: PipelineSpec, cuts: beam.PCollection) -> None:
        super().__init__()
        self.ps = ps
        self.cuts = cuts

    def expand(self, rows: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        ps = self.ps
        train = rows | "Train" >> beam.FlatMap(_train_rows, beam.pvalue.AsSingleton(self.cuts))
        cat_names = categorical_names(ps)
        vocab_fields = [
            (i, name)
            for i, name in enumerate(cat_names)
            if next(f for f in ps.fields if f.name == name).hash_buckets is None
        ]

        def values_of(row: Row) -> Iterator[tuple[tuple[str, str], int]]:
            for i, name in vocab_fields:
                if row.categorical[i] is not None:
                    yield (name, row.categorical[i]), 1

        vocabs = (
            train
            | "Values" >> beam.FlatMap(values_of)
            | "CountValues" >> beam.CombinePerKey(sum)
            | "MinCount" >> beam.Filter(lambda kv: kv[1] >= ps.min_count)
            | "Flat" >> beam.Map(lambda kv: (kv[0][0], kv[0][1], kv[1]))
            | "AllValues" >> beam.combiners.ToList()
            | "Vocabularies" >> beam.Map(_vocabularies, ps)
        )
        num_names = list(enumerate(numeric_names(ps)))

        def numbers_of(row: Row) -> Iterator[tuple[str, float]]:
            for i, name in num_names:
                if not math.isnan(row.numeric[i]):
                    yield name, row.numeric[i]

        ranges = (
            train
            | "Numbers" >> beam.FlatMap(numbers_of)
            | "MinMax" >> beam.CombinePerKey(_MinMax())
            | "AllRanges" >> beam.combiners.ToList()
            | "Ranges" >> beam.Map(_ranges, ps)
        )
        return vocabs, ranges


def _rank_in_shard(kv: tuple[int, Iterable[tuple[int, str]]]) -> Iterator[tuple[str, tuple]]:
    shard, firsts = kv
    for rank, (_, user) in enumerate(sorted(firsts)):
        yield user, (shard, rank)


def _first_seen(seen: Iterable[tuple[int, bool]]) -> tuple[int, bool]:
    """``(first-appearance key, whether a row is kept)`` of a user from those of its
    shards (associative, as a combiner must be)."""
    seen = list(seen)
    return min(k for k, _ in seen), any(kept for _, kept in seen)


def _shard_offsets(counts: Iterable[tuple[int, int]]) -> dict[int, int]:
    offsets, total = {}, 0
    for shard, count in sorted(counts):
        offsets[shard] = total
        total += count
    offsets[-1] = total  # the number of users
    return offsets


class UserIds(beam.PTransform):
    """``(user, (first-appearance key, kept))`` (one per shard of the user) ->
    ``(user, group_id)`` for users with a kept row,
    and a single-element collection with the number of users. Memory: the users first
    seen in one input shard."""

    def expand(self, firsts: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        first = (
            firsts
            | "FirstSeen" >> beam.CombinePerKey(_first_seen)
            | "WithRows" >> beam.Filter(lambda kv: kv[1][1])
            | "Key" >> beam.Map(lambda kv: (kv[0], kv[1][0]))
        )
        offsets = (
            first
            | "ShardOfFirst" >> beam.Map(lambda kv: shard_of(kv[1]))
            | "UsersPerShard" >> beam.combiners.Count.PerElement()
            | "AllShards" >> beam.combiners.ToList()
            | "Offsets" >> beam.Map(_shard_offsets)
        )
        ids = (
            first
            | "ByShard" >> beam.Map(lambda kv: (shard_of(kv[1]), (kv[1], kv[0])))
            | "GroupShard" >> beam.GroupByKey()
            | "Rank" >> beam.FlatMap(_rank_in_shard)
            | "Offset"
            >> beam.Map(
                lambda kv, off: (kv[0], off[kv[1][0]] + kv[1][1]),
                beam.pvalue.AsSingleton(offsets),
            )
        )
        users = offsets | "Users" >> beam.Map(lambda off: off[-1])
        return ids, users
