"""Target-history match indicators, embedded as one more field of every position."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from feseq_tf.layers.initializers import clone_initializer


@keras.saving.register_keras_serializable(package="feseq_tf")
class HistoryMatch(keras.layers.Layer):
    """Embeds which categorical fields of each position equal the target's.

    For a sequence of ``T`` positions (history first, the target last) and ``n``
    categorical fields with ids ``x[b, t, i]``, the indicators are

        m[b, t, i] = 1[x[b, t, i] == x[b, T-1, i]] * real[b, t]

    (the target position matches itself; padded positions are all zero), and the
    output is one more field of every position, ``m[b, t] W + c`` of size ``d``. Whether
    an earlier impression showed the same shop or category as the target is what many
    click logs reward; attention over learned embeddings has to discover equality of
    ids from their vectors, while this field states it, for every field at once.
    Not part of the FESeq paper (``ModelConfig.history_match``).

    Args:
        output_dim: int. d, the size of the field embedding.
        kernel_initializer: str or initializer. Initializer of ``W``. Defaults to
            ``"glorot_uniform"``.
        seed: int or None. Seeds the initializer clone. Defaults to None.
        **kwargs: Base layer keyword arguments (``name``, ``dtype``...).

    Call arguments:
        ids: int tensor [B, T, n]. Ids of the ``n`` fields at every position, target last.
        padding_mask: bool tensor [B, T] or None. True = a real position.

    Returns:
        Tensor [B, T, output_dim].

    Example:
        >>> HistoryMatch(4)(np.ones((2, 3, 5), "int32")).shape
        (2, 3, 4)

    References:
        - Zhou et al., CAN: Feature Co-Action Network for CTR Prediction, WSDM 2022
          (explicit target-history co-action features).
    """

    def __init__(
        self,
        output_dim: int,
        kernel_initializer: Any = "glorot_uniform",
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(output_dim, bool) or not isinstance(output_dim, int) or output_dim < 1:
            raise ValueError(f"`output_dim` must be a positive integer, got output_dim={output_dim!r}.")
        self.output_dim = output_dim
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.seed = seed

    def build(self, ids_shape: tuple, padding_mask_shape: tuple | None = None) -> None:
        if len(ids_shape) != 3 or ids_shape[-1] is None:
            raise ValueError(f"Expected ids [B, T, n] with a known n, got ids_shape={ids_shape}.")
        self._dense = keras.layers.Dense(
            self.output_dim,
            kernel_initializer=clone_initializer(self.kernel_initializer, "dense", self.seed),
            name="dense",
            dtype=self.dtype_policy,
        )
        self._dense.build((None, ids_shape[-1]))

    def indicators(self, ids: Any, padding_mask: Any = None) -> Any:
        """The float indicators ``m`` [B, T, n] (see the class docstring)."""
        ids = ops.cast(ids, "int32")
        match = ops.equal(ids, ids[:, -1:, :])
        if padding_mask is not None:
            match = ops.logical_and(match, ops.cast(padding_mask, "bool")[:, :, None])
        return ops.cast(match, self.compute_dtype)

    def call(self, ids: Any, padding_mask: Any = None) -> Any:
        m = self.indicators(ids, padding_mask)
        batch, steps = ops.shape(m)[0], ops.shape(m)[1]
        out = self._dense(ops.reshape(m, (-1, m.shape[-1])))
        return ops.reshape(out, (batch, steps, self.output_dim))

    def compute_output_shape(self, ids_shape: tuple, padding_mask_shape: tuple | None = None) -> tuple:
        return tuple(ids_shape[:-1]) + (self.output_dim,)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "output_dim": self.output_dim,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "seed": self.seed,
            }
        )
        return config
