"""Re-drawing the embedding tables between epochs (feseq_tf.redraw)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from feseq_tf.config import ModelConfig, TrainConfig
from feseq_tf.layers.embedding import FieldEmbedding
from feseq_tf.models import build_model
from feseq_tf.optimizers import DeduplicatedAdam
from feseq_tf.redraw import RedrawEmbeddings, embedding_tables, redraw_embeddings
from feseq_tf.testing import random_features
from tests.test_initialization import spec_with_equal_tables


def _trained_model(seed: int = 3) -> keras.Model:
    """A small FESeq with the wide term, after two optimiser steps (non-zero Adam slots)."""
    keras.utils.set_random_seed(seed)
    spec = spec_with_equal_tables()
    config = ModelConfig(embedding_dim=4, transformer_heads=2, pooling_hidden=8, mlp_units=[8],
                         embedding_stddev=0.05, embedding_l2=0.0, wide=True)
    model = build_model("feseq", spec, config)
    model.compile(optimizer=DeduplicatedAdam(1e-2), loss="binary_crossentropy")
    x = random_features(spec, 32, seed=1)
    y = np.random.default_rng(0).integers(0, 2, (32, 1)).astype("float32")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    return model


def _values(variables) -> dict[str, np.ndarray]:
    return {v.path: np.array(keras.ops.convert_to_numpy(v)) for v in variables}


def _slots(model: keras.Model, var) -> list[np.ndarray]:
    opt = model.optimizer
    index = opt._get_variable_index(var)
    return [keras.ops.convert_to_numpy(opt._momentums[index]),
            keras.ops.convert_to_numpy(opt._velocities[index])]


def test_redraw_replaces_every_table_and_its_adam_slots_and_keeps_everything_else():
    model = _trained_model()
    tables = embedding_tables(model)
    table_paths = {t.embeddings.path for t in tables}
    # The categorical fields' tables and the wide term's per-id weights (width 1).
    assert len(tables) >= 10 and {t.output_dim for t in tables} == {4, 1}
    before = _values(model.weights)
    assert all(np.abs(s).max() > 0 for t in tables for s in _slots(model, t.embeddings))
    others = [v for v in model.trainable_variables if v.path not in table_paths]
    slots_before = {v.path: _slots(model, v) for v in others}

    assert redraw_embeddings(model, seed=7, epoch=1) == len(tables)

    after = _values(model.weights)
    for path in table_paths:
        assert not np.allclose(after[path], before[path]), path
        # A fresh draw of the table's initializer (normal, stddev 0.05), not a perturbation.
        if after[path].size >= 20:
            assert 0.03 < after[path].std() < 0.07, (path, after[path].std())
    for path, value in before.items():
        if path not in table_paths:
            np.testing.assert_array_equal(after[path], value, err_msg=path)
    for t in tables:
        assert all(np.abs(s).max() == 0 for s in _slots(model, t.embeddings))
    for v in others:
        for new, old in zip(_slots(model, v), slots_before[v.path], strict=True):
            np.testing.assert_array_equal(new, old, err_msg=v.path)
    # Tables of equal shape get different draws.
    drawn = [after[p].tobytes() for p in table_paths]
    assert len(set(drawn)) == len(drawn)


def test_redraw_depends_on_seed_and_epoch_only():
    a, b = _trained_model(seed=3), _trained_model(seed=4)  # different trained weights
    redraw_embeddings(a, seed=7, epoch=2)
    redraw_embeddings(b, seed=7, epoch=2)
    paths = [t.embeddings.path for t in embedding_tables(a)]
    va, vb = _values(a.weights), _values(b.weights)
    for p in paths:
        np.testing.assert_array_equal(va[p], vb[p], err_msg=p)
    redraw_embeddings(b, seed=7, epoch=3)
    redraw_embeddings(a, seed=8, epoch=2)
    v3, v8 = _values(b.weights), _values(a.weights)
    for p in paths:
        assert not np.allclose(v3[p], va[p]) and not np.allclose(v8[p], va[p]), p


def test_callback_skips_the_first_epoch_and_redraws_from_the_second():
    model = _trained_model()
    table = embedding_tables(model)[0].embeddings
    callback = RedrawEmbeddings(seed=7, verbose=False)
    callback.set_model(model)
    before = np.array(keras.ops.convert_to_numpy(table))
    callback.on_epoch_begin(0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(table), before)
    callback.on_epoch_begin(1)
    assert not np.allclose(keras.ops.convert_to_numpy(table), before)


def test_redraw_without_an_optimizer_redraws_the_tables_only():
    keras.utils.set_random_seed(0)
    layer = FieldEmbedding(6, 3, embeddings_initializer=keras.initializers.RandomNormal(stddev=0.05))
    model = keras.Sequential([keras.Input((2,), dtype="int32"), layer])
    before = np.array(keras.ops.convert_to_numpy(layer.embeddings))
    assert redraw_embeddings(model, seed=1, epoch=1) == 1
    assert not np.allclose(keras.ops.convert_to_numpy(layer.embeddings), before)


def test_redraw_embeddings_must_be_a_bool():
    assert TrainConfig().redraw_embeddings is False  # off in the paper presets
    with pytest.raises(ValueError, match="redraw_embeddings must be true or false"):
        TrainConfig(redraw_embeddings="yes")
