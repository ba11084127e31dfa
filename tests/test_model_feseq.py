"""Behaviour tests of the FESeq functional model on a tiny dataset spec."""

import os

import keras
import numpy as np
import pytest

from feseq_tf.config import ModelConfig
from feseq_tf.models.feseq import FESeq
from feseq_tf.schema import DatasetSpec, FieldSpec
from feseq_tf.testing import random_features

L = 4


def tiny_spec() -> DatasetSpec:
    return DatasetSpec(
        name="tiny",
        max_len=L,
        fields=(
            FieldSpec("user_id", "user", "categorical", vocab_size=7),
            FieldSpec("avg_price", "user", "numeric"),
            FieldSpec("item_id", "item", "categorical", sequential=True, vocab_size=11),
            FieldSpec("category", "item", "categorical", sequential=True, vocab_size=5),
            FieldSpec("rank", "item", "numeric", sequential=True),
            FieldSpec("hours", "context", "categorical", sequential=True, vocab_size=6),
        ),
        time_clip=100,
    )


def tiny_config(**kw) -> ModelConfig:
    base = dict(embedding_dim=4, transformer_heads=2, pooling_hidden=8, mlp_units=[8], dropout=0.0)
    base.update(kw)
    return ModelConfig(**base)


def tiny_batch(spec: DatasetSpec, batch: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs; row 0 has an empty history, row 1 a full one."""
    x = random_features(spec, batch, seed)
    x["hist_len"][:2] = [0, L]
    real = np.arange(L)[None, :] >= (L - x["hist_len"])[:, None]
    for f in spec.sequential_fields:  # real entries of row 1 were padding before
        values = np.maximum(x[f.hist_name], 1) if f.is_categorical else x[f.hist_name] + 0.5
        x[f.hist_name] = np.where(real, values, 0).astype(x[f.hist_name].dtype)
    gaps = 10 * np.arange(L, 0, -1)[None, :]
    x["times_list"] = np.where(real, x["times"][:, None] - gaps, 0).astype("int64")
    return x


def randomize_weights(model: keras.Model, seed: int = 1) -> None:
    """Embeddings start near zero; give them visible values for behaviour tests."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if "embedding" in w.path:
            w.assign(rng.normal(0, 0.5, w.shape).astype(w.dtype))


@pytest.fixture(scope="module")
def spec():
    return tiny_spec()


@pytest.fixture(scope="module")
def model(spec):
    keras.utils.set_random_seed(0)
    m = FESeq(spec, tiny_config())
    randomize_weights(m)
    return m


def test_outputs_probabilities_of_shape_batch_by_one(model, spec):
    p = model.predict(tiny_batch(spec), verbose=0)
    assert p.shape == (6, 1)
    assert np.all((p > 0) & (p < 1))


def test_padded_history_values_do_not_change_predictions(model, spec):
    x = tiny_batch(spec)
    y = {k: v.copy() for k, v in x.items()}
    padded = np.arange(L)[None, :] < (L - x["hist_len"])[:, None]
    rng = np.random.default_rng(5)
    for f in spec.sequential_fields:
        noise = rng.integers(1, f.vocab_size, padded.shape) if f.is_categorical else rng.random(padded.shape)
        y[f.hist_name] = np.where(padded, noise, y[f.hist_name]).astype(y[f.hist_name].dtype)
    y["times_list"] = np.where(padded, 12345, y["times_list"])
    assert padded.any()
    np.testing.assert_allclose(model(x, training=False), model(y, training=False), rtol=1e-6, atol=1e-7)


def test_real_history_values_change_predictions(model, spec):
    x = tiny_batch(spec)
    y = {k: v.copy() for k, v in x.items()}
    y["item_id_list"][1, -1] = (x["item_id_list"][1, -1] % 9) + 1  # row 1 has a full history
    p, q = model(x, training=False).numpy(), model(y, training=False).numpy()
    assert abs(p[1, 0] - q[1, 0]) > 1e-6
    np.testing.assert_allclose(np.delete(p, 1, 0), np.delete(q, 1, 0), rtol=1e-6)


def test_attention_model_pooling_weights_sum_to_one_over_real_positions(model, spec):
    x = tiny_batch(spec)
    out = model.attention_model().predict(x, verbose=0)
    w = out["pooling_attention"]
    assert w.shape == (6, L + 1)
    real = np.concatenate([np.arange(L)[None, :] >= (L - x["hist_len"])[:, None], np.ones((6, 1), bool)], 1)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-5)
    assert np.all(w[~real] == 0)
    np.testing.assert_allclose(out["probability"], model.predict(x, verbose=0), rtol=1e-6)
    n_fields = len(spec.fields)
    assert out["input_field_attention"].shape[-2:] == (n_fields, n_fields)
    assert out["target_field_attention"].shape[-2:] == (3, 3)  # item_id, category, rank
    assert out["sequence_attention"].shape == (6, 2, L + 1, L + 1)


