import math

import keras
import numpy as np
import pytest
from keras import ops

from feseq_tf import testing
from feseq_tf.layers import BilinearAttentionPooling, Dice, MeanPooling, TargetPooling

B, T, DQ, DK, H = 2, 4, 3, 5, 8


def _data(seed=0):
    rng = np.random.default_rng(seed)
    query = rng.normal(size=(B, DQ)).astype("float32")
    keys = rng.normal(size=(B, T, DK)).astype("float32")
    mask = np.array([[False, True, True, True], [True] * T])
    return query, keys, mask


def _np(x):
    return ops.convert_to_numpy(ops.cast(x, "float32"))


@pytest.mark.parametrize("attention", ["bilinear", "dot"])
def test_one_dimensional_example_matches_hand_computation(attention):
    # d_h = 1, all-ones kernels: q = 1, K = V = keys = (1, 2); weights =
    # softmax(1, 2); u = PReLU(sum_t w_t V_t) with PReLU the identity on positives.
    layer = BilinearAttentionPooling(hidden_units=1, attention=attention, kernel_initializer="ones")
    pooled, weights = layer(
        np.ones((1, 1), "float32"),
        np.array([[[1.0], [2.0]]], "float32"),
        return_attention_scores=True,
    )
    w1 = 1.0 / (1.0 + math.e)
    np.testing.assert_allclose(weights, [[w1, 1 - w1]], rtol=1e-5)
    np.testing.assert_allclose(pooled, [[w1 + 2 * (1 - w1)]], rtol=1e-5)


@pytest.mark.parametrize("attention", ["bilinear", "dot", "din"])
def test_weights_sum_to_one_over_real_positions_and_zero_on_padding(attention):
    query, keys, mask = _data()
    _, weights = BilinearAttentionPooling(hidden_units=H, attention=attention)(
        query, keys, padding_mask=mask, return_attention_scores=True
    )
    np.testing.assert_allclose(np.sum(weights, -1), [1.0, 1.0], rtol=1e-5)
    assert weights[0, 0] == 0.0 and np.all(weights[:, 1:] > 0)


def test_padded_keys_do_not_change_output():
    layer = BilinearAttentionPooling(hidden_units=H)
    query, keys, mask = _data()
    changed = keys.copy()
    changed[0, 0] = 50.0
    np.testing.assert_allclose(
        layer(query, keys, padding_mask=mask), layer(query, changed, padding_mask=mask), rtol=1e-6
    )


def test_fully_padded_row_is_finite():
    query, keys, _ = _data()
    pooled, weights = BilinearAttentionPooling(hidden_units=H)(
        query, keys, padding_mask=np.zeros((B, T), bool), return_attention_scores=True
    )
    assert np.isfinite(pooled).all()
    np.testing.assert_array_equal(weights, 0.0)


def _twin(layer, **kwargs):
    """A layer of another variant holding `layer`'s shared weights."""
    query, keys, mask = _data()
    twin = BilinearAttentionPooling(hidden_units=H, **kwargs)
    twin(query, keys)
    source = {w.path.split("/", 1)[1]: w for w in layer.weights}
    for w in twin.weights:
        w.assign(source[w.path.split("/", 1)[1]])
    return twin


def test_bilinear_starts_as_identity_so_scores_equal_dot_scores():
    query, keys, mask = _data()
    bilinear = BilinearAttentionPooling(hidden_units=H)
    out, weights = bilinear(query, keys, padding_mask=mask, return_attention_scores=True)
    np.testing.assert_array_equal(bilinear._bilinear.kernel, np.eye(H))
    dot = _twin(bilinear, attention="dot")
    dot_out, dot_weights = dot(query, keys, padding_mask=mask, return_attention_scores=True)
    np.testing.assert_allclose(weights, dot_weights, rtol=1e-6)
    np.testing.assert_allclose(out, dot_out, rtol=1e-6)


def test_use_scale_divides_scores_by_sqrt_hidden_units():
    query, keys, _ = _data()
    scaled = BilinearAttentionPooling(hidden_units=H)
    _, w_scaled = scaled(query, keys, return_attention_scores=True)
    _, w_raw = _twin(scaled, use_scale=False)(query, keys, return_attention_scores=True)
    # log-odds against position 0 are the score differences, so they scale too.
    np.testing.assert_allclose(
        np.log(w_scaled[:, 1:] / w_scaled[:, :1]),
        np.log(w_raw[:, 1:] / w_raw[:, :1]) / math.sqrt(H),
        rtol=1e-4,
        atol=1e-5,
    )


def test_dice_inference_uses_moving_statistics():
    # Initial moving mean 0 and variance 1: p(x) = sigmoid(x) (eps = 1e-8).
    layer = Dice()
    x = np.array([[1.0, -2.0]], "float32")
    sig = 1.0 / (1.0 + np.exp(-x))
    np.testing.assert_allclose(layer(x), sig * x, rtol=1e-5)
    layer.alpha.assign([0.5, 0.5])
    np.testing.assert_allclose(layer(x), sig * x + (1 - sig) * 0.5 * x, rtol=1e-5)


