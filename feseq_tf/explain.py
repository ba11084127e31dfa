"""Attention maths of the paper's section 4.5 (Figs. 5-8): FESeq's attention, averaged and labelled.

Pure functions from the outputs of ``FESeq.attention_model()`` on a probe batch to
labelled matrices; the TensorBoard callback (:mod:`feseq_tf.callbacks`), the plots
(:mod:`feseq_tf.plots`) and the notebooks all take their numbers from here.
:func:`attention_matrices` returns these tags:

* ``attention/input_fields``: field x field attention of the last input interacting
  layer (rows: query field, columns: key field; 23 x 23 for Ele.me), averaged over the
  probe samples and their real (non-padded) positions, and over heads; with several
  heads also ``attention/input_fields/head_<h>``;
* ``attention/target_item_fields``: the same for the last target item interacting
  layer (averaged over the probe samples and heads);
* ``attention/pooling_samples``: sequence-pooling attention, probe samples x positions
  (the samples with the longest histories first, as in Figs. 7-8);
* ``attention/pooling_mean``: its mean over the samples in which a position holds a
  real behaviour (1 x positions);
* ``attention/pooling_relative``: the same mean of ``weight * n_real`` (the weight
  relative to a uniform share over the sample's real positions: 1 = uniform). Short
  histories give each of their few positions a large weight; this view removes that
  effect, which otherwise makes recent positions look important in any model;
* ``attention/sequence_head_<h>``: self-attention of each head of the last Transformer
  layer, positions x positions (row: query position), averaged over the probe samples
  in which the query position is real.

Positions are labelled ``-L .. -1`` (behaviours before the target, most recent last)
and ``target``. A mean over no real entries (a position no probe sample reaches) is
written as 0. :func:`pair_attention` reads the attention between named field pairs
(both directions) off a field x field matrix.

Example:
>>> probe = probe_batch(dataset_dir, "test", probe_size=1024, spec=model.spec)
>>> outputs = model.attention_model()(probe, training=False)
>>> outputs.pop("probability")
>>> matrices = attention_matrices(outputs, probe["hist_len"], model.spec, model.config)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

from feseq_tf.config import ModelConfig
from feseq_tf.dataset import PreparedDataset, as_prepared
from feseq_tf.schema import DatasetSpec
from feseq_tf.tensorboard_plugin.metadata import MatrixInfo

TAG_INPUT_FIELDS = "attention/input_fields"
TAG_TARGET_FIELDS = "attention/target_item_fields"
TAG_POOLING_SAMPLES = "attention/pooling_samples"
TAG_POOLING_MEAN = "attention/pooling_mean"
TAG_POOLING_RELATIVE = "attention/pooling_relative"
TAG_SEQUENCE_HEAD = "attention/sequence_head_{}"
TARGET_LABEL = "target"


@dataclasses.dataclass(frozen=True)
class AttentionMatrix:
    """A labelled matrix ready to be written or plotted."""

    tag: str
    values: np.ndarray
    info: MatrixInfo


# ---- labels ----------------------------------------------------------------------------
def input_field_names(spec: DatasetSpec, config: ModelConfig) -> list[str]:
    """Names along the field axis of the input interacting layer.

    Non-sequential then sequential fields when ``config.nonseq_in_interaction``, else
    the sequential fields only (the model's layout), then ``history_match`` when the
    model has that field.
    """
    from feseq_tf.models.feseq import match_fields_of

    seq = [f.name for f in spec.sequential_fields]
    if match_fields_of(spec, config):
        seq.append("history_match")
    if config.nonseq_in_interaction:
        return [f.name for f in spec.non_sequential_fields] + seq
    return seq


def position_labels(num_positions: int) -> list[str]:
    """``["-L", ..., "-1", "target"]`` for ``num_positions = L + 1`` positions."""
    if num_positions < 1:
        raise ValueError(f"num_positions must be >= 1, got {num_positions}.")
    return [f"-{num_positions - 1 - i}" for i in range(num_positions - 1)] + [TARGET_LABEL]


def position_mask(hist_len: np.ndarray, num_positions: int) -> np.ndarray:
    """bool ``[B, T]``, True where a position holds a real behaviour or the target.

    Histories are left-padded (schema), so the last ``hist_len`` history positions are
    real; the target (last position) always is.
    """
    hist_len = np.asarray(hist_len).reshape(-1, 1)
    positions = np.arange(num_positions)[None, :]
    return (positions >= (num_positions - 1) - hist_len) | (positions == num_positions - 1)


def _weighted_mean(values: np.ndarray, weights: np.ndarray, axis: tuple[int, ...]) -> np.ndarray:
    """Mean of ``values`` over ``axis`` with broadcastable ``weights``; 0 where no weight."""
    weights = np.broadcast_to(weights, values.shape).astype(np.float64)
    total = weights.sum(axis=axis)
    summed = (values * weights).sum(axis=axis)
    return np.where(total > 0, summed / np.maximum(total, 1e-12), 0.0)


# ---- the matrices ----------------------------------------------------------------------
def attention_matrices(
    outputs: Mapping[str, Any],
    hist_len: np.ndarray,
    spec: DatasetSpec,
    config: ModelConfig,
    pooling_samples: int = 32,
) -> list[AttentionMatrix]:
    """Labelled, averaged attention matrices from ``FESeq.attention_model()`` outputs.

    Args:
        outputs: dict of arrays. The attention model's outputs on a probe batch
            (``input_field_attention`` [B, T, H, F, F], ``target_field_attention``
            [B, H, n, n], ``sequence_attention`` [B, heads, T, T], ``pooling_attention``
            [B, T]); missing entries (architectures without them) are skipped.
        hist_len: int array [B]. Real history length of each probe sample.
        spec: DatasetSpec. Field names and ``max_len``.
        config: ModelConfig. Field layout (``nonseq_in_interaction``, ``use_history``).
        pooling_samples: int. Rows of the samples x positions pooling matrix.
            Defaults to 32.

    Returns:
        A list of :class:`AttentionMatrix`, tags as in this module's docstring.
    """
    if pooling_samples < 1:
        raise ValueError(f"pooling_samples must be >= 1, got {pooling_samples}.")
    arrays = {k: np.asarray(keras.ops.convert_to_numpy(v), dtype=np.float64) for k, v in outputs.items()}
    num_positions = spec.max_len + 1 if config.use_history else 1
    hist_len = np.asarray(hist_len).reshape(-1)
    if not config.use_history:
        hist_len = np.zeros_like(hist_len)
    mask = position_mask(hist_len, num_positions)  # [B, T]
    positions = position_labels(num_positions)
    out: list[AttentionMatrix] = []

    att = arrays.get("input_field_attention")
    if att is not None:
        names = input_field_names(spec, config)
        if att.ndim != 5 or att.shape[1] != num_positions or att.shape[-1] != len(names):
            raise ValueError(
                f"input_field_attention has shape {att.shape}; expected [B, {num_positions}, "
                f"H, {len(names)}, {len(names)}] for fields {names}."
            )
        per_head = _weighted_mean(att, mask[:, :, None, None, None], axis=(0, 1))  # [H, F, F]
        info = MatrixInfo(
            "field", names, names, "query field", "key field",
            "Last input interacting layer: attention of each field (row) over the fields "
            "(columns), mean over probe samples, real positions and heads.",
        )
        out.append(AttentionMatrix(TAG_INPUT_FIELDS, per_head.mean(axis=0), info))
        if per_head.shape[0] > 1:
            for h in range(per_head.shape[0]):
                head_info = dataclasses.replace(
                    info, description=f"Last input interacting layer, head {h}."
                )
                out.append(AttentionMatrix(f"{TAG_INPUT_FIELDS}/head_{h}", per_head[h], head_info))

    att = arrays.get("target_field_attention")
    if att is not None:
        names = [f.name for f in spec.target_item_fields]
        if att.ndim != 4 or att.shape[-1] != len(names):
            raise ValueError(
                f"target_field_attention has shape {att.shape}; expected "
                f"[B, H, {len(names)}, {len(names)}] for fields {names}."
            )
        info = MatrixInfo(
            "field", names, names, "query field", "key field",
            "Last target item interacting layer: attention of each target item field (row) "
            "over the item fields, mean over probe samples and heads.",
        )
        out.append(AttentionMatrix(TAG_TARGET_FIELDS, att.mean(axis=(0, 1)), info))

    att = arrays.get("pooling_attention")
    if att is not None:
        if att.ndim != 2 or att.shape[1] != num_positions:
            raise ValueError(
                f"pooling_attention has shape {att.shape}; expected [B, {num_positions}]."
            )
        order = np.argsort(-hist_len, kind="stable")[:pooling_samples]
        rows = [f"#{i} (len {int(hist_len[i])})" for i in order]
        out.append(AttentionMatrix(
            TAG_POOLING_SAMPLES, att[order],
            MatrixInfo(
                "pooling", rows, positions, "probe sample (history length)", "position",
                "Sequence pooling attention over positions for the probe samples with the "
                "longest histories (each row sums to 1 over its real positions).",
            ),
        ))
        out.append(AttentionMatrix(
            TAG_POOLING_MEAN, _weighted_mean(att, mask, axis=(0,))[None, :],
            MatrixInfo(
                "pooling", ["mean"], positions, "", "position",
                "Sequence pooling attention, mean over the probe samples in which the "
                "position holds a real behaviour.",
            ),
        ))
        n_real = mask.sum(axis=1, keepdims=True)
        out.append(AttentionMatrix(
            TAG_POOLING_RELATIVE, _weighted_mean(att * n_real, mask, axis=(0,))[None, :],
            MatrixInfo(
                "pooling", ["x uniform"], positions, "", "position",
                "Sequence pooling attention relative to a uniform share over the sample's "
                "real positions (1 = uniform), mean over the samples that reach the position.",
            ),
        ))

    att = arrays.get("sequence_attention")
    if att is not None:
        if att.ndim != 4 or att.shape[-1] != num_positions:
            raise ValueError(
                f"sequence_attention has shape {att.shape}; expected "
                f"[B, heads, {num_positions}, {num_positions}]."
            )
        per_head = _weighted_mean(att, mask[:, None, :, None], axis=(0,))  # [heads, T, T]
        for h in range(per_head.shape[0]):
            out.append(AttentionMatrix(
                TAG_SEQUENCE_HEAD.format(h), per_head[h],
                MatrixInfo(
                    "sequence", positions, positions, "query position", "key position",
                    f"Sequence refiner (last Transformer layer), head {h}: attention of each "
                    "position (row) over positions, mean over the probe samples in which "
                    "the query position is real.",
                ),
            ))
    return out


def pair_attention(
    values: Any, labels: Sequence[str], pairs: Sequence[tuple[str, str]]
) -> tuple[dict[tuple[str, str], float], float]:
    """Attention between field pairs, both directions summed, and that of the average pair.

    A cross between fields ``a`` and ``b`` may show in row ``a`` (``a`` attends to ``b``)
    or in row ``b``; the weight of a pair is therefore ``values[a, b] + values[b, a]``.
    The average pair is the mean of that sum over all pairs of distinct fields (the
    diagonal, a field attending to itself, is left out); a pair's weight divided by it
    is the pair's lift over a typical pair (1 = typical).

    Args:
        values: array-like [F, F]. A field x field matrix (rows attend over columns),
            e.g. the ``attention/input_fields`` matrix of :func:`attention_matrices`.
        labels: sequence of str. The F field names, along both axes.
        pairs: sequence of (field, field). The pairs to read.

    Returns:
        (``{pair: weight}`` in the order of ``pairs``, the average pair's weight).

    Raises:
        ValueError: if ``values`` is not [F, F] for the F labels, has fewer than 2
            fields, or a pair names an unknown field.
    """
    array = np.asarray(values, dtype=np.float64)
    labels = list(labels)
    if array.ndim != 2 or array.shape != (len(labels), len(labels)) or len(labels) < 2:
        raise ValueError(
            f"values must be [F, F] for F = len(labels) >= 2 fields, got shape {array.shape} "
            f"for {len(labels)} labels."
        )
    index = {name: i for i, name in enumerate(labels)}
    unknown = sorted({name for pair in pairs for name in pair} - set(index))
    if unknown:
        raise ValueError(f"pairs name fields {unknown} that are not among the labels {labels}.")
    both_ways = array + array.T
    average = float(both_ways[~np.eye(len(labels), dtype=bool)].mean())
    return {(a, b): float(both_ways[index[a], index[b]]) for a, b in pairs}, average


# ---- the probe batch -------------------------------------------------------------------
def probe_batch(
    dataset_dir: str | PreparedDataset,
    split: str = "valid",
    probe_size: int = 512,
    spec: DatasetSpec | None = None,
) -> dict[str, np.ndarray]:
    """The first ``probe_size`` examples of a split, as model inputs (NumPy arrays).

    Args:
        dataset_dir: str or PreparedDataset. A prepared dataset, or its directory.
        split: str. ``"train"``, ``"valid"`` or ``"test"``. Defaults to ``"valid"``.
        probe_size: int. Examples in the batch. Defaults to 512.
        spec: DatasetSpec or None. The model's spec. Defaults to the dataset's.

    Returns:
        ``{input name: array}`` of up to ``probe_size`` examples.

    Raises:
        ValueError: if ``probe_size`` < 1 or the split is empty.
    """
    if probe_size < 1:
        raise ValueError(f"probe_size must be >= 1, got {probe_size}.")
    from feseq_tf.data import make_dataset

    dataset = as_prepared(dataset_dir)
    spec = spec or dataset.spec
    ds = make_dataset(dataset, split, probe_size, spec=spec)
    for features, _ in ds.take(1):
        return {name: value.numpy() for name, value in features.items()}
    raise ValueError(
        f"Split {split!r} of {dataset.directory!r} has no examples for a probe batch."
    )
