"""Baseline models: behaviour on a tiny spec, their layers, and training end to end."""

from __future__ import annotations

import json
import math
import os

import keras
import numpy as np
import pytest
from keras import ops
from keras_rs.layers import DotInteraction

from feseq_tf import testing
from feseq_tf.layers import DINAttention, FactorizationMachine, PositionalAttention
from feseq_tf.models import MODELS, FESeq, LogisticRegression, build_model
from feseq_tf.models.baselines import BASELINES, DCNv2
from tests.test_model_feseq import L, randomize_weights, tiny_batch, tiny_config, tiny_spec

SEQUENTIAL = ("din", "bst", "dmr")
INTERACTION = ("deepfm", "autoint", "dcnv2")
LABELS = np.array([0, 1, 0, 1, 1, 0], "float32")


@pytest.fixture(scope="module")
def spec():
    return tiny_spec()


@pytest.fixture(scope="module")
def models(spec):
    built = {}
    for name in BASELINES:
        keras.utils.set_random_seed(0)
        built[name] = build_model(name, spec, tiny_config())
        randomize_weights(built[name])
    return built


def _np(x):
    return ops.convert_to_numpy(ops.cast(x, "float32"))


# ---- registry ---------------------------------------------------------------------------------
def test_registry_builds_feseq_the_six_baselines_and_logistic_regression(spec):
    assert MODELS == ("feseq", "feseq_paper", "deepfm", "autoint", "dcnv2", "din", "bst", "dmr",
                      "lr")
    assert set(BASELINES) == set(MODELS[2:-1])
    paper = build_model("feseq_paper", spec, tiny_config())
    assert isinstance(paper, FESeq) and paper.name == "feseq_paper"
    assert isinstance(build_model("lr", spec, tiny_config()), LogisticRegression)
    feseq = build_model("feseq", spec, tiny_config())
    assert isinstance(feseq, FESeq) and feseq.name == "feseq"
    assert build_model("din", spec, tiny_config(), name="my_din").name == "my_din"
    with pytest.raises(ValueError, match="model_name must be one of"):
        build_model("xgboost", spec, tiny_config())


def test_dcnv2_structure_is_validated_and_parallel_builds(spec):
    with pytest.raises(ValueError, match="structure must be one of"):
        DCNv2(spec, tiny_config(), structure="serial")
    model = DCNv2(spec, tiny_config(), structure="parallel")
    assert model.predict(tiny_batch(spec), verbose=0).shape == (6, 1)
    assert DCNv2.from_config(model.get_config()).structure == "parallel"


# ---- models -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(BASELINES))
def test_outputs_float32_probabilities_of_shape_batch_by_one(models, spec, name):
    p = models[name].predict(tiny_batch(spec), verbose=0)
    assert p.shape == (6, 1) and p.dtype == np.float32
    assert np.all((p > 0) & (p < 1))


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_padded_history_values_do_not_change_predictions(models, spec, name):
    x = tiny_batch(spec)
    y = {k: v.copy() for k, v in x.items()}
    padded = np.arange(L)[None, :] < (L - x["hist_len"])[:, None]
    rng = np.random.default_rng(5)
    for f in spec.sequential_fields:
        noise = (
            rng.integers(1, f.vocab_size, padded.shape)
            if f.is_categorical
            else rng.random(padded.shape)
        )
        y[f.hist_name] = np.where(padded, noise, y[f.hist_name]).astype(y[f.hist_name].dtype)
    y["times_list"] = np.where(padded, 12345, y["times_list"])
    assert padded.any() and padded[0].all()  # row 0 has an empty history
    model = models[name]
    np.testing.assert_allclose(
        model(x, training=False), model(y, training=False), rtol=1e-6, atol=1e-7
    )


@pytest.mark.parametrize("name", SEQUENTIAL)
def test_sequential_baselines_read_the_real_history(models, spec, name):
    x = tiny_batch(spec)
    y = {k: v.copy() for k, v in x.items()}
    y["item_id_list"][1, -1] = (x["item_id_list"][1, -1] % 9) + 1  # row 1 has a full history
    p, q = _np(models[name](x, training=False)), _np(models[name](y, training=False))
    assert abs(p[1, 0] - q[1, 0]) > 1e-7
    np.testing.assert_allclose(np.delete(p, 1, 0), np.delete(q, 1, 0), rtol=1e-6)


