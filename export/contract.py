"""The serving contract of an exported model: its signatures, inputs and requests.

Signatures (both ``tensorflow/serving/predict``):

* ``serving_default``: raw fields by name -> ``probability`` float32 [B];
* ``attention``: the same inputs -> ``probability`` and ``pooling_attention`` float32
  [B, max_len + 1] (the sequence pooling layer's weights over the positions: the
  history, left-padded, oldest first, then the target last; padded positions get 0).

Inputs of both signatures (see :func:`serving_input_signature`), B rows:

* a categorical field ``<field>``: string [B], the raw value as it appears in the raw
  data (``"123"``, ``"dinner"``); unseen, rare and missing values map to the OOV id
  (a field hashed into buckets, ``hash_buckets`` in the contract, hashes every present
  value, :mod:`feseq_tf.hashing`);
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

The contract is also written next to every export as ``assets.extra/feseq_serving.json``
(:func:`serving_contract`), for humans and clients; :func:`example_rows` and
:func:`to_request_row` make requests in this layout.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from feseq_tf import raw_format
from feseq_tf.raw_format import HISTORY_SEPARATOR, MISSING_TOKENS
from feseq_tf.schema import DatasetSpec, FieldSpec

DEFAULT_MODEL_NAME = "feseq"
SERVING_SIGNATURE = "serving_default"
ATTENTION_SIGNATURE = "attention"
PROBABILITY = "probability"
POOLING_ATTENTION = "pooling_attention"
CONTRACT_FILE = os.path.join("assets.extra", "feseq_serving.json")
CONTRACT_FORMAT_VERSION = 1


def request_fields(spec: DatasetSpec) -> list[FieldSpec]:
    """Fields whose target value a request gives (a history-only field has none)."""
    return [f for f in spec.fields if not f.history_only]


def history_input_names(spec: DatasetSpec) -> list[str]:
    """Names of the history inputs: ``<field>_list`` of every sequential field, then
    ``<time_field>_list``."""
    return [f.hist_name for f in spec.sequential_fields] + [spec.time_hist_name]


def serving_input_signature(spec: DatasetSpec) -> dict[str, tf.TensorSpec]:
    """The raw inputs of the serving signatures, by name (see the module docstring)."""
    signature: dict[str, tf.TensorSpec] = {}
    for f in request_fields(spec):
        dtype = tf.string if f.is_categorical else tf.float64
        signature[f.name] = tf.TensorSpec([None], dtype, name=f.name)
    signature[spec.time_field] = tf.TensorSpec([None], tf.int64, name=spec.time_field)
    for name in history_input_names(spec):
        signature[name] = tf.TensorSpec(None, tf.string, name=name)
    return signature


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
        entry = {"name": name, "kind": kind, "dtype": tensor_spec.dtype.name}
        if kind == "categorical" and spec.field(name).is_hashed:
            entry["hash_buckets"] = spec.field(name).hash_buckets
        inputs.append(entry)
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
        row: dict[str, Any] = {f.name: value(f) for f in request_fields(spec)}
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
