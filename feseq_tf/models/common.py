"""Parts FESeq and the baselines share: embedding tables, the output MLP, the config."""

from __future__ import annotations

import dataclasses
from typing import Any

import keras

from feseq_tf.cold_start import id_dropout_fields
from feseq_tf.config import AUTO_ID_DROPOUT, ModelConfig
from feseq_tf.layers import FieldEmbedding, IdDropout, NumericEmbedding
from feseq_tf.layers.initializers import clone_initializer
from feseq_tf.schema import HIST_LEN, DatasetSpec, FieldSpec


def embedding_tables(
    fields: tuple[FieldSpec, ...],
    config: ModelConfig,
    prefix: str = "embedding",
    dim: int | None = None,
) -> dict[str, keras.layers.Layer]:
    """One table per field, named ``<prefix>_<field>`` (history lists share it)."""
    init = keras.initializers.RandomNormal(stddev=config.embedding_stddev)
    dim = dim or config.embedding_dim
    tables: dict[str, keras.layers.Layer] = {}
    for f in fields:
        if f.is_categorical:
            tables[f.name] = FieldEmbedding(
                f.vocab_size,
                dim,
                l2=config.embedding_l2,
                embeddings_initializer=clone_initializer(init, f"{prefix}_{f.name}"),
                name=f"{prefix}_{f.name}",
            )
        else:
            tables[f.name] = NumericEmbedding(
                dim,
                embeddings_initializer=clone_initializer(init, f"{prefix}_{f.name}"),
                l2=config.embedding_l2,
                name=f"{prefix}_{f.name}",
            )
    return tables


def model_spec_and_config(
    spec: DatasetSpec | dict, config: ModelConfig | dict | None
) -> tuple[DatasetSpec, ModelConfig]:
    """The dataset spec a model reads and its config, from either form.

    With ``config.use_feedback`` False the spec loses its history-only fields (the
    labels of the history), so the model has no inputs for them and the input
    pipeline, which parses ``model.spec``, does not read them.
    """
    spec = spec if isinstance(spec, DatasetSpec) else DatasetSpec.from_dict(spec)
    if config is None:
        config = ModelConfig()
    elif not isinstance(config, ModelConfig):
        config = ModelConfig.from_dict(config)
    return (spec if config.use_feedback else spec.without_feedback()), config


def match_fields(spec: DatasetSpec) -> tuple[FieldSpec, ...]:
    """The fields ``history_match`` compares between every history entry and the target:
    the categorical sequential fields that have a target value."""
    return tuple(f for f in spec.sequential_fields if f.is_categorical and not f.history_only)


def output_mlp(config: ModelConfig) -> list[keras.layers.Layer]:
    """The output MLP and head: (Dense, LeakyReLU, Dropout) per unit, sigmoid head."""
    layers: list[keras.layers.Layer] = []
    for i, units in enumerate(config.mlp_units):
        layers.append(keras.layers.Dense(units, name=f"mlp_dense_{i}"))
        layers.append(keras.layers.LeakyReLU(name=f"mlp_act_{i}"))
        layers.append(keras.layers.Dropout(config.dropout, name=f"mlp_dropout_{i}"))
    layers.append(keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="probability"))
    return layers


class SpecModel(keras.Model):
    """A functional model built from ``(spec, config)``; serialised as those two."""

    def _finish(self, spec: DatasetSpec, config: ModelConfig) -> None:
        self.spec = spec
        self.config = config

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "spec": self.spec.to_dict(),
            "config": dataclasses.asdict(self.config),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SpecModel:
        return cls(**config)


def build_inputs(spec: DatasetSpec) -> dict[str, keras.KerasTensor]:
    """One named ``keras.Input`` per model feature (see docs/data_format.md)."""
    L = spec.max_len
    inputs: dict[str, keras.KerasTensor] = {}
    for f in spec.fields:
        dtype = "int32" if f.is_categorical else "float32"
        inputs[f.name] = keras.Input(shape=(), dtype=dtype, name=f.name)
        if f.sequential:
            inputs[f.hist_name] = keras.Input(shape=(L,), dtype=dtype, name=f.hist_name)
    inputs[spec.time_field] = keras.Input(shape=(), dtype="int64", name=spec.time_field)
    inputs[spec.time_hist_name] = keras.Input(shape=(L,), dtype="int64", name=spec.time_hist_name)
    inputs[HIST_LEN] = keras.Input(shape=(), dtype="int32", name=HIST_LEN)
    return inputs


def id_dropout_rates_of(spec: DatasetSpec, config: ModelConfig) -> dict[str, float]:
    """The non-zero id dropout rate of each field ``config.id_dropout`` applies to.

    Raises:
        ValueError: ``"auto"`` (the training run resolves it from the data first), or a
            mapping naming a field that is not a non-sequential categorical field.
    """
    fields = id_dropout_fields(spec)
    value = config.id_dropout
    if value == AUTO_ID_DROPOUT:
        raise ValueError(
            "id_dropout='auto' takes its rates from the data: feseq_tf.train.run resolves it "
            "(feseq_tf.cold_start.id_dropout_rates); to build the model yourself pass a rate "
            "or a {field: rate} mapping."
        )
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise ValueError(f"id_dropout names {unknown}, which are not non-sequential "
                             f"categorical fields of the dataset; those are {list(fields)}.")
        rates = value
    else:
        rates = {name: value for name in fields}
    return {name: float(rates[name]) for name in fields if rates.get(name, 0.0) > 0}


def with_id_dropout(inputs: dict[str, Any], spec: DatasetSpec, config: ModelConfig) -> dict[str, Any]:
    """``inputs`` with an :class:`~feseq_tf.layers.IdDropout` after every field of
    :func:`id_dropout_rates_of` (the same dict when there is none): in training, known
    user and context ids become OOV at the configured rates; at inference nothing changes."""
    rates = id_dropout_rates_of(spec, config)
    if not rates:
        return inputs
    out = dict(inputs)
    for name, rate in rates.items():
        out[name] = IdDropout(rate, name=f"id_dropout_{name}")(inputs[name])
    return out
