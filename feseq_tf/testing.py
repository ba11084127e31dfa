"""Shared test helpers for feseq_tf layers and models."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Sets the global Keras dtype policy (e.g. `"mixed_bfloat16"`) for a block."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def call_layer(layer: keras.layers.Layer, inputs: Mapping[str, Any], **call_kwargs: Any) -> Any:
    """Calls `layer` with the first entry of `inputs` positional, the others by name."""
    names = list(inputs)
    return layer(inputs[names[0]], **{n: inputs[n] for n in names[1:]}, **call_kwargs)


def xla_call(layer: keras.layers.Layer, inputs: Mapping[str, Any], **call_kwargs: Any) -> Any:
    """Calls `layer` inside `tf.function(jit_compile=True)` (XLA)."""
    tensors = {name: tf.convert_to_tensor(value) for name, value in inputs.items()}

    @tf.function(jit_compile=True)
    def compiled(values: dict) -> Any:
        return call_layer(layer, values, **call_kwargs)

    return compiled(tensors)


def _normalise(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_normalise(v) for v in value]
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    return value


def _shapes(outputs: Any) -> list[tuple]:
    return [tuple(x.shape) for x in keras.tree.flatten(outputs)]


def run_layer_test(
    layer_cls: type,
    init_kwargs: Mapping[str, Any],
    inputs: Mapping[str, np.ndarray],
    call_kwargs: Mapping[str, Any] | None = None,
    expected_output_shape: Any = None,
    atol: float = 1e-6,
) -> keras.layers.Layer:
    """Checks a layer's config round trip, output shape and `.keras` save/load.

    1. `get_config` holds every constructor argument (initializers serialized)
       and `from_config(get_config())` gives the same config.
    2. An eager call gives `expected_output_shape` (a shape, or a structure of
       shapes), and a symbolic call gives the same shapes with batch `None`.
    3. A functional model with one named `keras.Input` per entry of `inputs`
       (the first passed positionally, the rest by name) saved to `.keras` and
       loaded back predicts the same values.

    Args:
        layer_cls: The layer class.
        init_kwargs: Constructor arguments.
        inputs: Call inputs by argument name, batch first, in call order.
        call_kwargs: Non-tensor call arguments (e.g. `return_attention_scores`).
        expected_output_shape: Expected eager output shape(s); None skips.
        atol: Tolerance of the save/load comparison.

    Returns:
        The layer of the eager call (built).
    """
    call_kwargs = dict(call_kwargs or {})
    layer = layer_cls(**init_kwargs)
    config = layer.get_config()
    for name, value in init_kwargs.items():
        assert name in config, f"get_config() lacks constructor argument {name!r}"
        if name.endswith("initializer"):
            value = keras.initializers.serialize(keras.initializers.get(value))
        assert _normalise(config[name]) == _normalise(value), (name, config[name], value)
    assert layer_cls.from_config(config).get_config() == config

    outputs = call_layer(layer, inputs, **call_kwargs)
    eager_shapes = _shapes(outputs)
    if expected_output_shape is not None:
        expected = expected_output_shape
        if all(isinstance(d, int) or d is None for d in expected):
            expected = [expected]
        assert eager_shapes == [tuple(s) for s in expected], (eager_shapes, expected)

    symbolic = {
        name: keras.Input(shape=np.shape(value)[1:], dtype=str(np.asarray(value).dtype), name=name)
        for name, value in inputs.items()
    }
    model_outputs = call_layer(layer_cls.from_config(config), symbolic, **call_kwargs)
    symbolic_shapes = _shapes(model_outputs)
    assert symbolic_shapes == [(None,) + s[1:] for s in eager_shapes], (
        symbolic_shapes,
        eager_shapes,
    )

    model = keras.Model(symbolic, model_outputs)
    before = keras.tree.flatten(model(dict(inputs), training=False))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
    after = keras.tree.flatten(loaded(dict(inputs), training=False))
    for x, y in zip(before, after, strict=True):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(x), keras.ops.convert_to_numpy(y), atol=atol
        )
    original = [lay for lay in model.layers if isinstance(lay, layer_cls)]
    restored = [lay for lay in loaded.layers if isinstance(lay, layer_cls)]
    assert len(restored) == 1 and restored[0].get_config() == original[0].get_config()
    return layer


def random_features(spec: Any, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A batch of random model inputs of a dataset spec's shape (benchmarks, tests).

    History lengths are uniform over 0..L, histories left-padded, history times
    increasing towards the target's time.
    """
    rng = np.random.default_rng(seed)
    L = spec.max_len
    hist_len = rng.integers(0, L + 1, batch_size)
    real = np.arange(L)[None, :] >= (L - hist_len)[:, None]
    x: dict[str, np.ndarray] = {}
    for f in spec.fields:
        if f.is_categorical:
            x[f.name] = rng.integers(1, f.vocab_size, batch_size).astype("int32")
            if f.sequential:
                hist = rng.integers(1, f.vocab_size, (batch_size, L))
                x[f.hist_name] = np.where(real, hist, 0).astype("int32")
        else:
            x[f.name] = rng.random(batch_size).astype("float32")
            if f.sequential:
                x[f.hist_name] = np.where(real, rng.random((batch_size, L)), 0).astype("float32")
    times = rng.integers(10_000, 20_000, batch_size)
    gaps = np.cumsum(rng.integers(1, 500, (batch_size, L))[:, ::-1], axis=1)[:, ::-1]
    x[spec.time_field] = times.astype("int64")
    x[spec.time_hist_name] = np.where(real, times[:, None] - gaps, 0).astype("int64")
    x["hist_len"] = hist_len.astype("int32")
    return x
