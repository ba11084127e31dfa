"""A new day's impressions prepared on top of an existing prepared dataset.

Production CTR training runs every day on the new day's log, and every day brings users
and items the model has never seen. :func:`extend_dataset` prepares the new impressions
as a dataset of their own whose ids continue those of an earlier prepared dataset:

* **vocabularies grow append-only**: every value keeps the id it had; the values that
  reach ``min_count`` in the training rows seen so far (the earlier datasets' training
  rows and the new training rows) get the next ids, most frequent first, ties by the
  value's string, as :func:`pipelines.transforms.vocabulary_order` orders a first
  vocabulary. Hashed fields need nothing;
* **scaling constants stay** those of the first training data (the earlier spec's
  ``min``/``max``), so a numeric input means what it meant to yesterday's model; with
  ``refit_scaling`` the range widens to cover the new training rows (a warm-started
  model then sees those inputs shifted: retrain from scratch after a refit);
* **histories continue across the day boundary**: a user's first new impression has
  that user's last ``max_len`` impressions of the earlier days as its history.

The new impressions are split by time with the spec's ``split_ratios`` (training,
validation and test of the new day), so the result is a dataset like any other and
trains with ``python -m feseq_tf.train --dataset NEW_DIR --warm-start RUN_DIR``. Its
records are those that preparing every day at once gives for the same impressions, up
to the ids of values (and the group ids of users) that the two preparations number
differently (``tests/test_extend.py`` builds both and compares them value by value).

What an extension needs of the earlier data lives in the prepared directory under
``extend_state/`` (written by every preparation through
:func:`pipelines.generic.build_dataset`; ``docs/data_format.md``):

* ``tail.parquet``: each user's last ``max_len`` kept impressions, their raw columns,
  in (user, time, input order);
* ``counts.json``: every vocabulary field's raw value counts over the training rows
  seen so far (values under ``min_count`` too: they may reach it later);
* ``state.json``: the columns of the tail, ``max_len``, ``min_count`` and how many
  extensions led to this dataset.

New impressions are expected at or after the earlier ones: one earlier than a carried
impression of its user still gets only the carried impressions before it as history,
and the extension counts them in ``report.json`` (``earlier_than_carried``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from feseq_tf import hashing, schema
from pipelines.parsing import CleanedTable, clean_table
from pipelines.spec import PipelineSpec
from pipelines.transforms import field_specs, history_columns, lookup_ids, scale, split_rows

STATE_DIR = "extend_state"
TAIL_FILE = "tail.parquet"
COUNTS_FILE = "counts.json"
STATE_FILE = "state.json"
STATE_FORMAT = 1


def vocabulary_fields(ps: PipelineSpec) -> list[str]:
    """The categorical fields of ``ps`` that have a vocabulary (not hashed)."""
    return [f.name for f in ps.fields if f.type == "categorical" and f.hash_buckets is None]


def training_counts(
    ps: PipelineSpec, data: CleanedTable, train_mask: np.ndarray
) -> dict[str, dict[str, int]]:
    """Every vocabulary field's raw value counts over the training rows (call before
    :func:`pipelines.transforms.encode_fields`, which consumes the codes)."""
    counts: dict[str, dict[str, int]] = {}
    for name in vocabulary_fields(ps):
        codes, uniques = data.categorical[name]
        counts[name] = _counts(codes, uniques, train_mask)
    return counts


def _counts(codes: np.ndarray, uniques: np.ndarray, mask: np.ndarray) -> dict[str, int]:
    c = np.bincount(codes[mask & (codes >= 0)], minlength=len(uniques))
    return {str(uniques[i]): int(c[i]) for i in np.flatnonzero(c)}


def merge_counts(
    old: Mapping[str, Mapping[str, int]], new: Mapping[str, Mapping[str, int]]
) -> dict[str, dict[str, int]]:
    """Per field, the sum of two value counts."""
    merged = {name: dict(values) for name, values in old.items()}
    for name, values in new.items():
        field = merged.setdefault(name, {})
        for value, n in values.items():
            field[value] = field.get(value, 0) + n
    return merged


def tail_positions(data: CleanedTable, max_len: int) -> np.ndarray:
    """Positions (in ``data``) of each user's last ``max_len`` rows, in (user, time,
    input order): what the next day's histories can reach."""
    n = data.rows
    by_user = np.lexsort((np.arange(n), data.times, data.group_id))
    group = data.group_id[by_user]
    last = np.r_[group[1:] != group[:-1], True]  # the last row of each user
    # the number of rows after each one within its user: rank from the end
    ends = np.flatnonzero(last)
    end_of = np.repeat(ends, np.diff(np.r_[-1, ends]))
    from_end = end_of - np.arange(n)
    return by_user[from_end < max_len]


