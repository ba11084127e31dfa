import math

import keras
import numpy as np
import pytest

from feseq_tf import testing
from feseq_tf.layers import AutoIntLayer


def _inputs(*shape):
    return np.random.default_rng(0).normal(size=shape).astype("float32")


def test_two_field_output_matches_hand_computation():
    # d = 2, one head, all-ones projections: q = k = v = (s, s) with s the sum of
    # the field's embedding, so the logit of fields (i, j) is 2 s_i s_j / sqrt(2).
    layer = AutoIntLayer(kernel_initializer="ones")
    e = np.array([[[1.0, 0.0], [0.0, -1.0]]], "float32")  # s = (1, -1)
    out, scores = layer(e, return_attention_scores=True)
    w = 1.0 / (1.0 + math.exp(-2.0 * math.sqrt(2.0)))  # softmax([r, -r])[0], r = sqrt 2
    np.testing.assert_allclose(scores, [[[[w, 1 - w], [1 - w, w]]]], rtol=1e-5)
    a = 2 * w - 1  # attended value of field 0; field 1 gets -a
    expected = np.maximum([[[1 + a, a], [-a, -1 - a]]], 0.0)  # ReLU(attended + E)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_attention_rows_sum_to_one():
    layer = AutoIntLayer(num_heads=2)
    _, scores = layer(_inputs(2, 3, 5, 4), return_attention_scores=True)
    assert scores.shape == (2, 3, 2, 5, 5)
    np.testing.assert_allclose(np.sum(scores, axis=-1), np.ones((2, 3, 2, 5)), rtol=1e-5)


def test_parameters_shared_across_positions():
    layer = AutoIntLayer(num_heads=2)
    fields = _inputs(1, 1, 4, 6)
    out = layer(np.concatenate([fields, fields, _inputs(1, 1, 4, 6) + 1.0], axis=1))
    np.testing.assert_allclose(out[:, 0], out[:, 1], rtol=1e-6)
    np.testing.assert_allclose(out[:, :1], layer(fields), rtol=1e-5)
    assert len(layer.weights) == 3  # query, key, value: independent of positions


def test_residual_projection_only_when_width_changes():
    same = AutoIntLayer(num_heads=2)
    same(_inputs(2, 4, 6))
    assert [w.path.split("/")[-1] for w in same.weights] == [
        "query_kernel",
        "key_kernel",
        "value_kernel",
    ]
    wider = AutoIntLayer(num_heads=2, head_dim=4)
    assert wider(_inputs(2, 4, 6)).shape == (2, 4, 8)
    assert "residual" in [w.path.split("/")[-2] for w in wider.weights]


def test_without_residual_output_is_relu_of_attention():
    layer = AutoIntLayer(use_residual=False, kernel_initializer="ones")
    out = layer(np.array([[[1.0, 0.0], [0.0, -1.0]]], "float32"))
    w = 1.0 / (1.0 + math.exp(-2.0 * math.sqrt(2.0)))
    np.testing.assert_allclose(out, [[[2 * w - 1] * 2, [0.0, 0.0]]], rtol=1e-5)


@pytest.mark.parametrize("return_scores", [False, True])
def test_layer_contract(return_scores):
    shapes = (2, 3, 5, 8) if not return_scores else ((2, 3, 5, 8), (2, 3, 2, 5, 5))
    testing.run_layer_test(
        AutoIntLayer,
        {
            "num_heads": 2,
            "head_dim": 4,
            "dropout": 0.1,
            "use_residual": True,
            "kernel_initializer": "glorot_normal",
            "seed": 3,
        },
        {"inputs": _inputs(2, 3, 5, 6)},
        call_kwargs={"return_attention_scores": return_scores},
        expected_output_shape=shapes,
    )


def test_dropout_acts_only_in_training():
    layer = AutoIntLayer(dropout=0.5, seed=1)
    x = _inputs(4, 6, 8)
    np.testing.assert_allclose(layer(x), layer(x, training=False))
    assert not np.allclose(layer(x), layer(x, training=True))


def test_mixed_bfloat16_outputs_finite():
    with testing.dtype_policy("mixed_bfloat16"):
        layer = AutoIntLayer(num_heads=2)
        out, scores = layer(_inputs(2, 3, 5, 4), return_attention_scores=True)
    assert keras.ops.dtype(out) == "bfloat16" and layer.weights[0].dtype == "float32"
    assert np.isfinite(keras.ops.convert_to_numpy(keras.ops.cast(out, "float32"))).all()


def test_xla_matches_eager():
    layer = AutoIntLayer(num_heads=2)
    x = {"inputs": _inputs(2, 3, 5, 4)}
    np.testing.assert_allclose(testing.xla_call(layer, x), layer(x["inputs"]), rtol=1e-5, atol=1e-6)


def test_same_seed_same_output():
    def run():
        keras.utils.set_random_seed(7)
        return AutoIntLayer(num_heads=2)(_inputs(2, 4, 6))

    np.testing.assert_array_equal(run(), run())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_heads": 0}, "num_heads=0"),
        ({"head_dim": -1}, "head_dim=-1"),
        ({"dropout": 1.0}, "dropout=1.0"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AutoIntLayer(**kwargs)


def test_rejects_more_heads_than_embedding_size():
    with pytest.raises(ValueError, match="num_heads=4 exceeds the embedding size d=2"):
        AutoIntLayer(num_heads=4)(_inputs(1, 3, 2))
