import keras
import numpy as np
import pytest
from keras import ops

from feseq_tf import testing
from feseq_tf.layers import TimeAwareTransformer

B, T, D, DT = 2, 5, 6, 2


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, T, D)).astype("float32")
    dt = np.array([[40.0, 30.0, 7.5, 2.0, 0.0]] * B, "float32")
    mask = np.array([[False, False, True, True, True], [True] * T])
    return x, dt, mask


def _layer(**kwargs):
    defaults = {"num_heads": 2, "max_positions": 8, "time_embedding_dim": DT}
    return TimeAwareTransformer(**{**defaults, **kwargs})


def _np(x):
    return ops.convert_to_numpy(ops.cast(x, "float32"))


def test_causal_mask_blocks_future_positions():
    layer = _layer()
    x, dt, mask = _data()
    changed = x.copy()
    changed[:, 3:] += 5.0
    out, new = layer(x, dt, padding_mask=mask), layer(changed, dt, padding_mask=mask)
    np.testing.assert_allclose(out[:, :3], new[:, :3], rtol=1e-5, atol=1e-6)
    assert not np.allclose(out[:, 3:], new[:, 3:])


def test_without_causal_mask_future_positions_matter():
    layer = _layer(causal=False)
    x, dt, mask = _data()
    changed = x.copy()
    changed[:, -1] += 5.0
    out, new = layer(x, dt, padding_mask=mask), layer(changed, dt, padding_mask=mask)
    assert not np.allclose(out[1, 0], new[1, 0])


@pytest.mark.parametrize("causal", [True, False])
def test_padded_positions_do_not_change_real_positions(causal):
    layer = _layer(causal=causal)
    x, dt, mask = _data()
    x2, dt2 = x.copy(), dt.copy()
    x2[0, :2] = 100.0
    dt2[0, :2] = 1.0
    out, new = layer(x, dt, padding_mask=mask), layer(x2, dt2, padding_mask=mask)
    np.testing.assert_allclose(out[0, 2:], new[0, 2:], rtol=1e-5, atol=1e-6)


def test_fully_padded_row_is_finite():
    layer = _layer(dropout=0.1, attention_dropout=0.1)
    x, dt, _ = _data()
    out, scores = layer(x, dt, padding_mask=np.zeros((B, T), bool), return_attention_scores=True)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(scores, np.broadcast_to(np.eye(T), (B, 2, T, T)), atol=1e-6)


def test_causal_scores_are_lower_triangular():
    _, scores = _layer()(*_data()[:2], return_attention_scores=True)
    assert scores.shape == (B, 2, T, T)
    np.testing.assert_allclose(np.triu(scores, k=1), 0.0)
    np.testing.assert_allclose(np.sum(scores, -1), 1.0, rtol=1e-5)


def _identity_layer(**kwargs):
    """Zero kernels and biases: every block adds 0, so the output is eq. 4's input."""
    return _layer(kernel_initializer="zeros", **kwargs)


def test_position_ids_run_in_reverse_time_order():
    layer = _identity_layer(use_time=False)
    x, dt, _ = _data()
    layer(x, dt)
    table = np.repeat(np.arange(8, dtype="float32")[:, None], DT, axis=1)  # row i = (i, i)
    layer._position_embedding.embeddings.assign(table)
    out = layer(x, dt)
    np.testing.assert_allclose(out[..., :D], x, atol=1e-6)
    np.testing.assert_allclose(out[0, :, D], [4, 3, 2, 1, 0])  # target (last) -> id 0


def test_time_intervals_are_floored_and_clipped():
    layer = _identity_layer(use_position=False, time_clip=10)
    x, _, _ = _data()
    layer(x, np.zeros((B, T)))
    layer._time_embedding.embeddings.assign(np.repeat(np.arange(11.0)[:, None], DT, axis=1))
    dt = np.array([[-3.0, 0.0, 3.7, 10.0, 5000.0]] * B, "float32")
    np.testing.assert_allclose(layer(x, dt)[0, :, D], [0, 0, 3, 10, 10])
    np.testing.assert_allclose(layer(x, dt.astype("int64"))[0, :, D], [0, 0, 3, 10, 10])


