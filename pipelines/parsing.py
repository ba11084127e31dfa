"""Raw columns -> typed numpy arrays, and the cleaning of an impression table.

The rules of :mod:`feseq_tf.raw_format` (trimming, missing-value tokens, number and
integer-timestamp patterns, canonical strings), applied vectorised with pyarrow: no
Python loop over rows. :func:`clean_table` parses every column a
:class:`~pipelines.spec.PipelineSpec` names and drops the unusable rows, counting each
by its first reason.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from feseq_tf import raw_format, schema
from pipelines.spec import PipelineSpec

_MAX_EXACT_INT = float(raw_format.MAX_EXACT_INTEGER)


def trim(arr: pa.Array) -> pa.Array:
    """A string array without :data:`~feseq_tf.raw_format.WHITESPACE` at either end
    (Arrow's ``utf8_trim_whitespace`` removes exactly that set)."""
    return pc.utf8_trim_whitespace(arr)


def missing_mask(arr: pa.Array) -> pa.Array:
    """Where a trimmed string array is null or a missing-value token (boolean array)."""
    tokens = pa.array(raw_format.MISSING_TOKENS)
    return pc.or_kleene(pc.is_null(arr), pc.is_in(arr, value_set=tokens))


def full_match(arr: pa.Array, pattern: str) -> np.ndarray:
    """Where a trimmed string array matches one of the anchored patterns of
    :mod:`feseq_tf.raw_format` (bool numpy array; False at nulls)."""
    ok = pc.fill_null(pc.match_substring_regex(arr, pattern), False)
    return ok.to_numpy(zero_copy_only=False)


def integer_timestamps(arr: pa.Array) -> np.ndarray:
    """Trimmed strings that match :data:`~feseq_tf.raw_format.INTEGER_TIMESTAMP_PATTERN`
    -> int64 numpy array (exact, also beyond 2**53)."""
    digits = pc.replace_substring_regex(
        arr, pattern=raw_format.TIMESTAMP_EXTRAS_PATTERN, replacement=""
    )
    return pc.cast(digits, pa.int64()).to_numpy(zero_copy_only=False)


def _to_arrow_strings(values: Any) -> pa.Array:
    """Any column -> trimmed pyarrow string array with nulls for missing values.

    The rules of :mod:`feseq_tf.raw_format`, vectorised: values as
    :func:`~feseq_tf.raw_format.canonical_string` writes them (a float column whose
    finite values are all integral as integers), trimmed of
    :data:`~feseq_tf.raw_format.WHITESPACE` (Arrow's ``utf8_trim_whitespace`` removes
    exactly that set), missing-value tokens as nulls.
    """
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        arr = values
    else:
        series = values if isinstance(values, pd.Series) else pd.Series(values)
        dtype = series.dtype
        if pd.api.types.is_bool_dtype(dtype):
            arr = pa.array(series.astype("Int64"), from_pandas=True)
        elif pd.api.types.is_integer_dtype(dtype):
            arr = pa.array(series, from_pandas=True)
        elif pd.api.types.is_float_dtype(dtype):
            floats = series.to_numpy(dtype=np.float64, na_value=np.nan)
            finite = floats[np.isfinite(floats)]
            if np.all(finite == np.round(finite)) and np.all(np.abs(finite) < _MAX_EXACT_INT):
                arr = pa.array(series.astype("Int64"), from_pandas=True)  # 12.0 -> "12"
            else:
                arr = pa.array(floats, from_pandas=True)
        elif isinstance(dtype, pd.CategoricalDtype):
            return _to_arrow_strings(series.astype(series.cat.categories.dtype))
        else:
            try:
                arr = pa.array(series, type=pa.string(), from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                arr = pa.array(series.astype(str), type=pa.string(), from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not pa.types.is_string(arr.type) and not pa.types.is_large_string(arr.type):
        arr = pc.cast(arr, pa.string())
    arr = trim(arr)
    return pc.if_else(missing_mask(arr), pa.scalar(None, arr.type), arr)


def categorical_codes(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """Factorize a categorical column into codes and its distinct raw values.

    Values are compared as trimmed strings (integers print without a decimal point,
    integral floats such as ``12.0`` as ``"12"``); missing values get code -1.

    Returns:
        (codes int64 [n], values object array of str), codes in first-seen order.
    """
    arr = _to_arrow_strings(values)
    encoded = pc.dictionary_encode(arr)
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    uniques = np.asarray(encoded.dictionary.to_numpy(zero_copy_only=False), dtype=object)
    return codes, uniques


def numeric_values(values: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse a numeric column.

    Returns:
        (values float64 with NaN where not usable, missing mask, non-numeric mask).
    """
    if isinstance(values, pd.Series) and (
        pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype)
    ):
        out = values.to_numpy(dtype=np.float64, na_value=np.nan)
        missing = np.isnan(out)
        bad = np.isinf(out)
    elif isinstance(values, np.ndarray) and values.dtype.kind in "iuf":
        out = values.astype(np.float64)
        missing = np.isnan(out)
        bad = np.isinf(out)
    else:
        arr = _to_arrow_strings(values)
        missing = arr.is_null().to_numpy(zero_copy_only=False)
        ok = full_match(arr, raw_format.FLOAT_PATTERN)
        bad = ~ok & ~missing
        clean = pc.if_else(pa.array(ok), arr, pa.scalar(None, arr.type))
        out = pc.cast(clean, pa.float64()).to_numpy(zero_copy_only=False)
        out = np.asarray(out, dtype=np.float64)
    out = np.where(bad, np.nan, out)
    return out, missing, bad


def _datetime_seconds(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """A datetime column -> (seconds since the epoch (UTC) int64, NaT mask)."""
    if series.dt.tz is not None:
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    nat = series.isna().to_numpy()
    secs = series.to_numpy(dtype="datetime64[s]", na_value=np.datetime64("NaT"))
    return np.where(nat, 0, secs.astype(np.int64)), nat


def timestamp_values(
    values: Any, fmt: str | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parse a timestamp column into integers.

    Args:
        values: the column: integers, a datetime column (seconds since the epoch), or
            text datetimes when ``fmt`` is given.
        fmt: None for integers; ``"iso8601"`` or a ``strftime`` format (e.g.
            ``"%Y-%m-%d %H:%M:%S"``) for text datetimes.

    Returns:
        (values int64 (0 where not usable), missing, non-numeric, non-integer masks).
    """
    is_datetime = isinstance(values, pd.Series) and pd.api.types.is_datetime64_any_dtype(
        values.dtype
    )
    if is_datetime or fmt is not None:
        if is_datetime:
            out, missing = _datetime_seconds(values)
            bad = np.zeros(len(out), dtype=bool)
        else:
            text = _to_arrow_strings(values)
            missing = text.is_null().to_numpy(zero_copy_only=False)
            parsed = pd.to_datetime(
                pd.Series(text.to_numpy(zero_copy_only=False)),
                format="ISO8601" if fmt == "iso8601" else fmt,
                errors="coerce",
                utc=True,
            )
            out, nat = _datetime_seconds(parsed)
            bad = nat & ~missing
        return out, missing, bad, np.zeros(len(out), dtype=bool)
    floats, missing, bad = numeric_values(values)
    if isinstance(values, pd.Series) and pd.api.types.is_integer_dtype(values.dtype):
        return (
            values.to_numpy(dtype=np.int64, na_value=0),
            missing,
            bad,
            np.zeros(len(floats), bool),
        )
    integral = (
        np.isfinite(floats) & (floats == np.round(floats)) & (np.abs(floats) < _MAX_EXACT_INT)
    )
    non_integer = ~missing & ~bad & ~integral
    out = np.where(integral, floats, 0).astype(np.int64)
    return out, missing, bad, non_integer


@dataclasses.dataclass
class CleanedTable:
    """The kept rows of an impression table, parsed (input order)."""

    rows_in: int
    dropped: dict[str, int]
    group_id: np.ndarray  # int64, dense id of the user key
    times: np.ndarray  # int64
    label: np.ndarray  # float32
    categorical: dict[str, tuple[np.ndarray, np.ndarray]]  # codes (-1 missing), raw values
    numeric: dict[str, tuple[np.ndarray, np.ndarray]]  # float64 values, missing mask
    oracle: np.ndarray | None  # float32
    users: np.ndarray | None = None  # raw user key of each group id (object array of str)
    kept: np.ndarray | None = None  # int64, the input row of each kept row

    @property
    def rows(self) -> int:
        return len(self.times)


def clean_table(df: pd.DataFrame, ps: PipelineSpec, *, allow_empty: bool = False) -> CleanedTable:
    """Parse every column and drop unusable rows, counting each by its first reason.

    A table with no row left raises, unless ``allow_empty`` (one shard of a larger log).
    """
    n_in = len(df)
    user_codes, user_uniques = categorical_codes(df[ps.user_key])
    times, t_missing, t_bad, t_nonint = timestamp_values(df[ps.timestamp], ps.timestamp_format)
    label, l_missing, l_bad = numeric_values(df[ps.label])
    categorical = {}
    numeric = {}
    for f in ps.fields:
        if f.type == "categorical":
            categorical[f.name] = categorical_codes(df[f.name])
        else:
            numeric[f.name] = numeric_values(df[f.name])
    drops: list[tuple[str, np.ndarray]] = [
        (f"missing:{ps.user_key}", user_codes < 0),
        (f"missing:{ps.timestamp}", t_missing),
        (f"non_numeric:{ps.timestamp}", t_bad),
        (f"non_integer:{ps.timestamp}", t_nonint),
        (f"missing:{ps.label}", l_missing),
        (f"non_numeric:{ps.label}", l_bad),
        (f"bad_label:{ps.label}", ~l_missing & ~l_bad & (label != 0) & (label != 1)),
    ]
    drops += [(f"non_numeric:{name}", bad) for name, (_, _, bad) in numeric.items()]
    if ps.drop_missing:
        for f in ps.fields:
            if f.name in categorical:
                drops.append((f"missing:{f.name}", categorical[f.name][0] < 0))
            else:
                drops.append((f"missing:{f.name}", numeric[f.name][1]))
    oracle = None
    if schema.ORACLE_KEY in df.columns:
        oracle, o_missing, o_bad = numeric_values(df[schema.ORACLE_KEY])
        out_of_range = ~((oracle >= 0) & (oracle <= 1))
        drops.append((f"bad_value:{schema.ORACLE_KEY}", o_missing | o_bad | out_of_range))
    keep = np.ones(n_in, dtype=bool)
    dropped: dict[str, int] = {}
    for reason, mask in drops:
        hit = int(np.count_nonzero(mask & keep))
        if hit:
            dropped[reason] = hit
            keep &= ~mask
    if not keep.any() and not allow_empty:
        raise ValueError(
            f"No rows left for dataset {ps.name!r} after cleaning {n_in} rows "
            f"(dropped by reason: {dropped})."
        )
    # Codes are in first-seen order, so the dense ids are too.
    user_of_group, group_id = np.unique(user_codes[keep], return_inverse=True)
    return CleanedTable(
        rows_in=n_in,
        dropped=dropped,
        group_id=group_id.astype(np.int64),
        times=times[keep],
        label=label[keep].astype(np.float32),
        categorical={k: (codes[keep], uniques) for k, (codes, uniques) in categorical.items()},
        numeric={k: (v[keep], missing[keep]) for k, (v, missing, _) in numeric.items()},
        oracle=None if oracle is None else oracle[keep].astype(np.float32),
        users=user_uniques[user_of_group],
        kept=np.flatnonzero(keep),
    )