def _storable(df: pd.DataFrame) -> pd.DataFrame:
    """Object columns as strings (missing kept missing), so that Parquet stores them."""
    out = df.copy()
    for name in out.columns:
        if out[name].dtype == object:
            col = out[name]
            out[name] = col.where(col.isna(), col.astype(str))
    return out


def write_state(
    out_dir: str,
    df: pd.DataFrame,
    ps: PipelineSpec,
    data: CleanedTable,
    counts: Mapping[str, Mapping[str, int]],
    extensions: int = 0,
) -> None:
    """Write ``extend_state/`` of a prepared dataset (see the module docstring).

    Args:
        out_dir: str. The prepared dataset's directory.
        df: DataFrame. The input table ``data`` was cleaned from.
        ps: PipelineSpec. Its spec.
        data: CleanedTable. The cleaned table (with its ``kept`` rows).
        counts: field -> value -> count over the training rows seen so far.
        extensions: int. How many extensions led to this dataset (0 for a first one).
    """
    if data.kept is None:
        raise ValueError("the cleaned table does not say which input rows it kept")
    columns = ps.required_columns + ([schema.ORACLE_KEY] if schema.ORACLE_KEY in df.columns else [])
    rows = data.kept[tail_positions(data, ps.max_len)]
    tail = _storable(df.iloc[rows][columns].reset_index(drop=True))
    state_dir = os.path.join(out_dir, STATE_DIR)
    os.makedirs(state_dir, exist_ok=True)
    tail.to_parquet(os.path.join(state_dir, TAIL_FILE), index=False)
    with open(os.path.join(state_dir, COUNTS_FILE), "w") as fh:
        json.dump({name: dict(sorted(v.items())) for name, v in counts.items()}, fh)
    meta = {
        "format": STATE_FORMAT, "columns": columns, "max_len": ps.max_len,
        "min_count": ps.min_count, "tail_rows": len(tail), "extensions": extensions,
    }
    with open(os.path.join(state_dir, STATE_FILE), "w") as fh:
        json.dump(meta, fh, indent=2)


def load_state(prepared_dir: str) -> tuple[pd.DataFrame, dict[str, dict[str, int]], dict[str, Any]]:
    """``(tail, counts, meta)`` of a prepared dataset's ``extend_state/``.

    Raises:
        ValueError: the dataset has no (readable) state.
    """
    state_dir = os.path.join(prepared_dir, STATE_DIR)
    path = os.path.join(state_dir, STATE_FILE)
    if not os.path.isfile(path):
        raise ValueError(
            f"{prepared_dir} has no {STATE_DIR}/ to extend: prepare it again with this version "
            "of the package's pipelines (python -m pipelines.generic ...)"
        )
    with open(path) as fh:
        meta = json.load(fh)
    if meta.get("format") != STATE_FORMAT:
        raise ValueError(f"{path}: unknown state format {meta.get('format')!r}")
    tail = pd.read_parquet(os.path.join(state_dir, TAIL_FILE))
    with open(os.path.join(state_dir, COUNTS_FILE)) as fh:
        counts = json.load(fh)
    return tail, counts, meta


