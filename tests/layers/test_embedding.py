import keras
import numpy as np
import pytest
from keras import ops

from feseq_tf import testing
from feseq_tf.layers import FieldEmbedding, NumericEmbedding


def test_numeric_embedding_multiplies_value_by_learned_vector():
    layer = NumericEmbedding(3)
    layer.build((None, 2))
    layer.embeddings.assign([1.0, 2.0, 3.0])
    out = layer(np.array([[2.0, -1.0]], "float32"))
    np.testing.assert_allclose(out, [[[2.0, 4.0, 6.0], [-1.0, -2.0, -3.0]]])


def test_numeric_embedding_layer_contract():
    testing.run_layer_test(
        NumericEmbedding,
        {"embedding_dim": 4, "embeddings_initializer": "ones"},
        {"inputs": np.random.rand(2, 3).astype("float32")},
        expected_output_shape=(2, 3, 4),
    )


def test_numeric_embedding_rejects_bad_dim():
    with pytest.raises(ValueError, match="embedding_dim=0"):
        NumericEmbedding(0)


def _penalised_model(l2: float) -> keras.Model:
    """ids [B, 3] -> FieldEmbedding (ones) -> zero Dense; a numeric field beside it."""
    ids = keras.Input((3,), dtype="int32", name="ids")
    num = keras.Input((1,), dtype="float32", name="num")
    emb = FieldEmbedding(10, 2, l2=l2, embeddings_initializer="ones", name="ids_emb")(ids)
    num_emb = NumericEmbedding(2, embeddings_initializer="ones", l2=l2, name="num_emb")(num)
    flat = keras.layers.Concatenate()(
        [keras.layers.Flatten()(emb), keras.layers.Flatten()(num_emb)]
    )
    out = keras.layers.Dense(1, kernel_initializer="zeros", name="head")(flat)
    return keras.Model({"ids": ids, "num": num}, out)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_l2_counts_each_distinct_used_row_once_and_skips_padding(jit_compile):
    # Batch ids {1, 2, 2, 0, 0, 3}: distinct non-padding rows 1, 2, 3, each ||ones(2)||^2 = 2,
    # so the table adds l2/2 * 6 = 1.5; the numeric field's one row adds l2/2 * 2 = 0.5.
    # Data loss: mse(0, 1) = 1. Learning rate 0 keeps the weights fixed.
    model = _penalised_model(0.5)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse", jit_compile=jit_compile)
    x = {"ids": np.array([[1, 2, 2], [0, 0, 3]]), "num": np.ones((2, 1), "float32")}
    y = np.ones((2, 1), "float32")
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    np.testing.assert_allclose(history.history["loss"][0], 1.0 + 1.5 + 0.5, rtol=1e-6)
    np.testing.assert_allclose(model.evaluate(x, y, verbose=0), 1.0, rtol=1e-6)


def test_l2_gradient_of_a_used_row_is_l2_times_the_row_whatever_its_count():
    layer = FieldEmbedding(5, 2, l2=0.2, embeddings_initializer="ones")
    import tensorflow as tf

    with tf.GradientTape() as tape:
        layer(np.array([[1, 1, 1, 4]]), training=True)
        loss = sum(layer.losses)
    grad = tf.convert_to_tensor(tape.gradient(loss, layer.embeddings)).numpy()
    np.testing.assert_allclose(grad[[1, 4]], 0.2 * np.ones((2, 2)), rtol=1e-6)
    np.testing.assert_allclose(grad[[0, 2, 3]], 0.0)


def test_l2_adds_no_loss_outside_training():
    layer = FieldEmbedding(5, 2, l2=0.2)
    layer(np.array([[1, 2]]), training=False)
    assert not layer.losses


def test_field_embedding_layer_contract():
    testing.run_layer_test(
        FieldEmbedding,
        {"input_dim": 7, "output_dim": 3, "l2": 0.1, "embeddings_initializer": "ones"},
        {"inputs": np.array([[1, 2], [3, 0]], "int32")},
        expected_output_shape=(2, 2, 3),
    )


@pytest.mark.parametrize("l2", [-0.1, "0.1", True])
def test_bad_l2_strength_is_rejected(l2):
    with pytest.raises(ValueError, match="l2="):
        FieldEmbedding(5, 2, l2=l2)
    with pytest.raises(ValueError, match="l2="):
        NumericEmbedding(2, l2=l2)


def test_numeric_embedding_xla_and_mixed_precision():
    x = np.array([[0.5, 2.0]], "float32")
    layer = NumericEmbedding(3)
    np.testing.assert_allclose(testing.xla_call(layer, {"inputs": x}), layer(x), rtol=1e-6)
    with testing.dtype_policy("mixed_bfloat16"):
        out = NumericEmbedding(3)(x)
    assert ops.dtype(out) == "bfloat16"
