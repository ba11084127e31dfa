"""Field embeddings: categorical tables and numeric fields, with the paper's L2 (eq. 13)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="feseq_tf")
class NumericEmbedding(keras.layers.Layer):
    """Embeds a numeric field as its value times a learned vector.

    A numeric field (e.g. a min-max scaled price) gets one learned vector
    `w in R^d`; the embedding of a value `x` is `x * w`, so that numeric and
    categorical fields share the `[..., d]` layout that the interacting layer
    (paper section 3.2, eq. 1) attends over.

    Args:
        embedding_dim: int. d, the size of the embedding.
        embeddings_initializer: str or initializer. Initializer of `w`.
            Defaults to `"uniform"` (as `keras.layers.Embedding`).
        l2: float. lambda: adds `l2 / 2 * ||w||^2` to the training loss.
            Defaults to 0.
        **kwargs: Base layer keyword arguments (`name`, `dtype`...).

    Call arguments:
        inputs: float or int tensor of any shape `[...]`.

    Returns:
        Tensor of shape `[..., embedding_dim]`.

    Example:
        >>> layer = NumericEmbedding(4)
        >>> layer(np.zeros((2, 3), "float32")).shape
        (2, 3, 4)

    References:
        - Song et al., AutoInt, CIKM 2019 (numeric field embedding).
    """

    def __init__(
        self,
        embedding_dim: int,
        embeddings_initializer: Any = "uniform",
        l2: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(l2, bool) or not isinstance(l2, (int, float)) or l2 < 0:
            raise ValueError(f"`l2` must be a number >= 0, got l2={l2!r}.")
        self.l2 = float(l2)
        if not isinstance(embedding_dim, int) or embedding_dim < 1:
            raise ValueError(
                f"`embedding_dim` must be a positive integer, got embedding_dim={embedding_dim!r}."
            )
        self.embedding_dim = embedding_dim
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)

    def build(self, input_shape: tuple) -> None:
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.embedding_dim,),
            initializer=self.embeddings_initializer,
        )

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if training and self.l2 > 0:  # the field's one row is used by every batch
            self.add_loss(0.5 * self.l2 * ops.sum(ops.square(ops.cast(self.embeddings, "float32"))))
        inputs = ops.cast(inputs, self.compute_dtype)
        return ops.expand_dims(inputs, -1) * ops.cast(self.embeddings, self.compute_dtype)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape) + (self.embedding_dim,)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "embedding_dim": self.embedding_dim,
                "l2": self.l2,
                "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="feseq_tf")
class FieldEmbedding(keras.layers.Embedding):
    """A categorical field's table with L2 on the distinct rows each batch looks up.

    The paper's loss (eq. 13) adds `lambda/2 * ||T||^2` for every embedding table
    `T`, as its reference code does for whole tables. Here the same term is
    restricted to the distinct, non-padding rows that the batch uses:

        loss = l2 / 2 * sum_{r in unique(ids), r != 0} ||T_r||^2

    Each used row gets the same gradient `l2 * T_r` as with the whole-table
    penalty, so rarely seen ids are held close to zero relative to frequent
    ones, while the cost follows the batch instead of the vocabulary. Rows are
    deduplicated by sorting (static shapes, so it compiles under XLA). Added
    with `add_loss` only when `training` is true; computed in float32.

    Args:
        input_dim: int. Vocabulary size (id 0 is padding).
        output_dim: int. d, the embedding size.
        l2: float. lambda (>= 0). Defaults to 0.
        **kwargs: `keras.layers.Embedding` arguments (`embeddings_initializer`...).

    Call arguments:
        inputs: int tensor of ids, any shape.
        training: bool. Adds the penalty only when true.

    Returns:
        `[..., output_dim]` embeddings.

    Example:
        >>> emb = FieldEmbedding(100, 8, l2=0.1)
        >>> emb(np.array([[3, 3, 0]]), training=True).shape  # adds 0.05 * ||T_3||^2
        (1, 3, 8)

    References:
        - Liu et al., FESeq, eq. 13 (embedding regularisation).
    """

    def __init__(self, input_dim: int, output_dim: int, l2: float = 0.0, **kwargs: Any) -> None:
        super().__init__(input_dim, output_dim, **kwargs)
        if isinstance(l2, bool) or not isinstance(l2, (int, float)) or l2 < 0:
            raise ValueError(f"`l2` must be a number >= 0, got l2={l2!r}.")
        self.l2 = float(l2)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        outputs = super().call(inputs)
        if training and self.l2 > 0:
            ids = ops.sort(ops.reshape(ops.cast(inputs, "int32"), (-1,)))
            first = ops.concatenate([ops.ones((1,), "bool"), ids[1:] != ids[:-1]], axis=0)
            keep = ops.cast(ops.logical_and(first, ids != 0), "float32")
            rows = ops.cast(ops.take(self.embeddings, ids, axis=0), "float32")
            self.add_loss(0.5 * self.l2 * ops.sum(keep * ops.sum(ops.square(rows), axis=-1)))
        return outputs

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"l2": self.l2})
        return config
