"""DeduplicatedAdam: Adam on the dense gradient, whatever the repeats of a sparse one."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from feseq_tf.optimizers import DeduplicatedAdam, deduplicate


def _step(optimizer_cls, ids, scale):
    emb = keras.layers.Embedding(4, 2, embeddings_initializer="zeros")
    emb.build((None,))
    with tf.GradientTape() as tape:
        loss = scale * tf.reduce_sum(emb(tf.constant(ids)) * tf.constant([1.0, -3.0]))
    grads = tape.gradient(loss, emb.trainable_variables)
    assert isinstance(grads[0], tf.IndexedSlices)
    optimizer = optimizer_cls(learning_rate=1e-3)
    for _ in range(3):
        optimizer.apply(grads, emb.trainable_variables)
    return emb.embeddings.numpy()


def test_a_row_looked_up_twice_moves_like_one_lookup_with_the_summed_gradient():
    twice = _step(DeduplicatedAdam, [1, 1, 2], 1.0)
    once = _step(DeduplicatedAdam, [1, 2], 1.0)
    np.testing.assert_allclose(twice, once, rtol=1e-5)  # Adam is scale-invariant per row
    np.testing.assert_allclose(np.abs(twice[1]), [3e-3, 3e-3], rtol=1e-3)  # three steps of lr
    # Keras' own Adam squares the repeats one by one: sqrt(2) times the step for row 1.
    plain = _step(keras.optimizers.Adam, [1, 1, 2], 1.0)
    np.testing.assert_allclose(np.abs(plain[1]) / np.abs(once[1]), np.sqrt(2), rtol=1e-3)


def test_deduplicate_sums_repeated_indices_and_keeps_the_dense_value():
    slices = tf.IndexedSlices(tf.constant([[1.0], [2.0], [5.0]]), tf.constant([3, 0, 3]),
                              tf.constant([4, 1]))
    out = deduplicate(slices)
    assert out.indices.numpy().tolist() == [0, 3, 0]  # the left-over slice is row 0 with zeros
    np.testing.assert_array_equal(out.values.numpy(), [[2.0], [6.0], [0.0]])
    np.testing.assert_array_equal(tf.convert_to_tensor(out).numpy(),
                                  tf.convert_to_tensor(slices).numpy())
    # Sums of squares over the slices (what Adam's second moment adds) are now right.
    squares = tf.IndexedSlices(tf.square(out.values), out.indices, out.dense_shape)
    np.testing.assert_array_equal(tf.convert_to_tensor(squares).numpy(),
                                  np.square(tf.convert_to_tensor(slices).numpy()))
    dense = tf.ones([2, 2])
    assert deduplicate(dense) is dense


def test_deduplicated_adam_compiles_under_xla():
    emb = keras.layers.Embedding(5, 2, embeddings_initializer="ones")
    model = keras.Sequential([keras.Input((3,), dtype="int32"), emb,
                              keras.layers.Flatten(), keras.layers.Dense(1)])
    model.compile(optimizer=DeduplicatedAdam(1e-3), loss="mse", jit_compile=True)
    before = emb.embeddings.numpy().copy()
    model.fit(np.array([[1, 1, 2]] * 4), np.ones((4, 1)), epochs=1, verbose=0)
    assert model.jit_compile
    moved = np.abs(emb.embeddings.numpy() - before)
    assert moved[[1, 2]].max() > 0 and moved[[0, 3, 4]].max() == 0
    np.testing.assert_allclose(moved[1], 1e-3, rtol=1e-3)  # one Adam step, not sqrt(2) of one


def test_deduplicated_adam_round_trips_through_its_config():
    optimizer = DeduplicatedAdam(learning_rate=0.02, beta_1=0.8)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(restored) is DeduplicatedAdam
    assert restored.get_config() == optimizer.get_config()


@pytest.mark.slow
def test_a_model_saved_with_it_loads_where_the_models_are_imported(tmp_path):
    """``import feseq_tf.models`` (what loading a saved model needs) registers the optimizer."""
    import subprocess
    import sys

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=DeduplicatedAdam(1e-3), loss="mse")
    model.fit(np.ones((4, 2)), np.ones((4, 1)), verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    code = (
        "import keras, feseq_tf.models; "
        f"m = keras.models.load_model({path!r}); print(type(m.optimizer).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "DeduplicatedAdam"
