"""Re-drawing the embedding tables between epochs (feseq_tf.redraw)."""

from __future__ import annotations

import json

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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


# ---- early stopping with re-drawn embeddings: the first epoch is never the best --------------
def test_selection_warmup_is_one_epoch_only_when_embeddings_are_redrawn():
    from feseq_tf.training import redraws_embeddings, selection_warmup

    assert redraws_embeddings(TrainConfig(redraw_embeddings=True), "feseq")
    assert not redraws_embeddings(TrainConfig(redraw_embeddings=True), "lr")
    assert not redraws_embeddings(TrainConfig(redraw_embeddings=False), "din")

    assert selection_warmup(TrainConfig(redraw_embeddings=True, epochs=5), "feseq") == 1
    assert selection_warmup(TrainConfig(redraw_embeddings=True, epochs=5), "dmr") == 1
    assert selection_warmup(TrainConfig(redraw_embeddings=False, epochs=5), "feseq") == 0
    # One epoch: nothing to choose from but the first; lr is never re-drawn.
    assert selection_warmup(TrainConfig(redraw_embeddings=True, epochs=1), "feseq") == 0
    assert selection_warmup(TrainConfig(redraw_embeddings=True, epochs=5), "lr") == 0


def _validation_with_scripted_aucs(monkeypatch, dataset_dir, scale):
    """Make the validation split's predictions ``(label * scale[k] + noise) / 2`` at the
    k-th validation call (noise uniform in [0, 1), scale in (0, 1)), so the validation AUC
    rises and falls with ``scale``; other splits are predicted by the model as usual."""
    from feseq_tf import training
    from feseq_tf.data import read_columns
    from feseq_tf.schema import DatasetSpec

    label = DatasetSpec.load(dataset_dir).label
    labels = read_columns(dataset_dir, "valid")[label].reshape(-1).astype("float64")
    noise = np.random.default_rng(0).random(labels.shape)
    original, calls = training.predict_split, []

    def scripted(model, dataset_dir_, split, batch_size, spec=None):
        if split != "valid" or len(calls) >= len(scale):
            return original(model, dataset_dir_, split, batch_size, spec)
        calls.append(split)
        return (labels * scale[len(calls) - 1] + noise) / 2

    monkeypatch.setattr(training, "predict_split", scripted)


@pytest.mark.slow
@pytest.mark.parametrize("redraw, best_epoch, epochs_run", [(True, 3, 3), (False, 1, 3)])
def test_early_stopping_never_picks_the_first_epoch_of_a_redrawn_run(
    tiny_trained_run, tmp_path, monkeypatch, redraw, best_epoch, epochs_run
):
    from feseq_tf import train

    # Validation AUC: highest after epoch 1, then down and up again (patience 2).
    _validation_with_scripted_aucs(monkeypatch, tiny_trained_run.dataset_dir, [0.8, 0.2, 0.5])
    overrides = {"model": {"mlp_units": [8], "pooling_hidden": 8, "embedding_dim": 4,
                           "transformer_heads": 2},
                 "train": {"epochs": 3, "batch_size": 512, "patience": 2,
                           "redraw_embeddings": redraw}}
    config = train.resolve_config("synthetic", overrides=overrides)
    metrics = train.run(config, tiny_trained_run.dataset_dir, str(tmp_path / "run"),
                        attention_summaries=False, export=False, verbose=0)
    aucs = [h["val_auc"] for h in metrics["history"]]
    assert aucs[0] > aucs[2] > aucs[1]  # the script took effect
    assert metrics["best_epoch"] == best_epoch and metrics["epochs_run"] == epochs_run
    with open(tmp_path / "run" / "train_state.json") as fh:
        state = json.load(fh)
    assert state["best_epoch"] + 1 == best_epoch
    assert state["best_auc"] == pytest.approx(aucs[best_epoch - 1])


def test_warmup_epochs_are_never_the_best_and_spend_no_patience(tiny_trained_run, tmp_path):
    from feseq_tf.training import ExactValidation

    validation = ExactValidation(tiny_trained_run.dataset_dir, str(tmp_path), 512, patience=2,
                                 write=False, warmup_epochs=2)
    assert [validation._record(e, auc) for e, auc in enumerate([0.9, 0.8, 0.6, 0.7, 0.65])] == [
        False, False, True, True, False]
    assert (validation.best_epoch, validation.best_auc, validation.wait) == (3, 0.7, 1)
    with pytest.raises(ValueError, match="warmup_epochs must be an integer >= 0"):
        ExactValidation(tiny_trained_run.dataset_dir, str(tmp_path), 512, patience=2, warmup_epochs=-1)