def test_dice_training_standardises_with_batch_statistics():
    # Batch (1, 3): mean 2, variance 1 -> normalised (-1, 1).
    out = Dice()(np.array([[1.0], [3.0]], "float32"), training=True)
    p = 1.0 / (1.0 + np.exp(-np.array([[-1.0], [1.0]])))
    np.testing.assert_allclose(out, p * [[1.0], [3.0]], rtol=1e-5)


def test_dice_layer_contract():
    testing.run_layer_test(
        Dice,
        {"epsilon": 1e-6, "momentum": 0.9, "alpha_initializer": "ones"},
        {"inputs": np.random.rand(3, 4).astype("float32")},
        expected_output_shape=(3, 4),
    )


def test_mean_pooling_ignores_padding():
    query, keys, mask = _data()
    pooled, weights = MeanPooling()(query, keys, padding_mask=mask, return_attention_scores=True)
    np.testing.assert_allclose(pooled[0], keys[0, 1:].mean(0), rtol=1e-6)
    np.testing.assert_allclose(pooled[1], keys[1].mean(0), rtol=1e-6)
    np.testing.assert_allclose(weights[0], [0, 1 / 3, 1 / 3, 1 / 3], rtol=1e-6)
    empty = MeanPooling()(None, keys, padding_mask=np.zeros((B, T), bool))
    np.testing.assert_array_equal(empty, 0.0)


def test_target_pooling_picks_last_position():
    query, keys, mask = _data()
    pooled, weights = TargetPooling()(query, keys, padding_mask=mask, return_attention_scores=True)
    np.testing.assert_array_equal(pooled, keys[:, -1])
    np.testing.assert_array_equal(weights, [[0, 0, 0, 1]] * B)


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (
            BilinearAttentionPooling,
            {
                "hidden_units": H,
                "output_units": 6,
                "attention": "bilinear",
                "use_scale": False,
                "dropout": 0.1,
                "din_units": (4,),
                "kernel_initializer": "he_uniform",
                "bilinear_initializer": "orthogonal",
                "seed": 2,
            },
        ),
        (BilinearAttentionPooling, {"hidden_units": H, "attention": "din", "din_units": (6, 4)}),
        (MeanPooling, {}),
        (TargetPooling, {}),
    ],
)
@pytest.mark.parametrize("return_scores", [False, True])
def test_layer_contract(cls, kwargs, return_scores):
    query, keys, mask = _data()
    units = kwargs.get("output_units", DK)
    testing.run_layer_test(
        cls,
        kwargs,
        {"query": query, "keys": keys, "padding_mask": mask},
        call_kwargs={"return_attention_scores": return_scores},
        expected_output_shape=((B, units), (B, T)) if return_scores else (B, units),
    )


@pytest.mark.parametrize("attention", ["bilinear", "din"])
def test_mixed_bfloat16_outputs_finite(attention):
    with testing.dtype_policy("mixed_bfloat16"):
        layer = BilinearAttentionPooling(hidden_units=H, attention=attention, dropout=0.1)
        query, keys, mask = _data()
        pooled, weights = layer(
            query, keys, padding_mask=mask, training=True, return_attention_scores=True
        )
    assert ops.dtype(pooled) == "bfloat16"
    assert np.isfinite(_np(pooled)).all()
    np.testing.assert_allclose(_np(weights).sum(-1), 1.0, rtol=2e-2)


@pytest.mark.parametrize("attention", ["bilinear", "din"])
def test_xla_matches_eager(attention):
    layer = BilinearAttentionPooling(hidden_units=H, attention=attention)
    query, keys, mask = _data()
    inputs = {"query": query, "keys": keys, "padding_mask": mask}
    np.testing.assert_allclose(
        testing.xla_call(layer, inputs),
        layer(query, keys, padding_mask=mask),
        rtol=1e-4,
        atol=1e-5,
    )


def test_same_seed_same_output():
    def run():
        keras.utils.set_random_seed(11)
        layer = BilinearAttentionPooling(hidden_units=H, dropout=0.3, seed=4)
        return layer(*_data()[:2], training=True)

    np.testing.assert_array_equal(run(), run())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"hidden_units": 0}, "hidden_units=0"),
        ({"output_units": -2}, "output_units=-2"),
        ({"attention": "additive"}, "attention='additive'"),
        ({"dropout": -0.1}, "dropout=-0.1"),
        ({"din_units": (4, 0)}, r"din_units=\(4, 0\)"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BilinearAttentionPooling(**kwargs)


def test_dice_rejects_bad_arguments():
    with pytest.raises(ValueError, match="epsilon=0"):
        Dice(epsilon=0)
    with pytest.raises(ValueError, match="momentum=1.0"):
        Dice(momentum=1.0)


@pytest.mark.parametrize("layer_fn", [MeanPooling, TargetPooling, lambda: Dice()])
def test_simple_layers_compile_with_xla(layer_fn):
    query, keys, mask = _data()
    layer = layer_fn()
    if isinstance(layer, Dice):
        inputs = {"inputs": keys}
    else:
        inputs = {"query": query, "keys": keys, "padding_mask": mask}
    expected = testing.call_layer(layer, inputs)
    np.testing.assert_allclose(testing.xla_call(layer, inputs), expected, rtol=1e-5, atol=1e-6)
