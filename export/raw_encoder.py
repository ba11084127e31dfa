"""Raw request values -> the model's inputs, inside the serving graph (TF string ops).

The rules for raw values (missing-value tokens, the history separator, whitespace
trimming, number and integer-timestamp patterns, the vocabulary file format) come from
:mod:`feseq_tf.raw_format`, as they do for the pipelines and the client; this module
writes them as TensorFlow ops.

Inside the graph: whitespace trimming, vocabulary lookup (the vocabularies travel as
SavedModel assets) or, for a field with ``hash_buckets``, the hash buckets of
:mod:`feseq_tf.hashing`, OOV, min-max scaling with the training statistics, truncation
and left-padding to ``max_len``, ``hist_len``; the model itself computes the time intervals.
The lookups run in the export wrapper, outside the trained Keras model (whose graph
stays XLA-compilable). The request layout is described in :mod:`export.contract`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from export.contract import request_fields
from feseq_tf import raw_format
from feseq_tf.hashing import hashed_ids
from feseq_tf.raw_format import HISTORY_SEPARATOR, MISSING_TOKENS
from feseq_tf.schema import HIST_LEN, NUM_RESERVED_IDS, OOV_ID, PAD_ID, DatasetSpec, FieldSpec

# The vocabulary asset: "<field>\t<raw value>" per line, fields in spec order.
VOCABULARY_ASSET = "vocabulary.txt"
KEY_SEPARATOR = "\t"

# Raw values are trimmed of raw_format.WHITESPACE. tf.strings.strip removes its ASCII
# part; the regex runs only for a batch holding one of the other characters at all.
_RARE_WHITESPACE_ANYWHERE = (
    "(?s).*"
    + raw_format.character_class(
        "".join(c for c in raw_format.WHITESPACE if c not in raw_format.ASCII_WHITESPACE)
    )
    + ".*"
)


def _trim(values: tf.Tensor) -> tf.Tensor:
    """Trim :data:`feseq_tf.raw_format.WHITESPACE` as the pipelines do.

    ASCII whitespace is stripped by a fast kernel; the Unicode pattern runs only when
    the batch holds a non-ASCII space or a control separator at all.
    """
    stripped = tf.strings.strip(values)
    special = tf.strings.regex_full_match(
        tf.strings.reduce_join(tf.reshape(stripped, [-1])), _RARE_WHITESPACE_ANYWHERE
    )
    return tf.cond(
        special,
        lambda: tf.strings.regex_replace(stripped, raw_format.TRIM_PATTERN, ""),
        lambda: stripped,
    )


def _is_missing(values: tf.Tensor) -> tf.Tensor:
    """True where a trimmed string is a missing-value token (``raw_format.MISSING_TOKENS``)."""
    tokens = tf.constant(MISSING_TOKENS)
    return tf.reduce_any(tf.equal(values[..., None], tokens), axis=-1)


def _is_number(values: tf.Tensor) -> tf.Tensor:
    """True where a trimmed string is a number (``raw_format.FLOAT_PATTERN``)."""
    return tf.strings.regex_full_match(values, raw_format.FLOAT_PATTERN)


def _is_integer_timestamp(values: tf.Tensor) -> tf.Tensor:
    """True where a trimmed string is an integer timestamp
    (``raw_format.INTEGER_TIMESTAMP_PATTERN``)."""
    return tf.strings.regex_full_match(values, raw_format.INTEGER_TIMESTAMP_PATTERN)


def _timestamps(values: tf.Tensor) -> tf.Tensor:
    """Trimmed integer timestamps (checked by :func:`_is_integer_timestamp`) -> int64."""
    digits = tf.strings.regex_replace(values, raw_format.TIMESTAMP_EXTRAS_PATTERN, "")
    return tf.strings.to_number(digits, out_type=tf.int64)


def _by_field(fields: Sequence[FieldSpec], stacked: tf.Tensor) -> dict[str, tf.Tensor]:
    """``[B, K]`` values of ``fields`` (one column each) -> ``{field name: [B]}``."""
    columns = tf.unstack(stacked, len(fields), axis=1)
    return dict(zip([f.name for f in fields], columns, strict=True))


class RawFeatureEncoder(tf.Module):
    """Raw request values -> the model's input tensors, as the pipelines encode them.

    The work is vectorised over fields (one stacked lookup for every categorical
    value, one split for every history), so the serving graph stays small and its
    latency flat in the number of fields.

    Args:
        spec: DatasetSpec. Fields, vocabulary sizes, scaling statistics, max_len.
        vocab_dir: str. Directory holding ``<field>.txt`` for every categorical field
            but the hashed ones (one raw value per line, the first has id 2).
        name: str. Module name. Defaults to ``"raw_feature_encoder"``.

    Call arguments:
        raw: dict of tensors named and typed as
            :func:`export.contract.serving_input_signature`.

    Returns:
        A dict of tensors named as the model's inputs: int32 ids, float32 scaled
        numbers, int64 timestamps, left-padded ``[B, max_len]`` histories and int32
        ``hist_len``.

    Raises (when called):
        tf.errors.InvalidArgumentError: naming the inputs at fault, when inputs have
        different numbers of rows, a history has the wrong rank or another number of
        entries than ``<time_field>_list``, a history timestamp is not an integer, a
        numeric history entry is not a number, or a number is infinite.

    Example:
    >>> encoder = RawFeatureEncoder(spec, "runs/feseq/vocab")
    >>> inputs = encoder({"user_id": tf.constant(["10004304"]), ...})
    """

    def __init__(self, spec: DatasetSpec, vocab_dir: str, name: str = "raw_feature_encoder"):
        super().__init__(name=name)
        self.spec = spec
        lines: list[str] = []
        offsets: dict[str, int] = {}
        for f in spec.fields:
            if not f.is_categorical or f.is_hashed:  # a hashed field has no vocabulary
                continue
            if KEY_SEPARATOR in f.name:
                raise ValueError(f"Field name {f.name!r} must not contain a tab.")
            path = os.path.join(vocab_dir, f"{f.name}.txt")
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"No vocabulary file for categorical field {f.name!r} at {path}."
                )
            values = raw_format.read_vocabulary(path)
            expected = f.vocab_size - NUM_RESERVED_IDS
            if len(values) != expected:
                raise ValueError(
                    f"Vocabulary {path} has {len(values)} values but the dataset spec says "
                    f"field {f.name!r} has vocab_size {f.vocab_size} ({expected} values plus "
                    f"the {NUM_RESERVED_IDS} reserved ids): the run's files do not match."
                )
            tokens = sorted(set(values) & set(MISSING_TOKENS))
            if tokens:
                raise ValueError(
                    f"Vocabulary {path} holds the missing-value token(s) {tokens}: the pipelines "
                    "map those to the OOV id, so they cannot have ids of their own."
                )
            offsets[f.name] = len(lines)
            lines += [f"{f.name}{KEY_SEPARATOR}{v}" for v in values]
        self.offsets = offsets
        # One table for every field: key "<field>\t<raw value>", value its line number.
        # The file is the SavedModel asset; the table reads it before this returns.
        self._asset_dir = tempfile.mkdtemp(prefix="feseq_vocabulary_")
        weakref.finalize(self, shutil.rmtree, self._asset_dir, True)
        path = os.path.join(self._asset_dir, VOCABULARY_ASSET)
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            fh.writelines(line + "\n" for line in lines)
        self.table = None
        if lines:
            initializer = tf.lookup.TextFileInitializer(
                path,
                key_dtype=tf.string,
                key_index=tf.lookup.TextFileIndex.WHOLE_LINE,
                value_dtype=tf.int64,
                value_index=tf.lookup.TextFileIndex.LINE_NUMBER,
            )
            self.table = tf.lookup.StaticHashTable(initializer, default_value=-1)

    # ---- helpers ---------------------------------------------------------------------------
    def _ids(self, fields: Sequence[FieldSpec], which: tf.Tensor, values: tf.Tensor) -> tf.Tensor:
        """Trimmed raw strings of ``fields[which]`` -> int32 ids (missing, unseen -> OOV;
        a hashed field's present values -> their hash buckets)."""
        oov = tf.constant(OOV_ID, tf.int64)
        ids = tf.fill(tf.shape(values), oov)
        if self.table is not None:
            prefixes = tf.constant([f.name + KEY_SEPARATOR for f in fields])
            offsets = tf.constant(
                [self.offsets.get(f.name, 0) - NUM_RESERVED_IDS for f in fields], tf.int64
            )
            # Missing-value tokens are never in a vocabulary (checked at construction): OOV.
            line = self.table.lookup(tf.strings.join([tf.gather(prefixes, which), values]))
            ids = tf.where(line < 0, oov, line - tf.gather(offsets, which))
        bucket_counts = sorted({f.hash_buckets for f in fields if f.is_hashed})
        if bucket_counts:  # one hash of the values per distinct bucket count
            buckets = tf.gather(tf.constant([f.hash_buckets for f in fields], tf.int64), which)
            for n in bucket_counts:
                ids = tf.where(tf.equal(buckets, n), hashed_ids(values, n), ids)
            ids = tf.where((buckets > 0) & _is_missing(values), oov, ids)
        return tf.cast(ids, tf.int32)

    @staticmethod
    def _scaled(fields: Sequence[FieldSpec], which: tf.Tensor, values: tf.Tensor) -> tf.Tensor:
        """float64 raw numbers of ``fields[which]`` (NaN = missing) -> float32 min-max
        scaled with the training statistics, missing -> 0 (as the pipelines store them)."""
        lo = tf.constant([f.min for f in fields], tf.float64)
        span = tf.constant([f.max - f.min if f.max > f.min else 0.0 for f in fields], tf.float64)
        lo, span = tf.gather(lo, which), tf.gather(span, which)
        scaled = tf.math.divide_no_nan(values - lo, span)  # max == min scales to 0
        return tf.cast(tf.where(tf.math.is_nan(values), tf.zeros_like(scaled), scaled), tf.float32)

    @staticmethod
    def _assert_none(bad: tf.Tensor, names: Sequence[str], message: str) -> tf.Operation:
        """Fail with ``message`` and the names of the inputs where ``bad`` [K] is True."""
        return tf.debugging.Assert(
            tf.logical_not(tf.reduce_any(bad)),
            [tf.constant(message), tf.boolean_mask(tf.constant(list(names)), bad)],
            summarize=max(len(names), 1),
        )

    def _tokens(self, histories: Sequence[tf.Tensor], batch: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """History inputs -> (trimmed non-empty entries [N], input index of each [N],
        entries per row and input [B, K], first entry of each row and input [B, K])."""
        K = len(histories)
        joined = []
        for raw in histories:  # [B] joined strings or [B, n] lists -> [B] joined strings
            rows = tf.reshape(raw, tf.stack([batch, tf.size(raw) // tf.maximum(batch, 1)]))
            joined.append(tf.strings.reduce_join(rows, axis=1, separator=HISTORY_SEPARATOR))
        pieces = tf.strings.split(tf.reshape(tf.stack(joined, axis=1), [-1]), HISTORY_SEPARATOR)
        tokens = _trim(pieces.values)
        keep = tf.not_equal(tokens, "")  # empty entries are padding (and "" no history)
        group = tf.boolean_mask(pieces.value_rowids(), keep)  # b * K + k
        tokens = tf.boolean_mask(tokens, keep)
        counts = tf.math.unsorted_segment_sum(tf.ones_like(group), group, batch * K)
        starts = tf.reshape(tf.cumsum(counts, exclusive=True), tf.stack([batch, K]))
        which = tf.cast(group % K, tf.int32)
        return tokens, which, tf.reshape(counts, tf.stack([batch, K])), starts

    def _left_pad(
        self, values: tf.Tensor, counts: tf.Tensor, starts: tf.Tensor, pad: Any
    ) -> tf.Tensor:
        """Flat entries -> [B, K, max_len]: the most recent max_len of each, left-padded."""
        L = self.spec.max_len
        offset = counts[..., None] - L + tf.range(L, dtype=counts.dtype)
        total = tf.shape(values, out_type=counts.dtype)[0]
        index = tf.where(offset >= 0, starts[..., None] + offset, total)  # total -> the pad
        return tf.gather(tf.concat([values, tf.constant([pad], values.dtype)], axis=0), index)

    # ---- the whole request ------------------------------------------------------------------
    def __call__(self, raw: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        spec = self.spec
        scalar_cat = [f for f in request_fields(spec) if f.is_categorical]
        scalar_num = [f for f in request_fields(spec) if not f.is_categorical]
        seq = list(spec.sequential_fields)
        hist_names = [f.hist_name for f in seq]
        time_hist = spec.time_hist_name
        times = raw[spec.time_field]
        batch = tf.shape(times)[0]

        # Shapes first: every input has the batch's rows, histories are [B] or [B, n].
        all_hist = hist_names + [time_hist]
        ranks = tf.stack([tf.rank(raw[n]) for n in all_hist])
        rank_check = self._assert_none(
            tf.logical_or(ranks < 1, ranks > 2),
            all_hist,
            "histories must be one string per row ([B]) or one list per row ([B, n]); wrong:",
        )
        with tf.control_dependencies([rank_check]):
            names = [f.name for f in request_fields(spec)] + all_hist
            rows = tf.stack([tf.shape(raw[n])[0] for n in names])
        row_check = self._assert_none(
            tf.not_equal(rows, batch),
            names,
            f"every input must have as many rows as {spec.time_field}; wrong:",
        )
        with tf.control_dependencies([row_check]):
            batch = tf.identity(batch)
        out: dict[str, tf.Tensor] = {}
        for f in spec.history_only_fields:  # no target value: unknown, as in the records
            out[f.name] = tf.fill([batch], tf.constant(OOV_ID, tf.int32))

        # Non-history values: one lookup for all categorical fields, vectorised scaling.
        if scalar_cat:
            values = _trim(tf.stack([raw[f.name] for f in scalar_cat], axis=1))  # [B, C]
            which = tf.broadcast_to(tf.range(len(scalar_cat)), tf.shape(values))
            ids = self._ids(scalar_cat, which, values)
            out.update(_by_field(scalar_cat, ids))
        checks = []
        if scalar_num:
            values = tf.stack([raw[f.name] for f in scalar_num], axis=1)  # [B, M]
            checks.append(
                self._assert_none(
                    tf.reduce_any(tf.math.is_inf(values), axis=0),
                    [f.name for f in scalar_num],
                    "numbers must be finite (NaN means missing); infinite in:",
                )
            )
            which = tf.broadcast_to(tf.range(len(scalar_num)), tf.shape(values))
            scaled = self._scaled(scalar_num, which, values)
            out.update(_by_field(scalar_num, scaled))

        # Timestamps of the history: their own split, parsed as integers.
        t_tokens, _, t_counts, t_starts = self._tokens([raw[time_hist]], batch)
        checks.append(
            self._assert_none(
                tf.logical_not(tf.reduce_all(_is_integer_timestamp(t_tokens)))[None],
                [time_hist],
                "history timestamps must be integers; wrong in:",
            )
        )
        with tf.control_dependencies(checks[-1:]):
            t_values = _timestamps(t_tokens)
        t_counts, t_starts = t_counts[:, 0], t_starts[:, 0]

        # The other histories: one split, one lookup, one gather for all of them.
        tokens, which, counts, starts = self._tokens([raw[n] for n in hist_names], batch)
        checks.append(
            self._assert_none(
                tf.reduce_any(tf.not_equal(counts, t_counts[:, None]), axis=0),
                hist_names,
                f"every history must have as many entries as {time_hist} in every row; wrong:",
            )
        )
        ids = self._left_pad(self._ids(seq, which, tokens), counts, starts, PAD_ID)
        padded = {"categorical": tf.unstack(ids, len(seq), axis=1)}
        if any(not f.is_categorical for f in seq):
            numeric = tf.gather(tf.constant([not f.is_categorical for f in seq]), which)
            missing = _is_missing(tokens)
            bad = numeric & ~missing & ~_is_number(tokens)
            checks.append(
                self._assert_none(
                    tf.math.unsorted_segment_max(tf.cast(bad, tf.int32), which, len(seq)) > 0,
                    hist_names,
                    "history entries must be numbers (or a missing-value token); wrong in:",
                )
            )
            with tf.control_dependencies(checks[-1:]):
                text = tf.where(numeric & ~missing, tokens, tf.constant("0"))
            numbers = tf.strings.to_number(text, out_type=tf.float64)
            numbers = tf.where(missing, tf.constant(np.nan, tf.float64), numbers)
            checks.append(
                self._assert_none(
                    tf.math.unsorted_segment_max(
                        tf.cast(tf.math.is_inf(numbers), tf.int32), which, len(seq)
                    )
                    > 0,
                    hist_names,
                    "history numbers must be finite; infinite in:",
                )
            )
            scaled = self._left_pad(self._scaled(seq, which, numbers), counts, starts, 0.0)
            padded["numeric"] = tf.unstack(scaled, len(seq), axis=1)
        for k, f in enumerate(seq):
            out[f.hist_name] = padded["categorical" if f.is_categorical else "numeric"][k]

        with tf.control_dependencies(checks):
            out[spec.time_field] = tf.identity(times)
        out[time_hist] = self._left_pad(t_values, t_counts[:, None], t_starts[:, None], 0)[:, 0]
        out[HIST_LEN] = tf.cast(tf.minimum(t_counts, spec.max_len), tf.int32)
        return out


# ---------------------------------------------------------------------------------------
# Export