def check_extends(ps: PipelineSpec, spec: schema.DatasetSpec, meta: Mapping[str, Any]) -> None:
    """Refuse a pipeline spec that does not describe the earlier dataset's fields.

    Raises:
        ValueError: one line naming the first difference.
    """
    old = {f.name: f for f in spec.fields if not f.history_only}
    seq = {f.name for f in ps.sequential_fields}
    for f in ps.fields:
        if f.name not in old:
            raise ValueError(f"field {f.name!r} is not a field of the dataset being extended")
        o = old.pop(f.name)
        hashed = f.hash_buckets or 0
        if (o.type, o.role, o.sequential, o.hash_buckets) != (f.type, f.role, f.name in seq, hashed):
            raise ValueError(
                f"field {f.name!r} changed: it was {o.type}/{o.role}"
                f"{'/sequential' if o.sequential else ''}"
                f"{f'/{o.hash_buckets} hash buckets' if o.hash_buckets else ''} in the dataset "
                "being extended"
            )
    if old:
        raise ValueError(f"field {sorted(old)[0]!r} of the dataset being extended is not in the spec")
    for name, mine, theirs in (
        ("max_len", ps.max_len, meta["max_len"]),
        ("min_count", ps.min_count, meta["min_count"]),
        ("feedback", ps.feedback, any(f.name == schema.FEEDBACK_FIELD for f in spec.fields)),
        ("label", ps.label, spec.label),
    ):
        if mine != theirs:
            raise ValueError(f"{name} is {mine!r} but the dataset being extended has {theirs!r}")


def grow_vocabulary(
    old_values: list[str], counts: Mapping[str, int], uniques: np.ndarray, min_count: int
) -> tuple[np.ndarray, list[str]]:
    """The earlier vocabulary with the values that reached ``min_count`` appended.

    Returns:
        (id of every code of ``uniques``, the grown vocabulary in id order).
    """
    known = set(old_values)
    new = sorted((v for v, n in counts.items() if n >= min_count and v not in known),
                 key=lambda v: (-counts[v], v))
    values = list(old_values) + new
    index = {v: i + schema.NUM_RESERVED_IDS for i, v in enumerate(values)}
    id_of_code = np.array([index.get(str(u), schema.OOV_ID) for u in uniques], dtype=np.int64)
    return id_of_code, values


