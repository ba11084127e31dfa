"""The output of every deep model: the MLP, the probability head and the optional wide term.

``OutputHead(spec, config)`` owns the layers; calling it on the MLP input returns the
float32 click probability [B, 1]:

    p = sigmoid(head(MLP(x)))                               (``wide`` off)
    p = sigmoid(head(MLP(x)) + sum_f w_f[x_f] + b)          (``wide`` on, Wide & Deep)

The wide term is a logistic regression on the target-side fields
(:func:`feseq_tf.models.linear.one_hot_terms`), one weight per id in a 1-wide table
named ``wide_<field>``. FESeq and every deep baseline read ``config.wide`` here, so a
table can compare architectures with equal inputs.
"""

from __future__ import annotations

from typing import Any

import keras

from feseq_tf.config import ModelConfig
from feseq_tf.layers import LogisticOutput
from feseq_tf.models.common import output_mlp
from feseq_tf.models.linear import one_hot_tables, one_hot_terms
from feseq_tf.schema import DatasetSpec

WIDE_PREFIX = "wide"
"""Name prefix of the wide term's per-id weight tables (``wide_<field>``)."""


class OutputHead:
    """The output MLP, its probability head and, with ``config.wide``, the wide term.

    Args:
        spec: DatasetSpec. The fields of the wide term.
        config: ModelConfig. Reads ``mlp_units``, ``dropout`` and ``wide`` (and the
            embedding settings of the wide tables).

    Call arguments:
        x: tensor [B, D]. The MLP input.
        inputs: dict of tensors. The model's (id-dropped) inputs, read by the wide term.

    Returns:
        float32 [B, 1]: the click probability.
    """

    def __init__(self, spec: DatasetSpec, config: ModelConfig) -> None:
        self.spec = spec
        *self.mlp, head = output_mlp(config)
        self.wide_tables: dict[str, Any] = {}
        if config.wide:  # the deep part gives a logit; the bias lives in the output layer
            self.wide_tables = one_hot_tables(spec, config, WIDE_PREFIX)
            head = keras.layers.Dense(1, use_bias=False, dtype="float32", name="deep_logit")
            self.wide_output = LogisticOutput(dtype="float32", name="probability")
        self.head = head

    def hidden(self, x: Any) -> Any:
        """The MLP's output (what :meth:`probability` reads), for models that add terms."""
        for layer in self.mlp:
            x = layer(x)
        return x

    def probability(self, hidden: Any, inputs: dict[str, Any]) -> Any:
        """The head on ``hidden`` (plus the wide term): float32 [B, 1]."""
        if not self.wide_tables:
            return self.head(hidden)
        terms = one_hot_terms(self.wide_tables, inputs, self.spec)
        wide_logit = keras.ops.sum(
            keras.ops.concatenate([keras.ops.cast(t, "float32") for t in terms], -1),
            -1, keepdims=True,
        )
        return self.wide_output(keras.ops.cast(self.head(hidden), "float32") + wide_logit)

    def __call__(self, x: Any, inputs: dict[str, Any]) -> Any:
        return self.probability(self.hidden(x), inputs)