@pytest.mark.parametrize("name", INTERACTION)
def test_feature_interaction_baselines_ignore_the_history(models, spec, name):
    x = tiny_batch(spec)
    y = dict(
        x, item_id_list=np.ones_like(x["item_id_list"]), hist_len=np.full_like(x["hist_len"], L)
    )
    np.testing.assert_allclose(models[name](x, training=False), models[name](y, training=False))


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_config_round_trip_and_keras_save_load_give_identical_outputs(models, spec, name, tmp_path):
    model, x = models[name], tiny_batch(spec)
    clone = type(model).from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(x, training=False), model(x, training=False), rtol=1e-6)
    path = os.path.join(tmp_path, f"{name}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model) and loaded.name == name
    assert loaded.config == model.config and loaded.spec == model.spec
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_bfloat16_policy_computes_in_bfloat16_with_finite_float32_outputs_and_gradients(spec, name):
    import tensorflow as tf

    with testing.dtype_policy("mixed_bfloat16"):
        model = build_model(name, spec, tiny_config())
        with tf.GradientTape() as tape:  # eager: a traced train step costs seconds
            p = model(tiny_batch(spec), training=True)
            loss = keras.losses.binary_crossentropy(LABELS[:, None], p)
        grads = tape.gradient(loss, model.trainable_weights)
    assert model.get_layer("mlp_dense_0").compute_dtype == "bfloat16"
    assert p.dtype == "float32" and np.all(np.isfinite(_np(p)))
    assert all(g is not None and np.all(np.isfinite(_np(g))) for g in grads)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_embedding_l2_is_added_to_training_losses(spec, name):
    model = build_model(name, spec, tiny_config(embedding_l2=1.0))
    randomize_weights(model)
    model(tiny_batch(spec), training=True)
    assert sum(float(v) for v in model.losses) > 0


# ---- layers -------------------------------------------------------------------------------
def test_factorization_machine_equals_the_sum_of_pairwise_dot_products():
    e = np.random.default_rng(0).normal(size=(2, 4, 3)).astype("float32")
    pairs = DotInteraction(self_interaction=False)([e[:, i] for i in range(4)])
    np.testing.assert_allclose(
        FactorizationMachine()(e), np.sum(_np(pairs), -1, keepdims=True), rtol=1e-5
    )
    # All-ones [1, 3, 4]: 3 pairs, each <1, 1> = 4.
    np.testing.assert_allclose(FactorizationMachine()(np.ones((1, 3, 4), "float32")), [[12.0]])


def test_din_attention_weights_are_unnormalised_and_zero_on_padding():
    rng = np.random.default_rng(0)
    query = rng.normal(size=(2, 3)).astype("float32")
    keys = rng.normal(size=(2, 4, 3)).astype("float32")
    mask = np.array([[False, False, True, True], [False] * 4])
    layer = DINAttention((4,), kernel_initializer="ones")
    pooled, weights = layer(query, keys, padding_mask=mask, return_attention_scores=True)
    weights = _np(weights)
    assert np.all(weights[~mask] == 0)
    assert not np.isclose(weights[0].sum(), 1.0)  # no softmax
    np.testing.assert_allclose(pooled[0], weights[0] @ keys[0], rtol=1e-5)
    np.testing.assert_array_equal(pooled[1], np.zeros(3))  # empty history


def test_positional_attention_softmax_over_real_positions_and_logits_zero_on_padding():
    rng = np.random.default_rng(0)
    keys = rng.normal(size=(2, 4, 3)).astype("float32")
    mask = np.array([[False, True, True, True], [False] * 4])
    layer = PositionalAttention(units=5, max_len=4, position_dim=2)
    pooled, logits = layer(keys, padding_mask=mask, query=keys[:, 0], return_logits=True)
    assert np.all(_np(logits)[~mask] == 0) and np.all(_np(logits)[mask] != 0)
    np.testing.assert_array_equal(pooled[1], np.zeros(3))  # empty history
    with pytest.raises(ValueError, match="max_len"):
        PositionalAttention(units=5, max_len=0, position_dim=2)


def test_baseline_layers_config_round_trip_and_save_load():
    rng = np.random.default_rng(0)
    keys = rng.normal(size=(2, 4, 3)).astype("float32")
    mask = np.array([[False, True, True, True], [True] * 4])
    testing.run_layer_test(FactorizationMachine, {}, {"inputs": keys}, expected_output_shape=(2, 1))
    testing.run_layer_test(
        DINAttention,
        {"hidden_units": [4, 2], "kernel_initializer": "ones"},
        {"query": keys[:, 0], "keys": keys, "padding_mask": mask},
        expected_output_shape=(2, 3),
    )
    testing.run_layer_test(
        PositionalAttention,
        {"units": 5, "max_len": 4, "position_dim": 2, "embeddings_initializer": "ones"},
        {"keys": keys, "padding_mask": mask, "query": keys[:, 0]},
        call_kwargs={"return_logits": True},
        expected_output_shape=[(2, 3), (2, 4)],
    )


# ---- end to end ---------------------------------------------------------------------------
def _metrics(run_dir: str) -> dict:
    with open(os.path.join(run_dir, "metrics.json")) as fh:
        return json.load(fh)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BASELINES))