def extend_dataset(
    df: pd.DataFrame,
    ps: PipelineSpec,
    base_dir: str,
    out_dir: str | None,
    *,
    refit_scaling: bool = False,
    progress: bool = True,
    read_report: Mapping[str, Any] | None = None,
):
    """Prepare ``df`` (the new impressions) on top of the prepared dataset ``base_dir``.

    Args:
        df: DataFrame. The new impressions, in the layout of the spec's columns.
        ps: PipelineSpec. The spec ``base_dir`` was prepared with (fields, ``max_len``,
            ``min_count``, ``feedback`` must match; the split ratios and shards may differ).
        base_dir: str. The prepared dataset to extend (with its ``extend_state/``).
        out_dir: str or None. Where to write the new dataset (None: compute only).
        refit_scaling: bool. Widen the numeric fields' ranges to the new training rows
            instead of keeping the earlier constants.
        progress: bool. Print one line per step to standard error.
        read_report: dict or None. What the raw reader did (merged into ``report.json``).

    Returns:
        PrepareResult, as :func:`pipelines.generic.build_dataset` returns it.

    Raises:
        ValueError: the spec does not describe ``base_dir``'s fields, ``base_dir`` has no
            state, or no new row survives cleaning (the message says which).
    """
    from pipelines.generic import _make_report, split_tables  # as every preparation
    from pipelines.progress import StepTimer
    from pipelines.writer import PrepareResult, write_dataset, write_json

    base_spec = schema.DatasetSpec.load(base_dir)
    tail, old_counts, meta = load_state(base_dir)
    check_extends(ps, base_spec, meta)
    columns = list(meta["columns"])
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"the new impressions lack the columns {missing} the dataset was prepared from")
    timer = StepTimer(ps.name, progress)
    n_tail = len(tail)
    with timer.step("parse and clean") as info:
        info["rows"] = len(df)
        combined = pd.concat([tail, df[columns]], ignore_index=True)
        data = clean_table(combined, ps, allow_empty=True)
        if data.kept is None or int(np.count_nonzero(data.kept < n_tail)) != n_tail:
            raise ValueError(f"{base_dir}: its carried impressions no longer parse with this spec")
        new_pos = np.flatnonzero(data.kept >= n_tail)
        if new_pos.size == 0:
            raise ValueError(f"no new impression left after cleaning {len(df)} rows "
                             f"(dropped by reason: {data.dropped})")
    with timer.step("split by time") as info:
        info["rows"] = new_pos.size
        rows_of = {s: new_pos[r] for s, r in split_rows(data.times[new_pos], ps).items()}
        train_mask = np.zeros(data.rows, dtype=bool)
        train_mask[rows_of["train"]] = True
    with timer.step("vocabularies and scaling") as info:
        info["rows"] = len(rows_of["train"])
        counts = merge_counts(old_counts, training_counts(ps, data, train_mask))
        encoded, vocabs, ranges, new_ids = {}, {}, {}, {}
        for f in ps.fields:
            if f.type == "categorical":
                codes, uniques = data.categorical.pop(f.name)
                if f.hash_buckets is not None:
                    id_of_code = hashing.hashed_ids_numpy(uniques, f.hash_buckets)
                else:
                    old = schema.read_vocab(base_dir, f.name)
                    id_of_code, vocabs[f.name] = grow_vocabulary(
                        old, counts[f.name], uniques, ps.min_count
                    )
                    new_ids[f.name] = len(vocabs[f.name]) - len(old)
                encoded[f.name] = lookup_ids(codes, id_of_code)
            else:
                values, missing_mask = data.numeric.pop(f.name)
                old_field = base_spec.field(f.name)
                lo, hi = float(old_field.min), float(old_field.max)
                if refit_scaling:
                    fresh = values[train_mask & ~missing_mask]
                    if fresh.size:
                        lo, hi = min(lo, float(fresh.min())), max(hi, float(fresh.max()))
                ranges[f.name] = (lo, hi)
                encoded[f.name] = scale(values, missing_mask, lo, hi)
        specs = field_specs(ps, vocabs, ranges)
    with timer.step("histories") as info:
        info["rows"] = data.rows
        out_rows = np.concatenate([rows_of[s] for s in schema.SPLITS])
        last_carried = _last_carried_time(data, n_tail)
        earlier = int(np.count_nonzero(data.times[new_pos] < last_carried[data.group_id[new_pos]]))
        table = history_columns(ps, data, encoded, out_rows)

    sizes = {s: len(rows_of[s]) for s in schema.SPLITS}
    extensions = int(meta.get("extensions", 0)) + 1
    spec = ps.dataset_spec(
        specs, has_oracle=data.oracle is not None, split_sizes=sizes,
        extra={"rows_in": len(df), "extends": {
            "dataset": os.path.abspath(base_dir), "extensions": extensions,
            "new_ids": new_ids, "refit_scaling": bool(refit_scaling),
        }},
    )
    tables = split_tables(table, spec, sizes)
    report_in = {"rows_read": len(df), **dict(read_report or {})}
    data.rows_in = len(df)
    report = _make_report(ps, spec, tables, data, report_in, timer)
    # counted over the new impressions only, not the carried ones
    report["rows_kept"] = int(new_pos.size)
    report["users"] = int(np.unique(data.group_id[new_pos]).size)
    report["extends"] = dict(spec.extra["extends"], earlier_than_carried=earlier)
    result = PrepareResult(spec=spec, report=report, tables=tables, vocabularies=vocabs)
    if out_dir is not None:
        if os.path.abspath(out_dir) == os.path.abspath(base_dir):
            raise ValueError("the extended dataset must go to a new directory, not the one it extends")
        with timer.step("write") as info:
            info["rows"] = new_pos.size
            write_dataset(result, out_dir, num_shards=ps.num_shards, records=True)
            write_state(out_dir, combined, ps, data, counts, extensions=extensions)
        write_json(os.path.join(out_dir, "report.json"), report)
        spec.save(out_dir)  # last: a dataset without a spec is incomplete
        timer.log(f"wrote {out_dir}: " + ", ".join(f"{s} {sizes[s]:,}" for s in schema.SPLITS)
                  + "; new ids: " + ", ".join(f"{k} +{v}" for k, v in new_ids.items()))
    return result


def _last_carried_time(data: CleanedTable, n_tail: int) -> np.ndarray:
    """Per group id, the latest timestamp among the carried rows (min int64 for none)."""
    last = np.full(int(data.group_id.max()) + 1, np.iinfo(np.int64).min, dtype=np.int64)
    carried = data.kept < n_tail
    np.maximum.at(last, data.group_id[carried], data.times[carried])
    return last
