"""Logistic regression on one-hot fields: the linear reference model (``--model lr``).

A linear model on the same inputs as FESeq and the baselines
(:func:`feseq_tf.models.common.build_inputs`), trained by the same loop: every table shows
what a model without any feature interaction or learned sequence representation reaches.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from feseq_tf.config import ModelConfig
from feseq_tf.layers import FieldEmbedding, LogisticOutput, NumericEmbedding
from feseq_tf.layers.initializers import clone_initializer
from feseq_tf.models.common import SpecModel, build_inputs, model_spec_and_config, with_id_dropout
from feseq_tf.schema import HIST_LEN, DatasetSpec, FieldSpec


def weight_table(field: FieldSpec, config: ModelConfig, prefix: str) -> keras.layers.Layer:
    """One weight per id (a 1-wide table: one-hot times weights), or per numeric field."""
    name = f"{prefix}_{field.name}"
    init = clone_initializer(keras.initializers.RandomNormal(stddev=config.embedding_stddev), name)
    l2 = config.embedding_l2
    if field.is_categorical:
        return FieldEmbedding(
            field.vocab_size,
            1,
            l2=l2,
            embeddings_initializer=init,
            dtype="float32",
            name=name,
        )
    return NumericEmbedding(1, embeddings_initializer=init, l2=l2, dtype="float32", name=name)


def history_mean(terms: Any, hist_len: Any, max_len: int) -> Any:
    """Mean of [B, L, 1] terms over the real (trailing ``hist_len``) history entries;
    0 for an empty history."""
    first_real = max_len - ops.cast(hist_len, "int32")[:, None]
    real = ops.greater_equal(ops.arange(max_len, dtype="int32")[None, :], first_real)
    weight = ops.expand_dims(ops.cast(real, "float32"), -1)  # [B, L, 1]
    return ops.sum(terms * weight, axis=1) / ops.maximum(ops.sum(weight, axis=1), 1.0)


def one_hot_tables(spec: DatasetSpec, config: ModelConfig, prefix: str) -> dict[str, Any]:
    """One weight table (:func:`weight_table`) per field of ``spec``, named ``<prefix>_<field>``."""
    return {f.name: weight_table(f, config, prefix) for f in spec.fields}


def one_hot_terms(tables: dict[str, Any], inputs: dict[str, Any], spec: DatasetSpec) -> list:
    """The [B, 1] terms of the linear one-hot logit: the weight of each field's target
    value, and for a history-only field (no target value) the mean weight of its real
    history entries."""
    return [
        history_mean(tables[f.name](inputs[f.hist_name]), inputs[HIST_LEN], spec.max_len)
        if f.history_only
        else tables[f.name](inputs[f.name])
        for f in spec.fields
    ]


@keras.saving.register_keras_serializable(package="feseq_tf")
class LogisticRegression(SpecModel):
    """Logistic regression on the one-hot target-side fields.

        p = sigmoid(b + sum_{f categorical} w_f[x_f] + sum_{f numeric} v_f * x_f
                      + sum_{f history-only} mean_{real j} w_f[x_f,j]
                      [+ sum_{f sequential} mean_{real j} h_f[x_f,j]])

    The target side is every non-sequential field and the target value of every
    sequential field; ``w_f[x]`` is the weight of id ``x`` of field ``f`` (one-hot times a
    weight vector, as a 1-wide embedding table; the padding id's weight is never used
    where it matters), ``v_f`` one weight per numeric field. A history-only field (the
    labels of the history, ``feedback``) has no target value and enters as the mean
    one-hot of its real history entries, i.e. a linear function of the history's click
    share. With ``use_history`` every other sequential field also adds the mean one-hot
    of its real history entries, with weights ``h_f`` of its own. Weights start from
    ``N(0, embedding_stddev)``, the bias at 0; ``embedding_l2`` puts L2 on the weights a
    batch uses (like the embedding tables of the other models). Computes in float32
    whatever the global dtype policy (the model is tiny).

    Args:
        spec: DatasetSpec or its dict.
        config: ModelConfig or its dict. Reads ``embedding_stddev``, ``embedding_l2``,
            ``id_dropout`` and ``use_feedback``; the other fields are ignored.
        use_history: bool. Add the mean one-hot of every sequential field's history.
            Defaults to False.

    Call arguments:
        inputs: dict of tensors named as in :func:`build_inputs`.

    Returns:
        Click probability, float32 [B, 1].

    Example:
    >>> model = LogisticRegression(spec, ModelConfig(embedding_l2=1e-6))
    >>> model.compile(optimizer="adam", loss="binary_crossentropy")

    References:
        McMahan et al., Ad Click Prediction: a View from the Trenches, KDD 2013.
    """

    def __init__(
        self,
        spec: DatasetSpec | dict,
        config: ModelConfig | dict | None = None,
        use_history: bool = False,
        **kwargs: Any,
    ):
        if not isinstance(use_history, bool):
            raise ValueError(f"use_history must be a bool, got {use_history!r}.")
        spec, config = model_spec_and_config(spec, config)
        extra_history = spec.sequential_fields if use_history else ()
        extra_history = tuple(f for f in extra_history if not f.history_only)
        # ---- layers
        weights = one_hot_tables(spec, config, "weight")
        history_weights = {
            f.name: weight_table(f, config, "history_weight") for f in extra_history
        }
        output = LogisticOutput(dtype="float32", name="probability")
        # ---- functional model
        inputs = build_inputs(spec)
        dropped = with_id_dropout(inputs, spec, config)  # unknown users (training only)
        terms = one_hot_terms(weights, dropped, spec)  # each [B, 1]
        terms += [
            history_mean(history_weights[f.name](inputs[f.hist_name]), inputs[HIST_LEN], spec.max_len)
            for f in extra_history
        ]
        logit = ops.sum(ops.concatenate(terms, axis=-1), axis=-1, keepdims=True)
        probability = output(logit)
        super().__init__(inputs=inputs, outputs=probability, **kwargs)
        # ---- config
        self._finish(spec, config)
        self.use_history = use_history

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "use_history": self.use_history}
