"""DIN's local activation unit, shared by the DIN pooling and the DIN baseline layer."""

from __future__ import annotations

import io
import os
import zipfile

import h5py
import keras
import numpy as np
import pytest

from feseq_tf import testing
from feseq_tf.layers import BilinearAttentionPooling, DINActivationUnit, DINAttention


def _data(seed=0, b=2, t=4, d=3):
    rng = np.random.default_rng(seed)
    query = rng.normal(size=(b, d)).astype("float32")
    keys = rng.normal(size=(b, t, d)).astype("float32")
    return query, keys


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_unit_matches_hand_computation_with_ones_kernels():
    # One hidden unit, ones kernels, zero biases, Dice at its initial state (moving
    # mean 0, variance 1, alpha 0): h = q + k + (q - k) + q k = 2q + qk, a = h sigmoid(h).
    unit = DINActivationUnit((1,), kernel_initializer="ones")
    keys = np.array([[[1.0], [2.0]]], "float32")
    logits = unit(np.ones((1, 1), "float32"), keys)
    h = np.array([[3.0, 4.0]])
    np.testing.assert_allclose(logits, h * _sigmoid(h), rtol=1e-5)


def test_unit_config_round_trip_and_save_load():
    query, keys = _data()
    testing.run_layer_test(
        DINActivationUnit,
        {
            "hidden_units": [4, 2],
            "kernel_initializer": "ones",
            "seed": 3,
            "sublayer_prefix": "din_",
        },
        {"query": query, "keys": keys},
        expected_output_shape=(2, 4),
    )


def test_unit_rejects_bad_arguments_and_shapes():
    with pytest.raises(ValueError, match="hidden_units"):
        DINActivationUnit(hidden_units=(4, 0))
    with pytest.raises(ValueError, match="sublayer_prefix"):
        DINActivationUnit(sublayer_prefix=3)
    with pytest.raises(ValueError, match=r"query_shape=\(2, 5\), keys_shape=\(2, 4, 3\)"):
        DINActivationUnit((4,)).build((2, 5), (2, 4, 3))


def test_din_pooling_scores_are_the_softmax_of_its_unit_on_the_projections():
    query, keys = _data()
    mask = np.array([[False, True, True, True], [True] * 4])
    layer = BilinearAttentionPooling(hidden_units=5, attention="din", din_units=(4,))
    _, weights = layer(query, keys, padding_mask=mask, return_attention_scores=True)
    q = layer._query_act(layer._query(query))
    k = layer._key_act(layer._key(keys))
    logits = np.where(mask, np.asarray(layer._din_unit(q, k)), -np.inf)
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(weights, expected / expected.sum(-1, keepdims=True), rtol=1e-5)


def test_din_attention_weights_keys_by_its_unit_without_normalising():
    query, keys = _data()
    mask = np.array([[False, True, True, True], [True] * 4])
    layer = DINAttention((4, 2))
    pooled, weights = layer(query, keys, padding_mask=mask, return_attention_scores=True)
    expected = np.asarray(layer._unit(query, keys)) * mask
    np.testing.assert_allclose(weights, expected, rtol=1e-6)
    np.testing.assert_allclose(pooled, np.einsum("bl,bld->bd", expected, keys), rtol=1e-5)


def _saved_weight_paths(layer, inputs, tmp_path, name):
    """The weight datasets of `layer` in a `.keras` file of a model around it."""
    tensors = {k: keras.Input(v.shape[1:], name=k) for k, v in inputs.items()}
    model = keras.Model(tensors, testing.call_layer(layer, tensors))
    path = os.path.join(tmp_path, f"{name}.keras")
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        weights = h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r")
        found = []
        weights.visititems(
            lambda p, obj: found.append(p) if isinstance(obj, h5py.Dataset) else None
        )
    prefix = f"layers/{name}/"
    return sorted(p[len(prefix) :] for p in found if p.startswith(prefix))


def _mlp_paths(prefix, n_hidden, score):
    paths = []
    for i in range(n_hidden):
        suffix = f"_{i}" if i else ""
        paths += [f"{prefix}dense{suffix}/vars/{j}" for j in (0, 1)]
        paths += [f"{prefix}dice{suffix}/vars/0"]
        paths += [f"{prefix}dice{suffix}/_norm/vars/{j}" for j in (0, 1)]
    return paths + [f"{score}/vars/{j}" for j in (0, 1)]


def test_din_weights_keep_the_file_layout_of_saved_models(tmp_path):
    # `.keras` files address weights by attribute path; the unit's weights stay
    # where files written before it existed have them, so those files still load.
    query, keys = _data()
    pooling = BilinearAttentionPooling(hidden_units=5, attention="din", din_units=(4, 2))
    paths = _saved_weight_paths(
        pooling, {"query": query, "keys": keys}, tmp_path, "bilinear_attention_pooling"
    )
    din = [p for p in paths if p.startswith("_din")]
    assert din == sorted(_mlp_paths("_din/", 2, "_din/dense_2"))
    din_attention = DINAttention((4, 2))
    paths = _saved_weight_paths(
        din_attention, {"query": query, "keys": keys}, tmp_path, "din_attention"
    )
    assert paths == sorted(_mlp_paths("_mlp/", 2, "_score"))