def test_embedding_l2_is_added_to_training_losses(spec):
    x = tiny_batch(spec)
    with_l2 = FESeq(spec, tiny_config(embedding_l2=1.0))
    randomize_weights(with_l2)
    with_l2(x, training=True)
    losses = [float(v) for v in with_l2.losses]
    assert losses and sum(losses) > 0
    without = FESeq(spec, tiny_config(embedding_l2=0.0))
    without(x, training=True)
    assert sum(float(v) for v in without.losses) == 0


def test_config_round_trip_and_keras_save_load_give_identical_outputs(model, spec, tmp_path):
    x = tiny_batch(spec)
    clone = FESeq.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(x, training=False), model(x, training=False), rtol=1e-6)
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, FESeq)
    assert loaded.config == model.config and loaded.spec == model.spec
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


ABLATIONS = {
    "no_interacting_layer": dict(input_interaction_layers=0),
    "no_target_interaction": dict(target_interaction_layers=0),
    "no_nonseq_in_interaction": dict(nonseq_in_interaction=False),
    "no_position": dict(use_position=False),
    "no_time": dict(use_time=False),
    "no_causal": dict(causal=False),
    "add_embeddings": dict(time_combine="add"),
    "mean_pooling": dict(pooling="mean"),
    "target_pooling": dict(pooling="target"),
    "dot_attention": dict(attention="dot"),
    "din_attention": dict(attention="din"),
    "no_scale": dict(attention_scale=False),
    "no_history": dict(use_history=False),
    "depth_3_1": dict(input_interaction_layers=3, target_interaction_layers=1),
    "layer_norm": dict(transformer_layer_norm=True),
    "history_match": dict(history_match=True),
    "wide_and_target_in_output": dict(wide=True, target_in_output=True),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_every_ablation_builds_and_trains_one_step(name, spec):
    keras.utils.set_random_seed(0)
    m = FESeq(spec, tiny_config(**ABLATIONS[name]))
    m.compile(optimizer="adam", loss="binary_crossentropy")
    x = tiny_batch(spec)
    loss = m.train_on_batch(x, np.array([0, 1, 0, 1, 1, 0], "float32"))
    assert np.isfinite(loss)
    assert m.predict(x, verbose=0).shape == (6, 1)


def test_no_history_ablation_ignores_history(spec):
    keras.utils.set_random_seed(0)
    m = FESeq(spec, tiny_config(use_history=False))
    randomize_weights(m)
    x = tiny_batch(spec)
    y = dict(x, item_id_list=np.where(x["item_id_list"] > 0, 1, 0).astype("int32"))
    np.testing.assert_allclose(m(x, training=False), m(y, training=False))


@pytest.mark.slow
def test_compiles_with_xla_and_keras_keeps_it_on(spec):
    keras.utils.set_random_seed(0)
    m = FESeq(spec, tiny_config())
    m.compile(optimizer="adam", loss="binary_crossentropy", jit_compile=True)
    x = tiny_batch(spec)
    m.train_on_batch(x, np.ones(6, "float32"))
    assert m.jit_compile is True  # Keras turns it off silently for unsupported models


def test_same_seed_gives_same_model(spec):
    x = tiny_batch(spec)
    outs = []
    for _ in range(2):
        keras.utils.set_random_seed(42)
        m = FESeq(spec, tiny_config())
        outs.append(m.predict(x, verbose=0))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_bfloat16_policy_gives_float32_probabilities(spec):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        m = FESeq(spec, tiny_config())
        p = m.predict(tiny_batch(spec), verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert p.dtype == np.float32 and np.all(np.isfinite(p))


def _table_paths(model: keras.Model) -> set[str]:
    return {w.path for w in model.weights if "embedding" in w.path and w.path.endswith("embeddings")}


def _logit(p):
    p = np.asarray(p, "float64")
    return np.log(p / (1 - p))


def test_wide_term_adds_one_weight_per_id_to_the_logit(spec):
    keras.utils.set_random_seed(4)
    model = FESeq(spec, tiny_config(wide=True))
    x = tiny_batch(spec)
    before = _logit(model.predict(x, verbose=0))[:, 0]
    table = model.get_layer("wide_item_id")
    item = int(x["item_id"][0])
    values = keras.ops.convert_to_numpy(table.embeddings)
    values[item] += 3.0
    table.embeddings.assign(values)
    after = _logit(model.predict(x, verbose=0))[:, 0]
    same_item = x["item_id"] == item
    np.testing.assert_allclose(after[same_item] - before[same_item], 3.0, rtol=1e-4)
    np.testing.assert_allclose(after[~same_item], before[~same_item], rtol=1e-5, atol=1e-6)


def _wide_weights(model, field="item_id"):
    """The wide weights of one field."""
    return keras.ops.convert_to_numpy(model.get_layer(f"wide_{field}").embeddings)[:, 0]


@pytest.mark.parametrize("target_in_output", [False, True])
def test_target_in_output_feeds_the_target_item_to_the_mlp(spec, target_in_output):
    # Without history the pooling attends over the target position alone, so the
    # query (the output embedding of the target item) reaches the prediction only
    # when target_in_output feeds it to the MLP.
    keras.utils.set_random_seed(5)
    model = FESeq(spec, tiny_config(use_history=False, target_in_output=target_in_output))
    randomize_weights(model)
    x = tiny_batch(spec)
    before = model.predict(x, verbose=0)
    table = model.get_layer("output_embedding_item_id")
    table.embeddings.assign(keras.ops.convert_to_numpy(table.embeddings) + 1.0)
    changed = not np.allclose(model.predict(x, verbose=0), before, atol=1e-6)
    assert changed == target_in_output


def test_id_dropout_trains_on_oov_user_ids_and_serves_the_ids_as_given(spec):
    keras.utils.set_random_seed(4)
    model = FESeq(spec, tiny_config(id_dropout=0.999, wide=True))
    randomize_weights(model)
    x = tiny_batch(spec)
    x["user_id"][:] = np.arange(len(x["user_id"])) % 5 + 2  # every user known
    oov = dict(x, user_id=np.ones_like(x["user_id"]))
    as_given = model(x, training=False).numpy()
    # training: (almost surely) every user id is dropped to OOV; items are not
    np.testing.assert_allclose(model(x, training=True).numpy(), model(oov, training=False).numpy(), atol=1e-6)
    assert np.abs(as_given - model(oov, training=False).numpy()).max() > 1e-4
    np.testing.assert_array_equal(model(x, training=False).numpy(), as_given)
    assert [layer.name for layer in model.layers if "id_dropout" in layer.name] == ["id_dropout_user_id"]


@pytest.mark.parametrize("bad", [-0.1, 1.0, True])
def test_id_dropout_must_be_a_probability(bad):
    with pytest.raises(ValueError, match="id_dropout"):
        tiny_config(id_dropout=bad)



# ---- options removed for measuring no gain: old saved configs --------------------------------
@pytest.mark.parametrize("name, old_default", [
    ("history_summary", False), ("history_match_counts", False), ("history_relevance", False),
    ("share_target_embedding", False), ("wide_learning_rate_multiplier", 1.0),
])
def test_a_saved_model_naming_a_removed_option_at_its_default_loads(spec, name, old_default):
    from feseq_tf.config import ExperimentConfig

    model = FESeq(spec, tiny_config())
    old = model.get_config()
    old["config"] = {**old["config"], name: old_default}  # as a model saved before wrote it
    loaded = FESeq.from_config(old)
    assert loaded.config == model.config
    assert ExperimentConfig.from_dict({"model": {name: old_default}}).model == ModelConfig()
    other = True if isinstance(old_default, bool) else 5.0
    with pytest.raises(ValueError, match=f"model.{name} was removed"):
        FESeq.from_config({**old, "config": {**old["config"], name: other}})
    with pytest.raises(ValueError, match=f"model.{name} was removed"):
        ExperimentConfig.from_dict({"model": {name: other}})


def test_a_saved_run_config_naming_redraw_wide_at_its_default_loads():
    from feseq_tf.config import ExperimentConfig

    assert ExperimentConfig.from_dict({"train": {"redraw_wide": True}}).train.redraw_embeddings is False
    with pytest.raises(ValueError, match="train.redraw_wide was removed"):
        ExperimentConfig.from_dict({"train": {"redraw_wide": False}})
