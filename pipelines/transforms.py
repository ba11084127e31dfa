"""The transforms of a cleaned impression table: time split, vocabularies, min-max
scaling, histories.

1. sort all samples by time (stable) and split them by ``split_ratios``
   (:func:`split_rows`); training rows optionally in a seeded random order;
2. categorical vocabularies from the training split only, values seen fewer than
   ``min_count`` times map to the OOV id 1 (padding is 0); fields with
   ``hash_buckets`` get hashed ids instead (:mod:`feseq_tf.hashing`); numeric fields
   are min-max scaled with training statistics (:func:`encode_fields`);
3. each impression's history is the user's previous impressions, at most ``max_len``,
   most recent last, left-padded with 0, with the aligned raw timestamps and
   ``hist_len``; with ``feedback`` on, also the labels of those impressions
   (:func:`history_columns`).

Every step is vectorised (numpy, no Python loop over rows or users); histories are cut
from sliding windows over the rows sorted by (user, time).
"""

from __future__ import annotations

import fractions
from collections.abc import Sequence

import numpy as np

from feseq_tf import hashing, schema
from pipelines.parsing import CleanedTable
from pipelines.spec import PipelineSpec


def split_bounds(n: int, ratios: Sequence[float]) -> tuple[int, int]:
    """End of train and end of valid among ``n`` time-sorted samples (floor of the
    cumulative proportions, e.g. 8:1:1 of 10 -> (8, 9))."""
    fr = [fractions.Fraction(str(r)) for r in ratios]
    total = sum(fr)
    return int(n * fr[0] // total), int(n * (fr[0] + fr[1]) // total)


def build_vocabulary(
    codes: np.ndarray, uniques: np.ndarray, train_mask: np.ndarray, min_count: int
) -> tuple[np.ndarray, list[str]]:
    """Vocabulary of one categorical field from the training rows.

    Returns:
        (id of every code: 2.. for kept values, OOV for the rest; the kept raw values in
        id order, most frequent first, ties by the value's string).
    """
    counts = np.bincount(codes[train_mask & (codes >= 0)], minlength=len(uniques))
    order = vocabulary_order(uniques, counts, min_count)
    id_of_code = np.full(len(uniques), schema.OOV_ID, dtype=np.int64)
    id_of_code[order] = np.arange(schema.NUM_RESERVED_IDS, schema.NUM_RESERVED_IDS + order.size)
    return id_of_code, [str(v) for v in uniques[order]]


def vocabulary_order(uniques: np.ndarray, counts: np.ndarray, min_count: int) -> np.ndarray:
    """Indices of the distinct values seen at least ``min_count`` times, in id order:
    most frequent first, ties by the value's string."""
    kept = np.flatnonzero(np.asarray(counts) >= min_count)
    if kept.size == 0:
        return kept
    strings = np.asarray(uniques[kept], dtype=str)
    by_string = np.argsort(strings, kind="stable")
    by_count = np.argsort(-np.asarray(counts)[kept][by_string], kind="stable")
    return kept[by_string[by_count]]


def lookup_ids(codes: np.ndarray, id_of_code: np.ndarray) -> np.ndarray:
    """Ids of coded values (code -1, a missing value, gets the OOV id)."""
    ids = np.full(len(codes), schema.OOV_ID, dtype=np.int64)
    present = codes >= 0
    ids[present] = id_of_code[codes[present]]
    return ids


def scale(values: np.ndarray, missing: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Min-max scaling with the training range ``[lo, hi]`` (float32; missing -> 0)."""
    scaled = (values - lo) / (hi - lo) if hi > lo else np.zeros(len(values))
    return np.where(missing, 0.0, scaled).astype(np.float32)


def split_rows(times: np.ndarray, ps: PipelineSpec) -> dict[str, np.ndarray]:
    """Row indices of each split, in record order (train optionally shuffled)."""
    time_order = np.argsort(times, kind="stable")
    b1, b2 = split_bounds(len(times), ps.split_ratios)
    if b1 == 0:
        raise ValueError(f"The training split of {ps.name!r} is empty ({len(times)} samples).")
    rows = {"train": time_order[:b1], "valid": time_order[b1:b2], "test": time_order[b2:]}
    if ps.shuffle_train:
        rows["train"] = rows["train"][np.random.default_rng(ps.seed).permutation(b1)]
    return rows


def encode_fields(
    ps: PipelineSpec, data: CleanedTable, train_mask: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, list[str]], list[schema.FieldSpec]]:
    """Vocabulary ids and scaled numbers with training statistics (consumes ``data``).

    Returns:
        (field -> ids or scaled values, field -> vocabulary values in id order (no
        entry for a hashed field), the field specs; with ``feedback`` on, the feedback
        field's vocabulary and spec).
    """
    encoded: dict[str, np.ndarray] = {}
    vocabs: dict[str, list[str]] = {}
    ranges: dict[str, tuple[float, float]] = {}
    for f in ps.fields:
        if f.type == "categorical":
            codes, uniques = data.categorical.pop(f.name)
            if f.hash_buckets is not None:  # no vocabulary: every value has its bucket
                id_of_code = hashing.hashed_ids_numpy(uniques, f.hash_buckets)
            else:
                id_of_code, vocabs[f.name] = build_vocabulary(
                    codes, uniques, train_mask, ps.min_count
                )
            encoded[f.name] = lookup_ids(codes, id_of_code)
        else:
            values, missing = data.numeric.pop(f.name)
            train_values = values[train_mask & ~missing]
            lo = float(train_values.min()) if train_values.size else 0.0
            hi = float(train_values.max()) if train_values.size else 0.0
            ranges[f.name] = (lo, hi)
            encoded[f.name] = scale(values, missing, lo, hi)
    return encoded, vocabs, field_specs(ps, vocabs, ranges)


def field_specs(
    ps: PipelineSpec,
    vocabs: dict[str, list[str]],
    ranges: dict[str, tuple[float, float]],
) -> list[schema.FieldSpec]:
    """The field specs of the dataset spec, from the vocabularies (field -> values in
    id order) and the training ranges of numeric fields (field -> (min, max)); with
    ``feedback`` on, adds the feedback field and its vocabulary to ``vocabs``."""
    specs: list[schema.FieldSpec] = []
    seq_names = {f.name for f in ps.sequential_fields}
    for f in ps.fields:
        common = dict(name=f.name, role=f.role, type=f.type, sequential=f.name in seq_names)
        if f.type != "categorical":
            lo, hi = ranges[f.name]
            specs.append(schema.FieldSpec(**common, min=lo, max=hi))
        elif f.hash_buckets is not None:
            vocab_size = f.hash_buckets + schema.NUM_RESERVED_IDS
            specs.append(
                schema.FieldSpec(**common, vocab_size=vocab_size, hash_buckets=f.hash_buckets)
            )
        else:
            vocab_size = len(vocabs[f.name]) + schema.NUM_RESERVED_IDS
            specs.append(schema.FieldSpec(**common, vocab_size=vocab_size))
    if ps.feedback:
        vocabs[schema.FEEDBACK_FIELD] = list(schema.FEEDBACK_VALUES)
        specs.append(
            schema.FieldSpec(
                name=schema.FEEDBACK_FIELD,
                role="context",
                type="categorical",
                sequential=True,
                vocab_size=len(schema.FEEDBACK_VALUES) + schema.NUM_RESERVED_IDS,
                history_only=True,
            )
        )
    return specs


def history_columns(
    ps: PipelineSpec,
    data: CleanedTable,
    encoded: dict[str, np.ndarray],
    out_rows: np.ndarray,
) -> dict[str, np.ndarray]:
    """Every record feature for the rows ``out_rows`` (consumes ``encoded``).

    Rows are sorted by (user, time, input position); an impression's k-th previous
    impression is then k places before it when it is at least k places from its
    user's first one. Column j of a history holds the impression ``L - j`` places back.
    Histories are cut from sliding windows over the user-sorted values, so every
    output row is one contiguous read.
    """
    L = ps.max_len
    n = data.rows
    by_user = np.lexsort((np.arange(n), data.times, data.group_id))
    sorted_pos = np.empty(n, dtype=np.int64)
    sorted_pos[by_user] = np.arange(n)
    sorted_group = data.group_id[by_user]
    first = np.zeros(n, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])
    first[starts] = starts
    np.maximum.accumulate(first, out=first)
    pos = sorted_pos[out_rows]
    earlier = pos - first[pos]  # impressions of the same user before this one
    other = earlier[:, None] < np.arange(L, 0, -1)[None, :]  # another user's or padding

    def history(values: np.ndarray) -> np.ndarray:
        # Windows over the user-sorted values: window p holds sorted positions p-L..p-1.
        padded = np.zeros(n + L, dtype=values.dtype)
        padded[L:] = values[by_user]
        hist = np.lib.stride_tricks.sliding_window_view(padded, L)[pos]
        np.copyto(hist, 0, where=other)
        return hist

    seq_names = {f.name for f in ps.sequential_fields}
    columns: dict[str, np.ndarray] = {}
    for f in ps.fields:
        values = encoded.pop(f.name)
        columns[f.name] = values[out_rows]
        if f.name in seq_names:
            columns[f.name + schema.HIST_SUFFIX] = history(values)
    columns[ps.timestamp] = data.times[out_rows]
    columns[ps.timestamp + schema.HIST_SUFFIX] = history(data.times)
    if ps.feedback:
        hist_labels = history(schema.NUM_RESERVED_IDS + data.label.astype(np.int64))
        columns.update(
            _feedback_columns(
                hist_labels, columns[ps.timestamp + schema.HIST_SUFFIX], data.times[out_rows], other
            )
        )
    columns[schema.HIST_LEN] = np.minimum(earlier, L).astype(np.int64)
    columns[schema.GROUP_KEY] = data.group_id[out_rows]
    columns[ps.label] = data.label[out_rows]
    if data.oracle is not None:
        columns[schema.ORACLE_KEY] = data.oracle[out_rows]
    return columns


def _feedback_columns(
    hist_labels: np.ndarray, hist_times: np.ndarray, times: np.ndarray, padding: np.ndarray
) -> dict[str, np.ndarray]:
    """The feedback field's columns: the unknown id at the target, and the history's
    labels as ids (``hist_labels`` [n, L]: label + 2, 0 at padding) where known.

    A history impression at the target's own timestamp stays in the history (as for
    every field) but its label is written as unknown: it is not known when the target
    is shown.
    """
    hist = hist_labels.copy()
    hist[(hist_times == times[:, None]) & ~padding] = schema.FEEDBACK_UNKNOWN_ID
    target = np.full(len(times), schema.FEEDBACK_UNKNOWN_ID, dtype=np.int64)
    return {schema.FEEDBACK_FIELD: target, schema.FEEDBACK_FIELD + schema.HIST_SUFFIX: hist}
