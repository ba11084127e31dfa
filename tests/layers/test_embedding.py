import keras
import numpy as np
import pytest
from keras import ops

from feseq_tf import testing
from feseq_tf.layers import EmbeddingL2, NumericEmbedding


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
    """ids -> ones-embedding [B, 3, 2] and [B, 1, 2] -> EmbeddingL2 -> zero Dense."""
    ids = keras.Input((3,), dtype="int32", name="ids")
    cat = keras.Input((1,), dtype="int32", name="cat")
    emb = keras.layers.Embedding(10, 2, embeddings_initializer="ones", name="ids_emb")(ids)
    cat_emb = keras.layers.Embedding(5, 2, embeddings_initializer="ones", name="cat_emb")(cat)
    emb, cat_emb = EmbeddingL2(l2, name="l2")([emb, cat_emb])
    flat = keras.layers.Concatenate()(
        [keras.layers.Flatten()(emb), keras.layers.Flatten()(cat_emb)]
    )
    out = keras.layers.Dense(1, kernel_initializer="zeros", name="head")(flat)
    return keras.Model({"ids": ids, "cat": cat}, out)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_embedding_l2_penalty_reaches_training_loss(jit_compile):
    # Per example: 3 rows + 1 row of ones(2) -> sum of squares 8; l2 * 8 = 4.
    # Data loss: mse(0, 1) = 1. Learning rate 0 keeps the weights fixed.
    model = _penalised_model(0.5)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse", jit_compile=jit_compile)
    x = {"ids": np.array([[1, 2, 3], [4, 5, 6]]), "cat": np.array([[1], [2]])}
    y = np.ones((2, 1), "float32")
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    np.testing.assert_allclose(history.history["loss"][0], 5.0, rtol=1e-6)
    np.testing.assert_allclose(model.evaluate(x, y, verbose=0), 1.0, rtol=1e-6)


def test_embedding_l2_adds_loss_only_in_training():
    model = _penalised_model(0.5)
    x = {"ids": np.array([[1, 2, 3]]), "cat": np.array([[1]])}
    model(x, training=True)
    assert len(model.losses) == 1
    np.testing.assert_allclose(model.losses[0], 4.0)
    model(x, training=False)
    assert model.losses == []


def test_embedding_l2_returns_inputs_and_masks_unchanged():
    embedding = keras.layers.Embedding(5, 2, mask_zero=True)
    emb = embedding(np.array([[0, 3, 1]]))
    out = EmbeddingL2(0.1)(emb, training=True)
    np.testing.assert_array_equal(out, emb)
    np.testing.assert_array_equal(out._keras_mask, [[False, True, True]])


def test_embedding_l2_penalty_is_float32_under_mixed_precision():
    with testing.dtype_policy("mixed_bfloat16"):
        layer = EmbeddingL2(0.1)
        emb = keras.layers.Embedding(5, 4)(np.array([[1, 2]]))
        assert ops.dtype(emb) == "bfloat16"
        layer(emb, training=True)
    assert ops.dtype(layer.losses[0]) == "float32"


def test_embedding_l2_layer_contract():
    testing.run_layer_test(
        EmbeddingL2,
        {"l2": 0.1},
        {"inputs": np.random.rand(2, 3, 4).astype("float32")},
        expected_output_shape=(2, 3, 4),
    )


@pytest.mark.parametrize("l2", [-0.1, "0.1", True])
def test_embedding_l2_rejects_bad_strength(l2):
    with pytest.raises(ValueError, match="l2="):
        EmbeddingL2(l2)


def test_numeric_embedding_xla_and_mixed_precision():
    x = np.array([[0.5, 2.0]], "float32")
    layer = NumericEmbedding(3)
    np.testing.assert_allclose(testing.xla_call(layer, {"inputs": x}), layer(x), rtol=1e-6)
    with testing.dtype_policy("mixed_bfloat16"):
        out = NumericEmbedding(3)(x)
    assert ops.dtype(out) == "bfloat16"
