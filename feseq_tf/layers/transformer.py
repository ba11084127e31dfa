"""The sequence refiner: a position- and time-aware causal Transformer."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from feseq_tf.layers.attention import MaskedSelfAttention
from feseq_tf.layers.initializers import clone_initializer
from feseq_tf.options import TIME_COMBINE

_CONFIG_KEYS = (
    "num_heads max_positions time_clip time_embedding_dim combine use_position use_time causal "
    "num_layers ffn_units dropout layer_norm leaky_relu_alpha attention_dropout seed"
).split()


def _require(ok: bool, name: str, value: Any, requirement: str) -> None:
    if not ok:
        raise ValueError(f"`{name}` must be {requirement}, got {name}={value!r}.")


def _is_int(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


@keras.saving.register_keras_serializable(package="feseq_tf")
class TimeAwareTransformer(keras.layers.Layer):
    """Causal Transformer with positional and linear time-interval embeddings.

    Each position `t` of `X in R^{T x D}` (history, target last) gets a learned
    positional embedding `p` with id `T-1-t` (reverse time order: the target is
    0) and a time embedding `ti` of its interval `dt_t = t_target - t_t`,
    floored and clipped to `[0, time_clip]` (one table row per integer
    interval). With `combine="concat"` (the paper's text and code)
    `X^ = [X, p, ti]`; with `"add"`, `X^ = X + p + ti` (eq. 4). Then, per layer:

        S  = MH(X^) = concat(head_1..head_h) W^H               (eq. 5-6)
        S' = X^ + Dropout(S)                                    (eq. 7)
        F  = S' + Dropout(LeakyReLU(S' W1 + b1) W2 + b2)        (eq. 8)

    The attention mask is `(causal AND key is real) OR (query == key)`: a
    position always sees itself, so fully padded rows stay finite. Outputs at
    padded positions are finite but meaningless; mask them downstream.

    Args:
        num_heads: int. Attention heads; must divide the model width. Defaults to 8.
        max_positions: int. Rows of the positional table (>= T). Required when
            `use_position`.
        time_clip: int. Largest time interval; larger ones share its row.
            Defaults to 4000.
        time_embedding_dim: int or None. d_t, size of the positional and time
            embeddings for `"concat"` (required then); with `"add"` they have
            size D (None or D).
        combine: str. `"concat"` or `"add"`. Defaults to `"concat"`.
        use_position: bool. Use the positional embedding. Defaults to True.
        use_time: bool. Use the time-interval embedding. Defaults to True.
        causal: bool. Causal mask (padding mask is always applied). Defaults to True.
        num_layers: int. Number of Transformer layers. Defaults to 1.
        ffn_units: int or None. Hidden units of the FFN. Defaults to the width.
        dropout: float. Dropout of eq. 7-8. Defaults to 0.
        layer_norm: bool. LayerNorm after each residual. Defaults to False.
        leaky_relu_alpha: float. Negative slope of the FFN's LeakyReLU.
            Defaults to 0.01.
        attention_dropout: float. Dropout on the attention weights. Defaults to 0.
        kernel_initializer: str or initializer. Dense/attention kernels.
            Defaults to `"glorot_uniform"`.
        embeddings_initializer: str or initializer. Positional and time tables.
            Defaults to `"uniform"`.
        seed: int or None. Seed of the dropouts. Defaults to None.
        **kwargs: Base layer keyword arguments (`name`, `dtype`...).

    Call arguments:
        inputs: float tensor `[B, T, D]`.
        time_intervals: float or int tensor `[B, T]`, already in time units.
            Required when `use_time`. Not autocast, so that mixed precision
            does not round large float intervals.
        padding_mask: bool tensor `[B, T]`, True = real position. Defaults to
            all real.
        training: bool. Dropout is active only when true.
        return_attention_scores: bool. Also return the last layer's attention
            weights. Defaults to False.

    Returns:
        Tensor `[B, T, D_out]` (`D_out = D + d_t * (use_position + use_time)`
        for `"concat"`, D for `"add"`), or `(output, scores [B, heads, T, T])`.

    Example:
        >>> layer = TimeAwareTransformer(num_heads=2, max_positions=4,
        ...                              time_embedding_dim=2)
        >>> x, dt = np.zeros((1, 4, 4), "float32"), np.zeros((1, 4), "int32")
        >>> layer(x, dt).shape
        (1, 4, 8)

    References:
        - Liu et al., FESeq, section 3.3 (eq. 4-8).
        - Li et al., TiSASRec, WSDM 2020; Chen et al., BST, DLP-KDD 2019.
    """

    def __init__(
        self,
        num_heads: int = 8,
        max_positions: int | None = None,
        time_clip: int = 4000,
        time_embedding_dim: int | None = None,
        combine: str = "concat",
        use_position: bool = True,
        use_time: bool = True,
        causal: bool = True,
        num_layers: int = 1,
        ffn_units: int | None = None,
        dropout: float = 0.0,
        layer_norm: bool = False,
        leaky_relu_alpha: float = 0.01,
        attention_dropout: float = 0.0,
        kernel_initializer: Any = "glorot_uniform",
        embeddings_initializer: Any = "uniform",
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        # autocast=False: float time intervals keep their dtype instead of being
        # rounded to bfloat16/float16 (3999 -> 4000 in bfloat16); `call` casts
        # `inputs` itself and every sublayer still autocasts under mixed precision.
        super().__init__(**{"autocast": False, **kwargs})
        ints = {"num_heads": num_heads, "num_layers": num_layers, "time_clip": time_clip}
        for name, value in ints.items():
            low = 0 if name == "time_clip" else 1
            _require(_is_int(value, low), name, value, f"an integer >= {low}")
        _require(combine in TIME_COMBINE, "combine", combine, f"one of {TIME_COMBINE}")
        _require(
            _is_int(max_positions, 1) or not use_position, "max_positions", max_positions, "> 0"
        )
        need_dim = combine == "concat" and (use_position or use_time)
        ok = _is_int(time_embedding_dim, 1) or (time_embedding_dim is None and not need_dim)
        _require(
            ok, "time_embedding_dim", time_embedding_dim, 'an integer > 0 when combine="concat"'
        )
        _require(_is_int(ffn_units, 1) or ffn_units is None, "ffn_units", ffn_units, "None or > 0")
        for name, rate in [("dropout", dropout), ("attention_dropout", attention_dropout)]:
            _require(0.0 <= rate < 1.0, name, rate, "in [0, 1)")
        _require(leaky_relu_alpha >= 0, "leaky_relu_alpha", leaky_relu_alpha, ">= 0")
        self.num_heads = num_heads
        self.max_positions = max_positions
        self.time_clip = time_clip
        self.time_embedding_dim = time_embedding_dim
        self.combine = combine
        self.use_position = bool(use_position)
        self.use_time = bool(use_time)
        self.causal = bool(causal)
        self.num_layers = num_layers
        self.ffn_units = ffn_units
        self.dropout = dropout
        self.layer_norm = bool(layer_norm)
        self.leaky_relu_alpha = leaky_relu_alpha
        self.attention_dropout = attention_dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.seed = seed

    def _output_dim(self, dim: int) -> int:
        if self.combine == "add":
            return dim
        return dim + self.time_embedding_dim * (int(self.use_position) + int(self.use_time))

    def build(
        self, inputs_shape: tuple, time_intervals_shape=None, padding_mask_shape=None
    ) -> None:
        if len(inputs_shape) != 3 or inputs_shape[-1] is None:
            raise ValueError(f"Expected inputs [B, T, D] with known D, got {inputs_shape}.")
        dim, steps = inputs_shape[-1], inputs_shape[1]
        width = self._output_dim(dim)
        if width % self.num_heads:
            raise ValueError(f"num_heads={self.num_heads} must divide the model width {width}.")
        if self.combine == "add" and self.time_embedding_dim not in (None, dim):
            raise ValueError(
                f'With combine="add", time_embedding_dim must be None or D={dim}, '
                f"got {self.time_embedding_dim}."
            )
        if self.use_position and steps is not None and steps > self.max_positions:
            raise ValueError(f"Sequence length {steps} exceeds max_positions={self.max_positions}.")
        emb_dim = dim if self.combine == "add" else self.time_embedding_dim
        common = {"dtype": self.dtype_policy}

        def table(rows: int, name: str) -> keras.layers.Embedding:
            init = clone_initializer(self.embeddings_initializer, name, self.seed)
            layer = keras.layers.Embedding(rows, emb_dim, init, name=name, **common)
            layer.build()
            return layer

        self._position_embedding = self._time_embedding = None
        if self.use_position:
            self._position_embedding = table(self.max_positions, "position_embedding")
        if self.use_time:
            self._time_embedding = table(self.time_clip + 1, "time_embedding")
        seq_shape = (inputs_shape[0], steps, width)
        units, self._blocks = self.ffn_units or width, []

        def dense(name: str) -> dict[str, Any]:
            init = clone_initializer(self.kernel_initializer, name, self.seed)
            return {"kernel_initializer": init, "name": name, **common}

        for i in range(self.num_layers):
            block = {
                "attention": MaskedSelfAttention(
                    self.num_heads,
                    dropout=self.attention_dropout,
                    seed=self.seed,
                    **dense(f"attention_{i}"),
                ),
                "ffn_inner": keras.layers.Dense(units, **dense(f"ffn_inner_{i}")),
                "ffn_outer": keras.layers.Dense(width, **dense(f"ffn_outer_{i}")),
                "dropout": keras.layers.Dropout(
                    self.dropout, seed=self.seed, name=f"dropout_{i}", **common
                ),
            }
            block["attention"].build(seq_shape)
            block["ffn_inner"].build((None, width))
            block["ffn_outer"].build((None, units))
            if self.layer_norm:
                for key in ("attention_norm", "ffn_norm"):
                    block[key] = keras.layers.LayerNormalization(name=f"{key}_{i}", **common)
                    block[key].build((None, width))
            self._blocks.append(block)

    def _embed(self, inputs: Any, time_intervals: Any) -> Any:
        batch, steps = ops.shape(inputs)[0], ops.shape(inputs)[1]
        parts = [inputs]
        if self.use_position:
            ids = ops.arange(steps - 1, -1, -1, dtype="int32")  # target (last) -> 0
            pos = self._position_embedding(ids)
            parts.append(ops.broadcast_to(pos[None], (batch, steps, pos.shape[-1])))
        if self.use_time:
            if time_intervals is None:
                raise ValueError("`time_intervals` is required when use_time=True.")
            dt = ops.convert_to_tensor(time_intervals)
            dt = ops.clip(dt, ops.cast(0, dt.dtype), ops.cast(self.time_clip, dt.dtype))
            dt = ops.cast(ops.floor(dt) if keras.backend.is_float_dtype(dt.dtype) else dt, "int32")
            parts.append(self._time_embedding(dt))
        parts = [ops.cast(p, self.compute_dtype) for p in parts]
        if self.combine == "concat":
            return ops.concatenate(parts, axis=-1)
        return sum(parts[1:], parts[0])

    def _attention_mask(self, batch: Any, steps: Any, padding_mask: Any) -> Any:
        idx = ops.arange(steps)
        diagonal = ops.equal(idx[:, None], idx[None, :])[None]  # [1, T, T]
        mask = ops.greater_equal(idx[:, None], idx[None, :])[None] if self.causal else None
        if padding_mask is not None:
            keys = ops.cast(padding_mask, "bool")[:, None, :]  # [B, 1, T]
            mask = keys if mask is None else ops.logical_and(mask, keys)
        if mask is None:
            return None
        return ops.broadcast_to(ops.logical_or(mask, diagonal), (batch, steps, steps))

    def call(
        self,
        inputs,
        time_intervals=None,
        padding_mask=None,
        training=None,
        return_attention_scores=False,
    ):
        x = self._embed(ops.cast(inputs, self.compute_dtype), time_intervals)
        batch, steps, width = ops.shape(x)[0], ops.shape(x)[1], x.shape[-1]
        mask = self._attention_mask(batch, steps, padding_mask)
        scores = None
        for block in self._blocks:
            attended = block["attention"](
                x,
                attention_mask=mask,
                training=training,
                return_attention_scores=return_attention_scores,
            )
            if return_attention_scores:
                attended, scores = attended
            # Position-wise parts run on [B*T, D] rows: plain 2-D matmuls.
            rows = ops.reshape(x, (-1, width))
            rows = rows + block["dropout"](ops.reshape(attended, (-1, width)), training=training)
            if self.layer_norm:  # eq. 7
                rows = block["attention_norm"](rows)
            hidden = ops.leaky_relu(block["ffn_inner"](rows), negative_slope=self.leaky_relu_alpha)
            rows = rows + block["dropout"](block["ffn_outer"](hidden), training=training)  # eq. 8
            if self.layer_norm:
                rows = block["ffn_norm"](rows)
            x = ops.reshape(rows, (batch, steps, width))
        return (x, scores) if return_attention_scores else x

    def compute_output_shape(
        self, inputs_shape, time_intervals_shape=None, padding_mask_shape=None
    ):
        return tuple(inputs_shape[:-1]) + (self._output_dim(inputs_shape[-1]),)

    def compute_output_spec(
        self,
        inputs,
        time_intervals=None,
        padding_mask=None,
        training=None,
        return_attention_scores=False,
    ):
        shape = self.compute_output_shape(tuple(inputs.shape))
        outputs = keras.KerasTensor(shape, dtype=self.compute_dtype)
        if not return_attention_scores:
            return outputs
        scores = (shape[0], self.num_heads, shape[1], shape[1])
        return outputs, keras.KerasTensor(scores, dtype=self.compute_dtype)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({name: getattr(self, name) for name in _CONFIG_KEYS})
        for name in ("kernel_initializer", "embeddings_initializer"):
            config[name] = keras.initializers.serialize(getattr(self, name))
        return config