def test_every_baseline_trains_one_epoch_and_evaluates(tiny_baseline_suite, name):
    run_dir = tiny_baseline_suite.run_dir(name)
    metrics = _metrics(run_dir)
    assert metrics["model"] == name and metrics["epochs_run"] == 1
    for split in ("test", "valid"):
        for key in ("auc", "gauc", "logloss"):
            assert math.isfinite(metrics[split][key]), (split, key)
    assert math.isfinite(metrics["test"]["captured_lift"])
    with open(os.path.join(run_dir, "config.json")) as fh:
        assert json.load(fh)["model_name"] == name
    assert os.path.exists(os.path.join(run_dir, "model.keras"))
    assert metrics["export_path"] is None


@pytest.mark.slow
def test_evaluate_cli_loads_a_baseline_and_reproduces_its_test_metrics(tiny_baseline_suite):
    from feseq_tf import evaluate

    run_dir = tiny_baseline_suite.run_dir("dmr")
    result = evaluate.main(["--model", run_dir, "--dataset", tiny_baseline_suite.dataset_dir])
    expected = _metrics(run_dir)["test"]
    assert result["auc"] == pytest.approx(expected["auc"], abs=1e-6)
    assert result["logloss"] == pytest.approx(expected["logloss"], abs=1e-6)


@pytest.mark.slow
def test_a_baseline_exports_a_serving_savedmodel_without_the_attention_signature(
    tiny_baseline_suite, tmp_path
):
    import tensorflow as tf

    from export.savedmodel import CONTRACT_FILE, export_run

    path = export_run(tiny_baseline_suite.run_dir("dcnv2"), str(tmp_path), name="dcnv2")
    with open(os.path.join(path, CONTRACT_FILE)) as fh:
        contract = json.load(fh)
    assert list(contract["signatures"]) == ["serving_default"]
    assert list(tf.saved_model.load(path).signatures) == ["serving_default"]


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_id_dropout_gives_the_baselines_oov_users_in_training_only(spec, name):
    keras.utils.set_random_seed(5)
    model = build_model(name, spec, tiny_config(id_dropout={"user_id": 0.999}))
    randomize_weights(model)
    x = tiny_batch(spec)
    x["user_id"][:] = np.arange(len(x["user_id"])) % 5 + 2  # every user known
    oov = dict(x, user_id=np.ones_like(x["user_id"]))
    # both in training mode: DIN's Dice normalises with the batch's statistics there
    np.testing.assert_allclose(model(x, training=True).numpy(), model(oov, training=True).numpy(), atol=1e-6)
    assert np.abs(model(x, training=False).numpy() - model(oov, training=False).numpy()).max() > 1e-5
