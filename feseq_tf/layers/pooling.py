"""Sequence pooling: scaled bilinear attention pooling and the ablation variants."""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from feseq_tf.layers.din import DINActivationUnit
from feseq_tf.layers.initializers import clone_initializer
from feseq_tf.options import ATTENTION_TYPES

_REQUIREMENTS = {
    "hidden_units": "a positive integer",
    "output_units": "None or a positive integer",
    "attention": f"one of {ATTENTION_TYPES}",
    "dropout": "in [0, 1)",
    "din_units": "a non-empty sequence of positive integers",
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


class _SequencePooling(keras.layers.Layer):
    """Shared call contract: `(query, keys, padding_mask) -> [B, units]`."""

    def _units(self, keys_shape: tuple) -> int:
        return keys_shape[-1]

    def compute_output_shape(self, query_shape, keys_shape, padding_mask_shape=None):
        return (keys_shape[0], self._units(keys_shape))

    def compute_output_spec(
        self,
        query,
        keys,
        padding_mask=None,
        training=None,
        return_attention_scores=False,
    ):
        shape = tuple(keys.shape)
        outputs = keras.KerasTensor(self.compute_output_shape(None, shape), self.compute_dtype)
        if not return_attention_scores:
            return outputs
        return outputs, keras.KerasTensor(shape[:2], dtype=self.compute_dtype)


def _real(keys: Any, padding_mask: Any) -> Any:
    """Padding mask as a float `[B, T]` in the dtype of `keys` (1 = real)."""
    if padding_mask is None:
        return ops.ones_like(keys[..., 0])
    return ops.cast(padding_mask, keys.dtype)


@keras.saving.register_keras_serializable(package="feseq_tf")
class BilinearAttentionPooling(_SequencePooling):
    """Target-aware attention pooling with a scaled bilinear score.

        q = PReLU(Dropout(W^q e_out)), K = PReLU(Dropout(F W^K)),
        V = PReLU(Dropout(F W^V))                                  (eq. 9)
        alpha = masked_softmax_t(g(q, K_t))                        (eq. 11)
        g(q, K_t) = q^T W K_t / sqrt(d_h),  W initialised to I     (eq. 12)
        u = PReLU(W_o sum_t alpha_t V_t + b_o)                     (eq. 10)

    PReLU and dropout commute (dropout scales by 0 or 1/(1-rate) >= 0 and PReLU
    is positively homogeneous), so their order is immaterial. `attention`
    selects g: `"bilinear"` (eq. 12), `"dot"` (`q . K_t`, scaled likewise) or
    `"din"` (:class:`DINActivationUnit`, an MLP with Dice on
    `[q, K_t, q - K_t, q * K_t]`, never scaled).
    The softmax runs in float32 under mixed precision. Padded positions get
    weight 0; a fully padded row pools to `PReLU(b_o)`.

    Args:
        hidden_units: int. d_h. Defaults to 128.
        output_units: int or None. Size of u. Defaults to the keys' size.
        attention: str. `"bilinear"`, `"dot"` or `"din"`. Defaults to `"bilinear"`.
        use_scale: bool. Divide bilinear/dot scores by sqrt(d_h). Defaults to True.
        dropout: float. Dropout on q, K and V. Defaults to 0.
        din_units: tuple of int. Hidden units of the DIN score MLP.
            Defaults to (64, 32).
        kernel_initializer: str or initializer. Projection kernels.
            Defaults to `"glorot_uniform"`.
        bilinear_initializer: str or initializer. W of eq. 12. Defaults to
            `"identity"`.
        seed: int or None. Seed of the dropout. Defaults to None.
        **kwargs: Base layer keyword arguments.

    Call arguments:
        query: float tensor `[B, Dq]`, the target item representation.
        keys: float tensor `[B, T, Dk]`, the refined sequence.
        padding_mask: bool tensor `[B, T]`, True = real. Defaults to all real.
        training: bool. Dropout and Dice use training behaviour when true.
        return_attention_scores: bool. Also return alpha. Defaults to False.

    Returns:
        Tensor `[B, output_units]`, or `(pooled, weights [B, T])` with
        `return_attention_scores`.

    Example:
        >>> layer = BilinearAttentionPooling(hidden_units=8)
        >>> layer(np.ones((2, 4), "float32"), np.ones((2, 5, 6), "float32")).shape
        (2, 6)

    References:
        - Liu et al., FESeq, section 3.4 (eq. 9-12).
        - Kim et al., Bilinear Attention Networks, NeurIPS 2018.
    """

    def __init__(
        self,
        hidden_units: int = 128,
        output_units: int | None = None,
        attention: str = "bilinear",
        use_scale: bool = True,
        dropout: float = 0.0,
        din_units: tuple = (64, 32),
        kernel_initializer: Any = "glorot_uniform",
        bilinear_initializer: Any = "identity",
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        din_units = tuple(din_units)
        for name, ok, value in [
            ("hidden_units", _is_int(hidden_units), hidden_units),
            ("output_units", output_units is None or _is_int(output_units), output_units),
            ("attention", attention in ATTENTION_TYPES, attention),
            ("dropout", 0.0 <= dropout < 1.0, dropout),
            ("din_units", bool(din_units) and all(map(_is_int, din_units)), din_units),
        ]:
            if not ok:
                raise ValueError(f"`{name}` must be {_REQUIREMENTS[name]}, got {name}={value!r}.")
        self.hidden_units = hidden_units
        self.output_units = output_units
        self.attention = attention
        self.use_scale = bool(use_scale)
        self.dropout = dropout
        self.din_units = din_units
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bilinear_initializer = keras.initializers.get(bilinear_initializer)
        self.seed = seed

    def _units(self, keys_shape: tuple) -> int:
        return self.output_units or keys_shape[-1]

    def _dense(self, units, name, shape, use_bias=True, **kwargs) -> keras.layers.Dense:
        init = kwargs.pop("kernel_initializer", self.kernel_initializer)
        kwargs["kernel_initializer"] = clone_initializer(init, name, self.seed)
        layer = keras.layers.Dense(
            units, use_bias=use_bias, name=name, dtype=self.dtype_policy, **kwargs
        )
        layer.build(shape)
        return layer

    def _prelu(self, name: str, shape: tuple) -> keras.layers.PReLU:
        layer = keras.layers.PReLU(
            alpha_initializer=keras.initializers.Constant(0.25),
            shared_axes=list(range(1, len(shape) - 1)) or None,
            name=name,
            dtype=self.dtype_policy,
        )
        layer.build(shape)
        return layer

    def build(self, query_shape, keys_shape, padding_mask_shape=None) -> None:
        query_shape, keys_shape = tuple(query_shape), tuple(keys_shape)
        if len(keys_shape) != 3 or keys_shape[-1] is None or query_shape[-1] is None:
            raise ValueError(
                "Expected query [B, Dq] and keys [B, T, Dk], "
                f"got query_shape={query_shape}, keys_shape={keys_shape}."
            )
        h = self.hidden_units
        q_hidden, k_hidden = query_shape[:-1] + (h,), keys_shape[:-1] + (h,)
        self._query = self._dense(h, "query", query_shape, use_bias=False)
        self._key = self._dense(h, "key", keys_shape, use_bias=False)
        self._value = self._dense(h, "value", keys_shape, use_bias=False)
        self._query_act = self._prelu("query_activation", q_hidden)
        self._key_act = self._prelu("key_activation", k_hidden)
        self._value_act = self._prelu("value_activation", k_hidden)
        self._dropout = keras.layers.Dropout(
            self.dropout, seed=self.seed, name="dropout", dtype=self.dtype_policy
        )
        if self.attention == "bilinear":
            init = self.bilinear_initializer
            self._bilinear = self._dense(
                h, "bilinear", q_hidden, use_bias=False, kernel_initializer=init
            )
        elif self.attention == "din":
            self._din_unit = DINActivationUnit(
                self.din_units,
                kernel_initializer=self.kernel_initializer,
                seed=self.seed,
                sublayer_prefix="din_",
                name="din",
                dtype=self.dtype_policy,
            )
            self._din_unit.build(q_hidden, k_hidden)
        self._softmax = keras.layers.Softmax(axis=-1, name="softmax", dtype="float32")
        out_shape = (keys_shape[0], self._units(keys_shape))
        self._output = self._dense(out_shape[-1], "output", query_shape[:-1] + (h,))
        self._output_act = self._prelu("output_activation", out_shape)

    def call(
        self,
        query,
        keys,
        padding_mask=None,
        training=None,
        return_attention_scores=False,
    ):
        q = self._query_act(self._dropout(self._query(query), training=training))
        k = self._key_act(self._dropout(self._key(keys), training=training))
        v = self._value_act(self._dropout(self._value(keys), training=training))
        if self.attention == "din":
            logits = self._din_unit(q, k, training=training)
        else:
            if self.attention == "bilinear":
                q = self._bilinear(q)  # q^T W
            logits = ops.einsum("bh,bth->bt", q, k)
            if self.use_scale:
                logits = logits * ops.cast(1.0 / math.sqrt(self.hidden_units), logits.dtype)
        mask = None if padding_mask is None else ops.cast(padding_mask, "bool")
        weights = ops.cast(self._softmax(logits, mask=mask), v.dtype)  # [B, T], 0 on padding
        pooled = self._output_act(self._output(ops.einsum("bt,bth->bh", weights, v)))
        return (pooled, weights) if return_attention_scores else pooled

    @property
    def _din(self) -> list[keras.layers.Layer]:
        # Saved weights address a layer by attribute path, private attributes in
        # name order: this list, walked before `_din_unit`, keeps the DIN unit's
        # weights where `.keras` files written before the unit existed have them.
        unit = getattr(self, "_din_unit", None)
        return [] if unit is None else unit.mlp_layers()

    def get_config(self) -> dict:
        config = super().get_config()
        names = ("hidden_units", "output_units", "attention", "use_scale", "dropout", "seed")
        config.update({name: getattr(self, name) for name in names})
        config["din_units"] = list(self.din_units)
        for name in ("kernel_initializer", "bilinear_initializer"):
            config[name] = keras.initializers.serialize(getattr(self, name))
        return config


@keras.saving.register_keras_serializable(package="feseq_tf")
class MeanPooling(_SequencePooling):
    """Mean of the real positions: `sum_t m_t F_t / max(sum_t m_t, 1)`.

    Same call signature as `BilinearAttentionPooling` (`query` unused, may be
    None); the "weights" it can return are `m_t / sum_t m_t`. An ablation of
    the paper's Table 8. Returns `[B, Dk]`, or `(pooled, weights [B, T])`.
    """

    def call(self, query, keys, padding_mask=None, training=None, return_attention_scores=False):
        real = _real(keys, padding_mask)
        weights = real / ops.maximum(ops.sum(real, axis=-1, keepdims=True), 1.0)
        pooled = ops.einsum("bt,btd->bd", weights, keys)
        return (pooled, weights) if return_attention_scores else pooled


@keras.saving.register_keras_serializable(package="feseq_tf")
class TargetPooling(_SequencePooling):
    """The last (target) position, `F_{T-1}`; the paper's Table 8 ablation.

    Same call signature as `BilinearAttentionPooling` (`query` and
    `padding_mask` unused); the returned "weights" are one-hot on the last
    position. Returns `[B, Dk]`, or `(pooled, weights [B, T])`.
    """

    def call(self, query, keys, padding_mask=None, training=None, return_attention_scores=False):
        pooled = keys[:, -1, :]
        if not return_attention_scores:
            return pooled
        steps = ops.shape(keys)[1]
        weights = ops.cast(ops.equal(ops.arange(steps), steps - 1), keys.dtype)
        return pooled, ops.broadcast_to(weights[None], ops.shape(keys)[:2])
