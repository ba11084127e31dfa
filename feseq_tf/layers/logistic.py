"""The logistic output layer: a learned bias added to a logit, then the sigmoid."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="feseq_tf")
class LogisticOutput(keras.layers.Layer):
    """Adds a learned bias to a logit and applies the sigmoid: ``sigmoid(z + b)``.

    Args:
        **kwargs: Base layer keyword arguments (``name``...).

    Call arguments:
        inputs: float tensor [B, 1]. The logit without bias.

    Returns:
        float32 [B, 1]: the probability.
    """

    def build(self, input_shape: tuple) -> None:
        self.bias = self.add_weight(name="bias", shape=(1,), initializer="zeros")

    def call(self, inputs: Any) -> Any:
        return ops.sigmoid(ops.cast(inputs, "float32") + ops.cast(self.bias, "float32"))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)
