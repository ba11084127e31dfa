"""Every weight starts from its own random draw: no two weights, or rows of tables, equal."""

from __future__ import annotations

import collections

import keras
import numpy as np
import pytest

from feseq_tf.config import ModelConfig
from feseq_tf.layers import AutoIntLayer, TimeAwareTransformer
from feseq_tf.layers.initializers import clone_initializer, derive_seed, with_seed
from feseq_tf.models import MODELS, build_model
from feseq_tf.schema import DatasetSpec, FieldSpec

# Weights meant to start at a constant (or the identity): biases, normalisation and
# activation parameters, the pooling's bilinear W (eq. 12, initialised to the identity).
CONSTANT_WEIGHTS = ("bias", "gamma", "beta", "alpha", "bilinear", "moving_", "scale")


def spec_with_equal_tables() -> DatasetSpec:
    """Tables of equal shape (the old bug made them equal) and of different sizes."""
    return DatasetSpec(
        name="init",
        max_len=4,
        fields=(
            FieldSpec("user_id", "user", "categorical", vocab_size=9),
            FieldSpec("geohash12", "user", "categorical", vocab_size=9),
            FieldSpec("avg_price", "user", "numeric"),
            FieldSpec("ctr_30", "user", "numeric"),
            FieldSpec("item_id", "item", "categorical", sequential=True, vocab_size=13),
            FieldSpec("shop_id", "item", "categorical", sequential=True, vocab_size=13),
            FieldSpec("category", "item", "categorical", sequential=True, vocab_size=5),
            FieldSpec("rank_7", "item", "numeric", sequential=True),
            FieldSpec("rank_30", "item", "numeric", sequential=True),
            FieldSpec("hours", "context", "categorical", sequential=True, vocab_size=6),
        ),
        time_clip=50,
    )


def random_weights(model: keras.Model) -> list[tuple[str, np.ndarray]]:
    out = []
    for w in model.weights:
        leaf = w.path.rsplit("/", 1)[-1]
        if any(key in leaf for key in CONSTANT_WEIGHTS) or np.prod(w.shape) <= 1:
            continue
        out.append((w.path, np.asarray(keras.ops.convert_to_numpy(w), "float32")))
    return out


def rows(value: np.ndarray) -> np.ndarray:
    return value.reshape(1, -1) if value.ndim == 1 else value.reshape(value.shape[0], -1)


@pytest.mark.parametrize("name", MODELS)
def test_no_two_weights_or_table_rows_start_equal(name):
    keras.utils.set_random_seed(3)
    config = ModelConfig(
        embedding_dim=4, transformer_heads=2, pooling_hidden=8, mlp_units=[8, 8],
        embedding_stddev=0.1,
    )
    model = build_model(name, spec_with_equal_tables(), config)
    weights = random_weights(model)
    assert len(weights) >= 5, [p for p, _ in weights]
    seen_rows: dict[bytes, str] = {}
    prefixes: dict[bytes, str] = {}
    for path, value in weights:
        # No two rows anywhere (tables of any size, kernels) are equal.
        for i, row in enumerate(rows(value)):
            key = row.tobytes()
            where = f"{path}[{i}]"
            assert key not in seen_rows, f"{where} starts equal to {seen_rows[key]}"
            seen_rows[key] = where
        prefix = value.reshape(-1)[:4].tobytes()
        assert prefix not in prefixes, f"{path} starts like {prefixes[prefix]}"
        prefixes[prefix] = path


def test_attention_projections_start_different():
    keras.utils.set_random_seed(0)
    layer = AutoIntLayer()
    layer.build((None, 5, 8))
    q, k, v = (keras.ops.convert_to_numpy(w) for w in layer.weights[:3])
    assert not np.allclose(q, k) and not np.allclose(k, v) and not np.allclose(q, v)


def test_time_and_position_tables_start_different():
    keras.utils.set_random_seed(0)
    layer = TimeAwareTransformer(num_heads=2, max_positions=6, time_clip=5, time_embedding_dim=4)
    layer.build((None, 6, 8))
    tables = {w.path.split("/")[-2]: keras.ops.convert_to_numpy(w) for w in layer.weights
              if w.path.endswith("embeddings")}
    assert set(tables) == {"position_embedding", "time_embedding"}
    assert not np.allclose(tables["position_embedding"], tables["time_embedding"])


def test_seeded_initializer_clones_are_distinct_and_reproducible():
    init = keras.initializers.RandomNormal(seed=7)
    a1 = clone_initializer(init, "query")((3, 3))
    a2 = clone_initializer(init, "query")((3, 3))
    b = clone_initializer(init, "key")((3, 3))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(a1), keras.ops.convert_to_numpy(a2))
    assert not np.allclose(keras.ops.convert_to_numpy(a1), keras.ops.convert_to_numpy(b))
    # The layer's seed seeds an unseeded initializer reproducibly.
    c1 = clone_initializer("glorot_uniform", "query", seed=5)((3, 3))
    c2 = clone_initializer("glorot_uniform", "query", seed=5)((3, 3))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(c1), keras.ops.convert_to_numpy(c2))


def test_constant_initializers_are_returned_as_they_are():
    init = keras.initializers.Constant(0.25)
    assert clone_initializer(init, "alpha") is init
    assert collections.Counter(
        type(clone_initializer("identity", n)).__name__ for n in "ab"
    ) == {"Identity": 2}


def test_with_seed_replaces_only_the_seed():
    init = keras.initializers.TruncatedNormal(stddev=0.3, seed=1)
    other = with_seed(init, 2)
    assert isinstance(other, keras.initializers.TruncatedNormal)
    assert other.get_config() == {**init.get_config(), "seed": 2}
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(other((4, 4))),
        keras.ops.convert_to_numpy(with_seed(init, 2)((4, 4))),
    )
    assert not np.allclose(
        keras.ops.convert_to_numpy(other((4, 4))), keras.ops.convert_to_numpy(init((4, 4)))
    )
    constant = keras.initializers.Constant(0.5)
    assert with_seed(constant, 3) is constant


def test_seed_derivation_rejects_non_integers():
    with pytest.raises(ValueError, match="seed"):
        derive_seed("7", "query")
    assert derive_seed(7, "query") != derive_seed(7, "key")


def test_same_global_seed_gives_same_initial_weights():
    def build():
        keras.utils.set_random_seed(11)
        return build_model("feseq", spec_with_equal_tables(), ModelConfig(
            embedding_dim=4, transformer_heads=2, pooling_hidden=8, mlp_units=[8]))

    a, b = build(), build()
    for wa, wb in zip(a.weights, b.weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(wa), keras.ops.convert_to_numpy(wb))
