"""Export a trained FESeq run as a versioned SavedModel that takes *raw* features.

``python -m export.savedmodel --model RUN_DIR --export-dir D [--name feseq] [--version N]``
writes ``D/<name>/<version>/``, the layout TensorFlow Serving polls (a numbered
directory per version under the model's base path). The version is written into a
hidden temporary directory next to it and renamed into place when complete, so a
server never sees a half-written version.

Signatures (both ``tensorflow/serving/predict``):

* ``serving_default``: raw fields by name -> ``probability`` float32 [B];
* ``attention``: the same inputs -> ``probability`` and ``pooling_attention`` float32
  [B, max_len + 1] (the sequence pooling layer's weights over the positions: the
  history, left-padded, oldest first, then the target last; padded positions get 0).

Inputs of both signatures (see :func:`serving_input_signature`), B rows:

* a categorical field ``<field>``: string [B], the raw value as it appears in the raw
  data (``"123"``, ``"dinner"``); unseen, rare and missing values map to the OOV id;
* a numeric field ``<field>``: float64 [B], the raw number; NaN means missing (scaled
  like the pipeline does: stored as 0.0);
* the timestamp ``<time_field>`` (``times``): int64 [B];
* every history ``<field>_list`` and ``<time_field>_list``: string, either [B] with one
  raw ``'^'``-joined string per row (``"100236^100215"``; ``""`` is no history) or
  [B, n] with one value per element (a rectangular batch of lists). Oldest first, most
  recent last; entries are trimmed and empty entries are ignored (so lists may be
  padded with ``""``; a missing value inside a history is written as a missing-value
  token such as ``"NULL"`` and maps to OOV). Only the most recent ``max_len`` entries
  are kept. Every history of a row must have as many entries as
  ``<time_field>_list``; history timestamps are integers.
* a model trained with the labels of the history (the dataset's history-only field
  ``feedback``) takes ``feedback_list`` like any history: the raw label of every
  history impression, ``"1"`` clicked or ``"0"`` not; a label not known yet is written
  as a missing-value token (``"NULL"``) and maps to the unknown id. Its target value
  is no input: the graph fills in the unknown id (the label is what is predicted).

Inside the graph: whitespace trimming, vocabulary lookup (the vocabularies travel as
SavedModel assets), OOV, min-max scaling with the training statistics, truncation and
left-padding to ``max_len``, ``hist_len``; the model itself computes the time intervals.
The lookups run in the export wrapper, outside the trained Keras model (whose graph
stays XLA-compilable).

The model is written with Keras' export API (:class:`keras.export.ExportArchive`), so
that session-based loaders (``saved_model_cli run``, TensorFlow Serving) restore its
variables; a Keras 3 model saved with plain ``tf.saved_model.save`` does not load there.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from feseq_tf import raw_format
from feseq_tf.raw_format import HISTORY_SEPARATOR, MISSING_TOKENS
from feseq_tf.schema import (
    HIST_LEN,
    NUM_RESERVED_IDS,
    OOV_ID,
    PAD_ID,
    SPEC_FILE,
    DatasetSpec,
    FieldSpec,
)

DEFAULT_MODEL_NAME = "feseq"
SERVING_SIGNATURE = "serving_default"
ATTENTION_SIGNATURE = "attention"
PROBABILITY = "probability"
POOLING_ATTENTION = "pooling_attention"
CONTRACT_FILE = os.path.join("assets.extra", "feseq_serving.json")
CONTRACT_FORMAT_VERSION = 1
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
_MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# ---------------------------------------------------------------------------------------
# Raw features -> model inputs, inside the graph
# ---------------------------------------------------------------------------------------
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


def serving_input_signature(spec: DatasetSpec) -> dict[str, tf.TensorSpec]:
    """The raw inputs of the serving signatures, by name (see the module docstring)."""
    signature: dict[str, tf.TensorSpec] = {}
    for f in _request_fields(spec):
        dtype = tf.string if f.is_categorical else tf.float64
        signature[f.name] = tf.TensorSpec([None], dtype, name=f.name)
    signature[spec.time_field] = tf.TensorSpec([None], tf.int64, name=spec.time_field)
    for name in history_input_names(spec):
        signature[name] = tf.TensorSpec(None, tf.string, name=name)
    return signature


def _request_fields(spec: DatasetSpec) -> list[FieldSpec]:
    """Fields whose target value a request gives (a history-only field has none)."""
    return [f for f in spec.fields if not f.history_only]


def history_input_names(spec: DatasetSpec) -> list[str]:
    """Names of the history inputs: ``<field>_list`` of every sequential field, then
    ``<time_field>_list``."""
    return [f.hist_name for f in spec.sequential_fields] + [spec.time_hist_name]


class RawFeatureEncoder(tf.Module):
    """Raw request values -> the model's input tensors, as the pipelines encode them.

    The work is vectorised over fields (one stacked lookup for every categorical
    value, one split for every history), so the serving graph stays small and its
    latency flat in the number of fields.

    Args:
        spec: DatasetSpec. Fields, vocabulary sizes, scaling statistics, max_len.
        vocab_dir: str. Directory holding ``<field>.txt`` for every categorical field
            (one raw value per line, the first has id 2).
        name: str. Module name. Defaults to ``"raw_feature_encoder"``.

    Call arguments:
        raw: dict of tensors named and typed as :func:`serving_input_signature`.

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
            if not f.is_categorical:
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
        """Trimmed raw strings of ``fields[which]`` -> int32 ids (missing, unseen -> OOV)."""
        if self.table is None:
            return tf.fill(tf.shape(values), tf.constant(OOV_ID, tf.int32))
        prefixes = tf.constant([f.name + KEY_SEPARATOR for f in fields])
        offsets = tf.constant(
            [self.offsets.get(f.name, 0) - NUM_RESERVED_IDS for f in fields], tf.int64
        )
        # Missing-value tokens are never in a vocabulary (checked at construction): OOV.
        line = self.table.lookup(tf.strings.join([tf.gather(prefixes, which), values]))
        ids = tf.where(line < 0, tf.constant(OOV_ID, tf.int64), line - tf.gather(offsets, which))
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
        scalar_cat = [f for f in _request_fields(spec) if f.is_categorical]
        scalar_num = [f for f in _request_fields(spec) if not f.is_categorical]
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
            names = [f.name for f in _request_fields(spec)] + all_hist
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
            out.update(
                zip(
                    [f.name for f in scalar_cat],
                    tf.unstack(ids, len(scalar_cat), axis=1),
                    strict=True,
                )
            )
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
            out.update(
                zip(
                    [f.name for f in scalar_num],
                    tf.unstack(scaled, len(scalar_num), axis=1),
                    strict=True,
                )
            )

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
# ---------------------------------------------------------------------------------------
def build_export_archive(model: Any, spec: DatasetSpec, vocab_dir: str) -> Any:
    """A :class:`keras.export.ExportArchive` with the two raw-feature signatures.

    Args:
        model: the trained FESeq Keras model (inputs as :func:`build_inputs`).
        spec: DatasetSpec the model was trained with.
        vocab_dir: str. Directory of the vocabulary files ``<field>.txt``.

    Returns:
        The archive, ready for ``write_out``.
    """
    import keras

    missing = sorted(set(spec.model_input_names()) - set(_model_input_names(model)))
    if missing:
        raise ValueError(
            f"The model does not take the inputs {missing} of its dataset spec: "
            "export a model built with feseq_tf.models.feseq.build_inputs(spec)."
        )
    encoder = RawFeatureEncoder(spec, vocab_dir)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(encoder)
    signature = [serving_input_signature(spec)]

    def serve(raw: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        probability = model(encoder(raw), training=False)
        return {PROBABILITY: tf.reshape(tf.cast(probability, tf.float32), [-1])}

    archive.add_endpoint(SERVING_SIGNATURE, serve, input_signature=signature)

    explainer = model.attention_model() if hasattr(model, "attention_model") else None
    if explainer is not None and POOLING_ATTENTION in explainer.output:

        def attention(raw: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
            outputs = explainer(encoder(raw), training=False)
            return {
                PROBABILITY: tf.reshape(tf.cast(outputs[PROBABILITY], tf.float32), [-1]),
                POOLING_ATTENTION: tf.cast(outputs[POOLING_ATTENTION], tf.float32),
            }

        archive.add_endpoint(ATTENTION_SIGNATURE, attention, input_signature=signature)
    return archive


def _model_input_names(model: Any) -> list[str]:
    inputs = model.input
    if isinstance(inputs, Mapping):
        return list(inputs)
    return [t.name for t in (inputs if isinstance(inputs, (list, tuple)) else [inputs])]


def write_saved_model(
    model: Any,
    spec: DatasetSpec,
    vocab_dir: str,
    path: str,
    *,
    model_name: str = DEFAULT_MODEL_NAME,
) -> str:
    """Write the raw-feature SavedModel of ``model`` to ``path`` (not versioned).

    Besides the SavedModel it writes ``assets.extra/feseq_serving.json``: the serving
    contract (inputs, history format, max_len, an example request) for humans and
    clients. Use :func:`export_run` for a versioned, atomically written export.

    Returns:
        ``path``.
    """
    archive = build_export_archive(model, spec, vocab_dir)
    archive.write_out(path, verbose=False)
    vocabularies = {
        f.name: raw_format.read_vocabulary(os.path.join(vocab_dir, f"{f.name}.txt"))
        for f in spec.fields
        if f.is_categorical
    }
    contract = serving_contract(
        spec, model_name=model_name, vocabularies=vocabularies,
        attention=hasattr(model, "attention_model"),
    )
    os.makedirs(os.path.join(path, os.path.dirname(CONTRACT_FILE)), exist_ok=True)
    with open(os.path.join(path, CONTRACT_FILE), "w") as fh:
        json.dump(contract, fh, indent=2)
    return path


def serving_contract(
    spec: DatasetSpec,
    *,
    model_name: str = DEFAULT_MODEL_NAME,
    vocabularies: Mapping[str, Sequence[str]] | None = None,
    attention: bool = True,
) -> dict[str, Any]:
    """The request contract of an exported model as a JSON-ready dict.

    ``attention=False`` (a baseline model, no ``attention_model()``) leaves the
    ``attention`` signature out of the listed signatures.
    """
    inputs = []
    for name, tensor_spec in serving_input_signature(spec).items():
        if name in history_input_names(spec):
            kind = "history"
        elif name == spec.time_field:
            kind = "timestamp"
        else:
            kind = spec.field(name).type
        inputs.append({"name": name, "kind": kind, "dtype": tensor_spec.dtype.name})
    contract: dict[str, Any] = {
        "format_version": CONTRACT_FORMAT_VERSION,
        "model_name": model_name,
        "dataset": spec.name,
        "signatures": {
            SERVING_SIGNATURE: [PROBABILITY],
            **({ATTENTION_SIGNATURE: [PROBABILITY, POOLING_ATTENTION]} if attention else {}),
        },
        "inputs": inputs,
        "max_len": spec.max_len,
        "history_separator": HISTORY_SEPARATOR,
        "missing_tokens": list(MISSING_TOKENS),
    }
    if vocabularies is not None:
        rows = example_rows(spec, vocabularies, 2, seed=0, unseen_share=0.0)
        contract["example_request"] = {"instances": [to_request_row(spec, r) for r in rows]}
    return contract


def next_version(base_path: str) -> int:
    """One more than the largest numeric version directory under ``base_path`` (1 if none)."""
    versions = (
        [int(d) for d in os.listdir(base_path) if d.isdigit()] if os.path.isdir(base_path) else []
    )
    return max(versions, default=0) + 1


def load_run(run_dir: str) -> tuple[Any, DatasetSpec]:
    """Load a training run directory: (the Keras model, its dataset spec).

    Raises:
        FileNotFoundError: when ``model.keras``, ``dataset_spec.json`` or ``vocab/`` is
            missing.
        ValueError: when the model and the spec disagree.
    """
    model_path = os.path.join(run_dir, "model.keras")
    for path in (model_path, os.path.join(run_dir, SPEC_FILE)):
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{path} does not exist: --model must be a training run directory "
                "(python -m feseq_tf.train --output-dir RUN) holding model.keras, "
                f"{SPEC_FILE} and vocab/."
            )
    import keras

    import feseq_tf.layers  # noqa: F401  (registers the custom layers)
    import feseq_tf.models  # noqa: F401  (registers FESeq and the baselines)

    spec = DatasetSpec.load(run_dir)
    model = keras.saving.load_model(model_path, compile=False)
    try:  # a model built without feedback serves without the feedback input
        spec = spec.model_view(getattr(model, "spec", None))
    except ValueError as err:
        raise ValueError(f"{model_path} does not match its run directory: {err}") from None
    return model, spec


def export_run(
    run_dir: str,
    export_dir: str,
    *,
    name: str = DEFAULT_MODEL_NAME,
    version: int | None = None,
) -> str:
    """Export a training run as ``<export_dir>/<name>/<version>/``, atomically.

    The SavedModel is written into a hidden temporary directory under
    ``<export_dir>/<name>/`` (TensorFlow Serving ignores non-numeric names) and renamed
    to its version number when complete.

    Args:
        run_dir: str. Training output directory (``model.keras``, ``dataset_spec.json``,
            ``vocab/``).
        export_dir: str. Root of the exported models (TF Serving's ``/models``).
        name: str. Model name (the base path is ``<export_dir>/<name>``). Defaults to
            ``"feseq"``.
        version: int or None. Version number; None takes one more than the largest
            existing version (1 for the first export).

    Returns:
        The path of the written version directory.

    Raises:
        ValueError: on a bad name or version number.
        FileExistsError: when that version already exists (versions are immutable).
    """
    if not isinstance(name, str) or not _MODEL_NAME_PATTERN.match(name):
        raise ValueError(
            f"name must be letters, digits, '_', '.' or '-' (not starting with a "
            f"separator), got {name!r}."
        )
    if version is not None and (
        not isinstance(version, (int, np.integer)) or isinstance(version, bool) or version < 1
    ):
        raise ValueError(f"version must be an integer >= 1, got {version!r}.")
    vocab_dir = os.path.join(run_dir, "vocab")
    model, spec = load_run(run_dir)
    base = os.path.join(export_dir, name)
    os.makedirs(base, exist_ok=True)
    version = int(version) if version is not None else next_version(base)
    final = os.path.join(base, str(version))
    if os.path.exists(final):
        raise FileExistsError(
            f"{final} already exists: versions are immutable, export a new version "
            "(omit --version to take the next number)."
        )
    tmp = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=base)
    try:
        write_saved_model(model, spec, vocab_dir, tmp, model_name=name)
        _make_readable(tmp)
        if os.path.exists(final):
            raise FileExistsError(f"{final} was created by another export meanwhile.")
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _make_readable(root: str) -> None:
    """``mkdtemp`` creates a private directory; a model server may run as another user."""
    for directory, _, files in os.walk(root):
        os.chmod(directory, 0o755)
        for f in files:
            os.chmod(os.path.join(directory, f), 0o644)


