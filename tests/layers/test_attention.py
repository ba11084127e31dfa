import keras
import numpy as np
import pytest

from feseq_tf import testing
from feseq_tf.layers import MaskedSelfAttention, scaled_dot_product_attention


def _x(b=2, t=5, d=8, seed=0):
    return np.random.default_rng(seed).normal(size=(b, t, d)).astype("float32")


def _copy_into_keras_mha(layer: MaskedSelfAttention) -> keras.layers.MultiHeadAttention:
    """A MultiHeadAttention holding the same weights, as the reference."""
    h, d = layer.num_heads, layer._width
    dh = d // h
    mha = keras.layers.MultiHeadAttention(h, dh)
    x = _x(1, 2, d)
    mha(x, x)
    kernel, bias = layer._qkv.get_weights()
    qk, kk, vk = np.split(kernel, 3, axis=1)
    qb, kb, vb = np.split(bias, 3)
    ok, ob = layer._output.get_weights()
    mha.set_weights(
        [
            qk.reshape(d, h, dh), qb.reshape(h, dh),
            kk.reshape(d, h, dh), kb.reshape(h, dh),
            vk.reshape(d, h, dh), vb.reshape(h, dh),
            ok.reshape(h, dh, d), ob,
        ]
    )
    return mha


def test_matches_keras_multi_head_attention_with_same_weights_and_mask():
    layer = MaskedSelfAttention(num_heads=2)
    x = _x()
    mask = np.random.default_rng(1).random((2, 5, 5)) > 0.4
    mask |= np.eye(5, dtype=bool)[None]
    out, scores = layer(x, attention_mask=mask, return_attention_scores=True)
    ref, ref_scores = _copy_into_keras_mha(layer)(x, x, attention_mask=mask, return_attention_scores=True)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-6)


def test_masked_keys_get_zero_weight_and_do_not_change_outputs():
    layer = MaskedSelfAttention(num_heads=2)
    x = _x()
    mask = np.ones((2, 5, 5), bool)
    mask[:, :, 3] = False
    out, scores = layer(x, attention_mask=mask, return_attention_scores=True)
    assert np.all(np.asarray(scores)[..., 3] == 0)
    y = x.copy()
    y[:, 3] += 10.0
    out2 = layer(y, attention_mask=mask)
    keep = [0, 1, 2, 4]
    np.testing.assert_allclose(np.asarray(out)[:, keep], np.asarray(out2)[:, keep], rtol=1e-5, atol=1e-5)


def test_config_round_trip_and_keras_save_load():
    testing.run_layer_test(
        MaskedSelfAttention,
        {"num_heads": 2, "dropout": 0.1, "kernel_initializer": "he_normal", "seed": 3},
        {"inputs": _x()},
        call_kwargs={"return_attention_scores": True},
        expected_output_shape=[(2, 5, 8), (2, 2, 5, 5)],
    )


def test_runs_under_xla_and_bfloat16():
    x = _x()
    out = testing.xla_call(MaskedSelfAttention(num_heads=4), {"inputs": x})
    assert out.shape == (2, 5, 8)
    with testing.dtype_policy("mixed_bfloat16"):
        out = MaskedSelfAttention(num_heads=4)(x)
    assert np.all(np.isfinite(np.asarray(out, dtype="float32")))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="num_heads"):
        MaskedSelfAttention(num_heads=0)
    with pytest.raises(ValueError, match="dropout"):
        MaskedSelfAttention(num_heads=2, dropout=1.5)
    with pytest.raises(ValueError, match="must divide"):
        MaskedSelfAttention(num_heads=3)(_x())


def _core(query, key, value, mask=None):
    return scaled_dot_product_attention(
        query, key, value, keras.layers.Softmax(dtype="float32"), keras.layers.Dropout(0.0), mask
    )


def test_core_matches_hand_computed_softmax_of_scaled_scores():
    # d = 4, q = k_0 = 1 and k_1 = 0: logits (4 / 2, 0) = (2, 0).
    query = np.ones((1, 1, 4), "float32")
    key = np.array([[[1.0] * 4, [0.0] * 4]], "float32")
    value = np.array([[[1.0], [3.0]]], "float32")
    attended, scores = _core(query, key, value)
    w0 = 1.0 / (1.0 + np.exp(-2.0))
    np.testing.assert_allclose(scores, [[[w0, 1 - w0]]], rtol=1e-6)
    np.testing.assert_allclose(attended, [[[w0 + 3 * (1 - w0)]]], rtol=1e-6)


def test_core_gives_masked_keys_zero_weight():
    x = _x(3, 4, 2)
    mask = np.ones((3, 4, 4), bool)
    mask[:, :, 0] = False
    attended, scores = _core(x, x, x, mask)
    assert np.all(np.asarray(scores)[..., 0] == 0)
    np.testing.assert_allclose(np.sum(scores, -1), 1.0, rtol=1e-6)
    y = x.copy()
    y[:, 0] = 100.0  # a masked key's value and key do not matter to any query
    np.testing.assert_allclose(_core(x, y, y, mask)[0], attended, rtol=1e-5)


def test_core_needs_a_known_depth():
    query = keras.KerasTensor((2, 3, None))
    with pytest.raises(ValueError, match="last axis of `query`"):
        _core(query, query, query)
