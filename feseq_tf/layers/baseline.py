"""Layers of the baseline models: FM term, DIN attention pooling, DMR attention.

The baselines' other parts come from the rest of :mod:`feseq_tf.layers` (embeddings,
AutoInt, Transformer, the DIN activation unit) and from keras-rs (``FeatureCross``).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from feseq_tf.layers.din import DINActivationUnit, hidden_units_of, positive_ints
from feseq_tf.layers.initializers import clone_initializer


def _pooled_spec(layer: keras.layers.Layer, keys: Any, per_position: bool) -> Any:
    """Output spec of a pooling over keys `[B, L, D]`: `[B, D]`, with `[B, L]` if asked."""
    pooled = keras.KerasTensor((keys.shape[0], keys.shape[-1]), dtype=layer.compute_dtype)
    if not per_position:
        return pooled
    return pooled, keras.KerasTensor(tuple(keys.shape[:2]), dtype=layer.compute_dtype)


@keras.saving.register_keras_serializable(package="feseq_tf")
class FactorizationMachine(keras.layers.Layer):
    """Second-order term of a factorization machine over field embeddings.

        FM(e) = sum_{i<j} <e_i, e_j> = 1/2 sum_k [(sum_i e_ik)^2 - sum_i e_ik^2]

    computed in float32 (the difference cancels badly in bfloat16) and returned in
    the compute dtype. Equals the sum of ``keras_rs.layers.DotInteraction(
    self_interaction=False)`` outputs in O(F d) instead of O(F^2 d).

    Call arguments:
        inputs: float tensor `[B, F, d]`.

    Returns:
        Tensor `[B, 1]`.

    Example:
        >>> FactorizationMachine()(np.ones((2, 3, 4), "float32"))  # 3 pairs x 4
        [[12.], [12.]]

    References:
        - Rendle, Factorization Machines, ICDM 2010; Guo et al., DeepFM, IJCAI 2017 (eq. 2).
    """

    def call(self, inputs: Any) -> Any:
        x = ops.cast(inputs, "float32")
        square_of_sum = ops.square(ops.sum(x, axis=1))
        sum_of_squares = ops.sum(ops.square(x), axis=1)
        fm = 0.5 * ops.sum(square_of_sum - sum_of_squares, axis=-1, keepdims=True)
        return ops.cast(fm, self.compute_dtype)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        if len(input_shape) != 3:
            raise ValueError(f"Expected inputs [B, F, d], got input_shape={input_shape}.")
        return (input_shape[0], 1)


@keras.saving.register_keras_serializable(package="feseq_tf")
class DINAttention(keras.layers.Layer):
    """DIN's attention pooling: target attention without softmax normalisation.

        a_t = MLP_Dice([q, k_t, q - k_t, q * k_t])      (:class:`DINActivationUnit`)
        u   = sum_t m_t a_t k_t                           (m_t = 1 on real positions)

    As in DIN (section 4.3) the weights are not normalised, so that `u` keeps the
    intensity of the user's interest. Padded positions get weight 0 (a product
    with the mask, no large negative constants); an empty history pools to 0.
    Unlike :class:`feseq_tf.layers.BilinearAttentionPooling` with
    `attention="din"` (softmax over projected keys), keys are pooled as they are.

    Args:
        hidden_units: sequence of int. Hidden units of the score MLP (Dice after each).
            Defaults to (80, 40) (the DIN paper).
        kernel_initializer: str or initializer. Defaults to `"glorot_uniform"`.
        **kwargs: Base layer keyword arguments.

    Call arguments:
        query: float tensor `[B, D]`, the target item.
        keys: float tensor `[B, L, D]`, the history.
        padding_mask: bool tensor `[B, L]`, True = real. Defaults to all real.
        training: bool. Dice uses batch statistics when true.
        return_attention_scores: bool. Also return the weights `[B, L]`.

    Returns:
        `[B, D]`, or `(pooled, weights [B, L])`.

    Example:
        >>> DINAttention((8,))(np.ones((2, 4), "float32"), np.ones((2, 5, 4), "float32")).shape
        (2, 4)

    References:
        - Zhou et al., Deep Interest Network for Click-Through Rate Prediction, KDD 2018.
    """

    def __init__(
        self,
        hidden_units: tuple = (80, 40),
        kernel_initializer: Any = "glorot_uniform",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        hidden_units = hidden_units_of(hidden_units)
        self.hidden_units = hidden_units
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, query_shape, keys_shape, padding_mask_shape=None) -> None:
        self._unit = DINActivationUnit(
            self.hidden_units,
            kernel_initializer=self.kernel_initializer,
            name="activation_unit",
            dtype=self.dtype_policy,
        )
        self._unit.build(query_shape, keys_shape)

    # Saved weights address a layer by attribute path, private attributes in name
    # order: these two, walked before `_unit`, keep the unit's weights where `.keras`
    # files written before the unit existed have them.
    @property
    def _mlp(self) -> list[keras.layers.Layer]:
        return self._unit.mlp_layers()[:-1]

    @property
    def _score(self) -> keras.layers.Layer:
        return self._unit.mlp_layers()[-1]

    def call(self, query, keys, padding_mask=None, training=None, return_attention_scores=False):
        weights = self._unit(query, keys, training=training)  # [B, L]
        if padding_mask is not None:
            weights = weights * ops.cast(padding_mask, weights.dtype)
        pooled = ops.einsum("bl,bld->bd", weights, keys)
        return (pooled, weights) if return_attention_scores else pooled

    def compute_output_spec(
        self, query, keys, padding_mask=None, training=None, return_attention_scores=False
    ):
        return _pooled_spec(self, keys, return_attention_scores)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "hidden_units": list(self.hidden_units),
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="feseq_tf")
class PositionalAttention(keras.layers.Layer):
    """DMR's additive attention over a history with position embeddings.

        a_t = z^T tanh(W_p p_t + W_e e_t [+ W_c c] + b)             (DMR eq. 5 / 8)
        alpha = masked_softmax_t(a)
        u = sum_t alpha_t e_t

    `p_t` is a learned embedding of the distance of history slot `t` to the target
    (histories are left-padded: slot `t` of `L` has distance `L - t`). Without a
    query `c` this is DMR's User-to-Item attention (the positions act as the query);
    with the target item as `c` it is the Item-to-Item attention, whose relevance
    score is the sum of the logits over the real positions. The softmax runs in
    float32; padded positions get weight 0 and logit 0, so an empty history pools
    to 0 with relevance 0.

    Args:
        units: int. Hidden size of the attention MLP.
        max_len: int. History length L (rows of the position table: L + 1).
        position_dim: int. Size of `p_t`.
        kernel_initializer: str or initializer. Defaults to `"glorot_uniform"`.
        embeddings_initializer: str or initializer. Position table.
            Defaults to `"uniform"`.
        **kwargs: Base layer keyword arguments.

    Call arguments:
        keys: float tensor `[B, L, D]`, the history `e`.
        padding_mask: bool tensor `[B, L]`, True = real. Defaults to all real.
        query: float tensor `[B, Dc]` or None, the target item `c`.
        return_logits: bool. Also return the logits `[B, L]` (0 on padding).

    Returns:
        `[B, D]`, or `(pooled, logits)` with `return_logits=True`.

    Example:
        >>> layer = PositionalAttention(units=8, max_len=5, position_dim=4)
        >>> layer(np.ones((2, 5, 6), "float32")).shape
        (2, 6)

    References:
        - Lyu et al., Deep Match to Rank Model for Personalized Click-Through Rate
          Prediction, AAAI 2020, section 3.2.
    """

    def __init__(
        self,
        units: int,
        max_len: int,
        position_dim: int,
        kernel_initializer: Any = "glorot_uniform",
        embeddings_initializer: Any = "uniform",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        for name, value in (("units", units), ("max_len", max_len), ("position_dim", position_dim)):
            if not positive_ints((value,)):
                raise ValueError(f"`{name}` must be a positive integer, got {name}={value!r}.")
        self.units = units
        self.max_len = max_len
        self.position_dim = position_dim
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)

    def build(self, keys_shape, padding_mask_shape=None, query_shape=None) -> None:
        keys_shape = tuple(keys_shape)
        if len(keys_shape) != 3 or keys_shape[1] not in (None, self.max_len):
            raise ValueError(
                f"Expected keys [B, {self.max_len}, D] (max_len={self.max_len}), "
                f"got keys_shape={keys_shape}."
            )
        common = {"dtype": self.dtype_policy}

        def dense(name: str) -> dict[str, Any]:
            init = clone_initializer(self.kernel_initializer, name)
            return {"kernel_initializer": init, "name": name, **common}

        self._positions = keras.layers.Embedding(
            self.max_len + 1,
            self.position_dim,
            clone_initializer(self.embeddings_initializer, "position_embedding"),
            name="position_embedding",
            **common,
        )
        self._positions.build()
        self._key = keras.layers.Dense(self.units, **dense("key"))
        self._key.build(keys_shape)
        self._position = keras.layers.Dense(self.units, use_bias=False, **dense("position"))
        self._position.build((self.max_len, self.position_dim))
        self._query = None
        if query_shape is not None:
            self._query = keras.layers.Dense(self.units, use_bias=False, **dense("query"))
            self._query.build(tuple(query_shape))
        self._logit = keras.layers.Dense(1, use_bias=False, **dense("logit"))
        self._logit.build(keys_shape[:-1] + (self.units,))
        self._softmax = keras.layers.Softmax(axis=-1, name="softmax", dtype="float32")

    def call(self, keys, padding_mask=None, query=None, return_logits=False):
        if (query is None) != (self._query is None):
            raise ValueError("Call the layer with or without `query` consistently with its build.")
        distance = ops.arange(self.max_len, 0, -1, dtype="int32")  # slot t -> L - t
        hidden = self._key(keys) + self._position(self._positions(distance))[None]
        if query is not None:
            hidden = hidden + ops.expand_dims(self._query(query), 1)
        logits = ops.squeeze(self._logit(ops.tanh(hidden)), axis=-1)  # [B, L]
        mask = None if padding_mask is None else ops.cast(padding_mask, "bool")
        weights = ops.cast(self._softmax(logits, mask=mask), keys.dtype)  # 0 on padding
        pooled = ops.einsum("bl,bld->bd", weights, keys)
        if not return_logits:
            return pooled
        if mask is not None:
            logits = ops.where(mask, logits, ops.zeros_like(logits))
        return pooled, logits

    def compute_output_spec(self, keys, padding_mask=None, query=None, return_logits=False):
        return _pooled_spec(self, keys, return_logits)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {"units": self.units, "max_len": self.max_len, "position_dim": self.position_dim}
        )
        for name in ("kernel_initializer", "embeddings_initializer"):
            config[name] = keras.initializers.serialize(getattr(self, name))
        return config