# ---------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------
def example_rows(
    spec: DatasetSpec,
    vocabularies: Mapping[str, Sequence[str]],
    num_rows: int,
    *,
    seed: int = 0,
    unseen_share: float = 0.1,
) -> list[dict[str, Any]]:
    """Random raw rows in the request layout (for examples, tests and benchmarks).

    Categorical values are drawn from the vocabularies (a share ``unseen_share`` are
    values never seen in training), numbers from the training range, histories have
    0 to ``max_len + 2`` entries (lists, oldest first) with increasing timestamps
    before the row's own.

    Returns:
        ``num_rows`` dicts with every input of :func:`serving_input_signature`.
    """
    if num_rows < 0:
        raise ValueError(f"num_rows must be >= 0, got {num_rows}.")
    rng = np.random.default_rng(seed)

    def value(f: FieldSpec) -> Any:
        if f.is_categorical:
            values = vocabularies.get(f.name, [])
            if not values or rng.random() < unseen_share:
                return f"unseen-{int(rng.integers(1_000_000))}"
            return str(values[int(rng.integers(len(values)))])
        return round(float(rng.uniform(f.min, f.max)), 4)

    rows = []
    for _ in range(num_rows):
        t = int(rng.integers(10_000, 20_000))
        n = int(rng.integers(0, spec.max_len + 3))
        row: dict[str, Any] = {f.name: value(f) for f in _request_fields(spec)}
        row[spec.time_field] = t
        for f in spec.sequential_fields:
            row[f.hist_name] = [value(f) for _ in range(n)]
        gaps = np.sort(rng.integers(1, 5_000, size=n))[::-1]
        row[spec.time_hist_name] = [int(t - g) for g in gaps]
        rows.append(row)
    return rows


def to_request_row(spec: DatasetSpec, row: Mapping[str, Any]) -> dict[str, Any]:
    """A raw row with the history lists as ``'^'``-joined strings (valid JSON for
    TF Serving whatever the lengths of the other rows' histories)."""
    out = dict(row)
    for name in history_input_names(spec):
        value = out.get(name)
        if isinstance(value, (list, tuple)):
            out[name] = raw_format.join_history(value)
    return out


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m export.savedmodel",
        description="Export a trained FESeq run as a versioned SavedModel for TF Serving "
        "(raw-feature signatures serving_default and attention).",
    )
    p.add_argument("--model", required=True, help="training run directory (holds model.keras)")
    p.add_argument(
        "--export-dir",
        required=True,
        help="root of the exported models; writes EXPORT_DIR/NAME/VERSION/",
    )
    p.add_argument("--name", default=DEFAULT_MODEL_NAME, help="model name (default: feseq)")
    p.add_argument(
        "--version", type=int, help="version number (default: one more than the largest existing)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        path = export_run(args.model, args.export_dir, name=args.name, version=args.version)
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"exported {args.model} as {path} (signatures: {SERVING_SIGNATURE}, {ATTENTION_SIGNATURE})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
