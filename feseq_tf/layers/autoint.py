"""The interacting layer: AutoInt self-attention over feature fields."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from feseq_tf.layers.attention import scaled_dot_product_attention
from feseq_tf.layers.initializers import clone_initializer


@keras.saving.register_keras_serializable(package="feseq_tf")
class AutoIntLayer(keras.layers.Layer):
    """Multi-head self-attention over the fields of each position (AutoInt).

    For the field embeddings `E in R^{F x d}` of one position (paper section
    3.2), per head:

        Q = E W^Q,  K = E W^K,  V = E W^V                      (eq. 1)
        E~ = softmax(Q K^T / sqrt(head_dim)) V                  (eq. 2)
        E' = ReLU(concat_heads(E~) + E W^res)                  (eq. 3)

    `W^res` is the identity when `num_heads * head_dim == d` and a learned
    projection otherwise. Dropout acts on the attention weights. Any number of
    leading axes is allowed (e.g. `[B, L+1, F, d]`); the parameters are shared
    across them, which is the paper's parameter sharing across positions. The
    softmax runs in float32 under mixed precision.

    Args:
        num_heads: int. Number of attention heads. Defaults to 1.
        head_dim: int or None. Size of each head. Defaults to `d // num_heads`.
        dropout: float. Dropout rate on the attention weights. Defaults to 0.
        use_residual: bool. Add the (projected) input before the ReLU.
            Defaults to True.
        kernel_initializer: str or initializer. Initializer of the projections.
            Defaults to `"glorot_uniform"`.
        seed: int or None. Seed of the dropout. Defaults to None.
        **kwargs: Base layer keyword arguments (`name`, `dtype`...).

    Call arguments:
        inputs: float tensor `[..., F, d]`.
        training: bool. Dropout is active only when true.
        return_attention_scores: bool. Also return the attention weights.
            Defaults to False.

    Returns:
        Tensor `[..., F, num_heads * head_dim]`, or the tuple
        `(output, scores)` with scores `[..., num_heads, F, F]` (rows sum to
        1) when `return_attention_scores=True`.

    Example:
        >>> layer = AutoIntLayer(num_heads=1)
        >>> layer(np.zeros((2, 11, 23, 16), "float32")).shape
        (2, 11, 23, 16)

    References:
        - Song et al., AutoInt, CIKM 2019.
        - Liu et al., FESeq, section 3.2 (eq. 1-3).
    """

    def __init__(
        self,
        num_heads: int = 1,
        head_dim: int | None = None,
        dropout: float = 0.0,
        use_residual: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(num_heads, int) or num_heads < 1:
            raise ValueError(
                f"`num_heads` must be a positive integer, got num_heads={num_heads!r}."
            )
        if head_dim is not None and (not isinstance(head_dim, int) or head_dim < 1):
            raise ValueError(
                f"`head_dim` must be None or a positive integer, got head_dim={head_dim!r}."
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got dropout={dropout!r}.")
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.dropout = dropout
        self.use_residual = bool(use_residual)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.seed = seed

    def build(self, input_shape: tuple) -> None:
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(
                "Expected inputs of shape [..., F, d] with a known d, "
                f"got input_shape={input_shape}."
            )
        dim = input_shape[-1]
        head_dim = self.head_dim or dim // self.num_heads
        if head_dim < 1:
            raise ValueError(
                f"num_heads={self.num_heads} exceeds the embedding size d={dim}; "
                "pass head_dim explicitly."
            )
        self._head_dim = head_dim
        self._units = self.num_heads * head_dim

        def projection(name: str) -> keras.Variable:
            return self.add_weight(
                name=f"{name}_kernel",
                shape=(dim, self._units),
                initializer=clone_initializer(self.kernel_initializer, name, self.seed),
            )

        self._dim = dim
        self._query_kernel = projection("query")
        self._key_kernel = projection("key")
        self._value_kernel = projection("value")
        self._residual = None
        if self.use_residual and self._units != dim:
            self._residual = keras.layers.Dense(
                self._units,
                use_bias=False,
                kernel_initializer=clone_initializer(self.kernel_initializer, "residual", self.seed),
                name="residual",
                dtype=self.dtype_policy,
            )
            self._residual.build(input_shape)
        self._softmax = keras.layers.Softmax(axis=-1, name="softmax", dtype="float32")
        self._attention_dropout = keras.layers.Dropout(
            self.dropout, seed=self.seed, name="attention_dropout", dtype=self.dtype_policy
        )

    def call(
        self,
        inputs: Any,
        training: bool | None = None,
        return_attention_scores: bool = False,
    ) -> Any:
        # All positions and samples are flattened into one row axis so that the
        # projections are one 2-D matmul and the attention a batched matmul over
        # [N, F, h]: einsum over ellipsis axes is an order of magnitude slower on CPU.
        n, h, dim = self.num_heads, self._head_dim, self._dim
        lead = ops.shape(inputs)[:-2]
        fields = inputs.shape[-2]
        x = ops.reshape(inputs, (-1, dim))  # [N*F, d]

        def heads(kernel):  # -> [N*n, F, h]
            y = ops.matmul(x, ops.cast(kernel, x.dtype))  # [N*F, n*h]
            if n == 1:
                return ops.reshape(y, (-1, fields, h))
            y = ops.transpose(ops.reshape(y, (-1, fields, n, h)), (0, 2, 1, 3))
            return ops.reshape(y, (-1, fields, h))

        attended, scores = scaled_dot_product_attention(  # [N*n, F, h], [N*n, F, F]
            heads(self._query_kernel),
            heads(self._key_kernel),
            heads(self._value_kernel),
            self._softmax,
            self._attention_dropout,
            training=training,
        )
        if n > 1:
            attended = ops.transpose(ops.reshape(attended, (-1, n, fields, h)), (0, 2, 1, 3))
        outputs = ops.reshape(attended, tuple(lead) + (fields, self._units))
        scores = ops.reshape(scores, tuple(lead) + (n, fields, fields))
        if self.use_residual:
            residual = inputs if self._residual is None else self._residual(inputs)
            outputs = outputs + ops.cast(residual, outputs.dtype)
        outputs = ops.relu(outputs)
        if return_attention_scores:
            return outputs, scores
        return outputs

    def _units_for(self, dim: int) -> int:
        return self.num_heads * (self.head_dim or dim // self.num_heads)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape[:-1]) + (self._units_for(input_shape[-1]),)

    def compute_output_spec(
        self,
        inputs: Any,
        training: bool | None = None,
        return_attention_scores: bool = False,
    ) -> Any:
        shape = tuple(inputs.shape)
        outputs = keras.KerasTensor(self.compute_output_shape(shape), dtype=self.compute_dtype)
        if not return_attention_scores:
            return outputs
        fields = shape[-2]
        scores_shape = shape[:-2] + (self.num_heads, fields, fields)
        return outputs, keras.KerasTensor(scores_shape, dtype=self.compute_dtype)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "head_dim": self.head_dim,
                "dropout": self.dropout,
                "use_residual": self.use_residual,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "seed": self.seed,
            }
        )
        return config
