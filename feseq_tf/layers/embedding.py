"""Field embeddings: numeric-field embeddings and the batch embedding L2 penalty."""

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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
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

    def call(self, inputs: Any) -> Any:
        inputs = ops.cast(inputs, self.compute_dtype)
        return ops.expand_dims(inputs, -1) * ops.cast(self.embeddings, self.compute_dtype)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape) + (self.embedding_dim,)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "embedding_dim": self.embedding_dim,
                "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="feseq_tf")
class EmbeddingL2(keras.layers.Layer):
    """Adds an L2 penalty on the embedding rows that the batch looked up.

    The paper's loss (eq. 13) adds `lambda * sum ||W||^2` over the embedding
    tables. Penalising whole tables costs time proportional to the vocabulary;
    this layer instead penalises the rows the batch used:

        loss = l2 * mean_b( sum_{tensors, non-batch axes} e^2 )

    It is added with `add_loss` only when `training` is true, so the losses of
    `fit` include it while `evaluate` and `predict` report the data loss alone.
    The inputs pass through unchanged (with their Keras masks), so the layer
    can sit between the embedding lookups and the rest of the model. The
    penalty is computed in float32 under mixed precision.

    Args:
        l2: float. lambda, the regularisation strength (>= 0). 0 adds nothing.
        **kwargs: Base layer keyword arguments (`name`, `dtype`...).

    Call arguments:
        inputs: a tensor `[B, ...]` or a list/tuple/dict of such tensors, the
            looked-up embeddings. Batch is axis 0 of every tensor.
        training: bool. Adds the penalty only when true.

    Returns:
        `inputs`, unchanged (same structure).

    Example:
        >>> ids = keras.Input((3,), dtype="int32")
        >>> emb = keras.layers.Embedding(100, 8)(ids)
        >>> emb = EmbeddingL2(0.1)(emb)  # model.fit's loss now includes it

    References:
        - Liu et al., FESeq, eq. 13 (embedding regularisation).
    """

    def __init__(self, l2: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(l2, bool) or not isinstance(l2, (int, float)) or l2 < 0:
            raise ValueError(f"`l2` must be a number >= 0, got l2={l2!r}.")
        self.l2 = float(l2)
        self.supports_masking = True
        self.built = True

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if training and self.l2 > 0:
            total = 0.0
            for x in keras.tree.flatten(inputs):
                x = ops.cast(x, "float32")
                axes = tuple(range(1, len(x.shape)))
                per_example = ops.sum(ops.square(x), axis=axes) if axes else ops.square(x)
                total = total + ops.mean(per_example)
            self.add_loss(self.l2 * total)
        return inputs

    def compute_output_spec(self, inputs: Any, training: bool | None = None) -> Any:
        return keras.tree.map_structure(lambda x: keras.KerasTensor(x.shape, dtype=x.dtype), inputs)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"l2": self.l2})
        return config
