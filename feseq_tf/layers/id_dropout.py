"""Id dropout: during training, replace categorical ids by the out-of-vocabulary id."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from feseq_tf.schema import OOV_ID


@keras.saving.register_keras_serializable(package="feseq_tf")
class IdDropout(keras.layers.Layer):
    """Replaces each known id by the OOV id with probability ``rate``, in training only.

    A log split by time puts users in the test set that training never saw: their ids
    map to the OOV id. A model trained only on known ids has learnt nothing about that
    id (its row is trained on the few rare values of the training split) and leans on
    per-id embeddings it no longer has. Dropping ids in training teaches the OOV row to
    stand for "an id the model does not know" and the rest of the model to predict
    from what remains: the other fields and the history (the id counterpart of
    DropoutNet's input dropout for cold start; Volkovs et al., NeurIPS 2017).

    Padding (id 0) and OOV ids are never changed; each value is dropped independently.
    At inference (``training=False``) the layer is the identity.

    Args:
        rate: float in [0, 1). Probability of replacing a known id.
        seed: int or None. Seed of the replacement draws.
        **kwargs: Base layer keyword arguments (``name``...).

    Call arguments:
        inputs: integer tensor of ids, any shape.
        training: bool. Drop ids only when True.

    Returns:
        The ids, same shape and dtype.

    Example:
        >>> IdDropout(0.5, seed=1)(np.array([0, 1, 5, 7]), training=False)
        array([0, 1, 5, 7])
    """

    def __init__(self, rate: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
            raise ValueError(f"`rate` must be a number in [0, 1), got rate={rate!r}.")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if not training or self.rate == 0.0:
            return inputs
        ids = ops.convert_to_tensor(inputs)
        draw = keras.random.uniform(ops.shape(ids), seed=self.seed_generator)
        drop = ops.logical_and(draw < self.rate, ids > OOV_ID)
        return ops.where(drop, ops.cast(OOV_ID, ids.dtype), ids)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed})
        return config