def test_intervals_beyond_clip_equal_clip():
    layer = _layer(time_clip=20)
    x, dt, mask = _data()
    beyond, at_clip = dt.copy(), dt.copy()
    beyond[:, 0], at_clip[:, 0] = 1e6, 20.0
    np.testing.assert_allclose(
        layer(x, beyond, padding_mask=mask), layer(x, at_clip, padding_mask=mask), rtol=1e-6
    )


def test_float_intervals_are_not_rounded_under_mixed_precision():
    with testing.dtype_policy("mixed_bfloat16"):
        layer = _identity_layer(use_position=False)
        x = np.zeros((1, 2, D), "float32")
        layer(x, np.zeros((1, 2)))
        rows = np.zeros((4001, DT), "float32")
        rows[3999], rows[4000] = 1.0, 2.0
        layer._time_embedding.embeddings.assign(rows)
        out = layer(x, np.array([[3999.0, 4000.0]], "float32"))  # 3999 is 4000 in bf16
    assert ops.dtype(out) == "bfloat16"
    np.testing.assert_allclose(_np(out)[0, :, D], [1.0, 2.0])


def test_add_combine_keeps_width_and_sums_embeddings():
    layer = _identity_layer(combine="add", time_embedding_dim=None, max_positions=T)
    x, dt, _ = _data()
    out = layer(x, dt)
    assert out.shape == (B, T, D)
    pos = layer._position_embedding.embeddings.numpy()[::-1][None]
    time = layer._time_embedding.embeddings.numpy()[dt.astype(int)]
    np.testing.assert_allclose(out, x + pos + time, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("return_scores", [False, True])
def test_layer_contract(return_scores):
    x, dt, mask = _data()
    out_shape = (B, T, D + 2 * DT)
    testing.run_layer_test(
        TimeAwareTransformer,
        {
            "num_heads": 2,
            "max_positions": 8,
            "time_clip": 50,
            "time_embedding_dim": DT,
            "combine": "concat",
            "use_position": True,
            "use_time": True,
            "causal": True,
            "num_layers": 2,
            "ffn_units": 12,
            "dropout": 0.1,
            "layer_norm": True,
            "leaky_relu_alpha": 0.2,
            "attention_dropout": 0.1,
            "kernel_initializer": "he_normal",
            "embeddings_initializer": "normal",
            "seed": 1,
        },
        {"inputs": x, "time_intervals": dt, "padding_mask": mask},
        call_kwargs={"return_attention_scores": return_scores},
        expected_output_shape=(out_shape, (B, 2, T, T)) if return_scores else out_shape,
    )


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_outputs_finite(policy):
    with testing.dtype_policy(policy):
        layer = _layer(layer_norm=True)
        x, dt, mask = _data()
        mask[1] = False
        out = layer(x, dt, padding_mask=mask, training=True)
    assert ops.dtype(out) == policy.split("_")[1]
    assert np.isfinite(_np(out)).all()


def test_xla_matches_eager():
    layer = _layer()
    x, dt, mask = _data()
    inputs = {"inputs": x, "time_intervals": dt, "padding_mask": mask}
    np.testing.assert_allclose(
        testing.xla_call(layer, inputs), layer(x, dt, padding_mask=mask), rtol=1e-4, atol=1e-5
    )


def test_same_seed_same_output():
    def run():
        keras.utils.set_random_seed(3)
        return _layer(dropout=0.2, seed=5)(*_data()[:2], training=True)

    np.testing.assert_array_equal(run(), run())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_heads": 0}, "num_heads=0"),
        ({"combine": "sum"}, "combine='sum'"),
        ({"max_positions": None}, "max_positions=None"),
        ({"time_clip": -1}, "time_clip=-1"),
        ({"time_embedding_dim": None}, "time_embedding_dim=None"),
        ({"dropout": 1.5}, "dropout=1.5"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _layer(**kwargs)


def test_rejects_heads_not_dividing_width():
    with pytest.raises(ValueError, match="num_heads=3 must divide the model width 10"):
        _layer(num_heads=3)(*_data()[:2])


def test_rejects_sequence_longer_than_max_positions():
    with pytest.raises(ValueError, match="exceeds max_positions=4"):
        _layer(max_positions=4)(*_data()[:2])
