"""DIN's building blocks: the Dice activation and the local activation unit."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from feseq_tf.layers.initializers import clone_initializer


def positive_ints(value: Any) -> bool:
    """Whether ``value`` is a non-empty sequence of positive integers (bools excluded)."""
    return bool(value) and all(
        isinstance(u, int) and not isinstance(u, bool) and u > 0 for u in value
    )


def hidden_units_of(hidden_units: Any) -> tuple[int, ...]:
    """``hidden_units`` as a tuple; ValueError unless positive integers."""
    hidden_units = tuple(hidden_units)
    if not positive_ints(hidden_units):
        raise ValueError(
            "`hidden_units` must be a non-empty sequence of positive integers, "
            f"got hidden_units={hidden_units!r}."
        )
    return hidden_units


@keras.saving.register_keras_serializable(package="feseq_tf")
class Dice(keras.layers.Layer):
    """Data-adaptive activation of DIN.

        p(x) = sigmoid((x - E[x]) / sqrt(Var[x] + eps))
        Dice(x) = p(x) * x + (1 - p(x)) * alpha * x

    with batch statistics in training and moving averages in inference (a
    `BatchNormalization` without scale and offset), and `alpha` learned per
    channel.

    Args:
        epsilon: float. eps above. Defaults to 1e-8.
        momentum: float. Momentum of the moving statistics. Defaults to 0.99.
        alpha_initializer: str or initializer. Defaults to `"zeros"`.
        **kwargs: Base layer keyword arguments.

    Call arguments:
        inputs: float tensor `[..., C]`.
        training: bool. Batch statistics when true, moving ones otherwise.

    Returns:
        Tensor of the shape of `inputs`.

    Example:
        >>> Dice()(np.ones((4, 8), "float32")).shape
        (4, 8)

    References:
        - Zhou et al., Deep Interest Network, KDD 2018.
    """

    def __init__(
        self,
        epsilon: float = 1e-8,
        momentum: float = 0.99,
        alpha_initializer: Any = "zeros",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not epsilon > 0:
            raise ValueError(f"`epsilon` must be > 0, got epsilon={epsilon!r}.")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"`momentum` must be in [0, 1), got momentum={momentum!r}.")
        self.epsilon = epsilon
        self.momentum = momentum
        self.alpha_initializer = keras.initializers.get(alpha_initializer)

    def build(self, input_shape: tuple) -> None:
        self._norm = keras.layers.BatchNormalization(
            momentum=self.momentum,
            epsilon=self.epsilon,
            center=False,
            scale=False,
            name="batch_norm",
            dtype=self.dtype_policy,
        )
        self._norm.build(input_shape)
        self.alpha = self.add_weight(
            name="alpha", shape=(input_shape[-1],), initializer=self.alpha_initializer
        )

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        p = ops.sigmoid(self._norm(inputs, training=training))
        alpha = ops.cast(self.alpha, inputs.dtype)
        return p * inputs + (1.0 - p) * alpha * inputs

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "epsilon": self.epsilon,
                "momentum": self.momentum,
                "alpha_initializer": keras.initializers.serialize(self.alpha_initializer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="feseq_tf")
class DINActivationUnit(keras.layers.Layer):
    """DIN's local activation unit: a relevance logit of every key to the query.

        a_t = w^T Dice(... Dice(W_1 [q, k_t, q - k_t, q * k_t] + b_1) ...) + b

    an MLP with Dice after each hidden layer on the query, the key, their
    difference and their product. The logits are not normalised: a caller
    applies a masked softmax (`BilinearAttentionPooling(attention="din")`) or
    weights the keys with them directly (`DINAttention`).

    Args:
        hidden_units: sequence of int. Hidden units of the MLP (Dice after each).
            Defaults to (80, 40) (the DIN paper).
        kernel_initializer: str or initializer. Dense kernels.
            Defaults to `"glorot_uniform"`.
        seed: int or None. Seeds an unseeded `kernel_initializer`. Defaults to None.
        sublayer_prefix: str. Prefix of the sublayers' names (`dense_<i>`,
            `dice_<i>`, `score`), which also salts their initializers' seeds.
            Defaults to `""`.
        **kwargs: Base layer keyword arguments.

    Call arguments:
        query: float tensor `[B, D]`, the target.
        keys: float tensor `[B, T, D]`, the sequence.
        training: bool. Dice uses batch statistics when true.

    Returns:
        Tensor `[B, T]`: the logits `a_t`.

    Example:
        >>> unit = DINActivationUnit((8,))
        >>> unit(np.ones((2, 4), "float32"), np.ones((2, 5, 4), "float32")).shape
        (2, 5)

    References:
        - Zhou et al., Deep Interest Network for Click-Through Rate Prediction,
          KDD 2018 (section 4.3, Fig. 2).
    """

    def __init__(
        self,
        hidden_units: tuple = (80, 40),
        kernel_initializer: Any = "glorot_uniform",
        seed: int | None = None,
        sublayer_prefix: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        hidden_units = hidden_units_of(hidden_units)
        if not isinstance(sublayer_prefix, str):
            raise ValueError(
                f"`sublayer_prefix` must be a string, got sublayer_prefix={sublayer_prefix!r}."
            )
        self.hidden_units = hidden_units
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.seed = seed
        self.sublayer_prefix = sublayer_prefix

    def _dense(self, units: int, name: str, shape: tuple) -> keras.layers.Dense:
        name = self.sublayer_prefix + name
        init = clone_initializer(self.kernel_initializer, name, self.seed)
        layer = keras.layers.Dense(
            units, kernel_initializer=init, name=name, dtype=self.dtype_policy
        )
        layer.build(shape)
        return layer

    def build(self, query_shape, keys_shape) -> None:
        query_shape, keys_shape = tuple(query_shape), tuple(keys_shape)
        if len(keys_shape) != 3 or len(query_shape) != 2 or query_shape[-1] != keys_shape[-1]:
            raise ValueError(
                "Expected query [B, D] and keys [B, T, D], "
                f"got query_shape={query_shape}, keys_shape={keys_shape}."
            )
        shape = keys_shape[:-1] + (4 * keys_shape[-1],)
        self._mlp: list[keras.layers.Layer] = []
        for i, units in enumerate(self.hidden_units):
            dense = self._dense(units, f"dense_{i}", shape)
            shape = shape[:-1] + (units,)
            dice = Dice(name=f"{self.sublayer_prefix}dice_{i}", dtype=self.dtype_policy)
            dice.build(shape)
            self._mlp += [dense, dice]
        self._score = self._dense(1, "score", shape)

    def mlp_layers(self) -> list[keras.layers.Layer]:
        """The MLP's layers in call order, the score layer last."""
        return [*self._mlp, self._score]

    def call(self, query, keys, training=None):
        q = ops.broadcast_to(ops.expand_dims(query, 1), ops.shape(keys))
        x = ops.concatenate([q, keys, q - keys, q * keys], axis=-1)
        for layer in self._mlp:
            x = layer(x, training=training) if isinstance(layer, Dice) else layer(x)
        return ops.squeeze(self._score(x), axis=-1)

    def compute_output_shape(self, query_shape, keys_shape):
        return tuple(keys_shape[:2])

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "hidden_units": list(self.hidden_units),
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "seed": self.seed,
                "sublayer_prefix": self.sublayer_prefix,
            }
        )
        return config
