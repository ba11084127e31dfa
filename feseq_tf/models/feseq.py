"""The FESeq functional model (paper section 3, Fig. 1).

Shapes for the Ele.me preset: B batch, L = 10 history positions, T = L + 1 (the target
is the last position), F = 23 fields, d = 16, model_dim = F*d + 2d = 400.

1. Embedding: each categorical field has one table shared by its target value and its
   history; numeric fields are value times a learned vector. Non-sequential fields are
   broadcast to every position and concatenated on the field axis: E_in [B, T, F, d].
2. Interacting layer: M AutoInt layers over the fields at every position (shared
   parameters across positions), eq. 1-3.
3. Sequence refiner: fields flattened to [B, T, F*d], positional (reverse time order)
   and linear time-interval embeddings, one causal Transformer layer, eq. 4-8.
4. Target item interacting layer: N AutoInt layers over the target item's fields from a
   separate output embedding table -> e_out.
5. Sequence pooling: scaled bilinear attention with e_out as the query, eq. 9-12.
6. Output: concat(pooled, non-sequential embeddings) -> MLP (LeakyReLU, dropout) -> sigmoid.
   Options beyond the paper, off by default: ``target_in_output`` also feeds the
   target item's representation to the MLP (as DIN does), ``wide`` adds a linear one-hot
   term of the target-side fields to the logit (as Wide & Deep does),
   ``history_match`` adds one field to every position stating which of its categorical
   fields equal the target's (:class:`~feseq_tf.layers.HistoryMatch`).

The model never compiles itself; losses other than the embedding L2 (which the
embedding tables add with ``add_loss`` on the distinct rows each batch uses) live in
the training code.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from feseq_tf.config import ModelConfig
from feseq_tf.layers import (
    AutoIntLayer,
    BilinearAttentionPooling,
    HistoryMatch,
    MeanPooling,
    SequenceFeatures,
    TargetPooling,
    TimeAwareTransformer,
)
from feseq_tf.models.common import (
    SpecModel,
    build_inputs,
    embedding_tables,
    match_fields,
    model_spec_and_config,
    with_id_dropout,
)
from feseq_tf.models.output import OutputHead
from feseq_tf.schema import HIST_LEN, DatasetSpec

ATTENTION_OUTPUTS = (
    "input_field_attention",
    "target_field_attention",
    "sequence_attention",
    "pooling_attention",
)


def match_fields_of(spec: DatasetSpec, config: ModelConfig) -> tuple:
    """The categorical history fields :class:`HistoryMatch` compares with the target
    (none unless ``config.history_match`` and a history)."""
    return match_fields(spec) if config.history_match and config.use_history else ()


@keras.saving.register_keras_serializable(package="feseq_tf")
class FESeq(SpecModel):
    """FESeq: Feature Interaction-Enhanced Sequential Transformer for CTR prediction.

    Args:
        spec: DatasetSpec or its dict. Fields, vocabulary sizes, max_len, time unit/clip.
        config: ModelConfig or its dict. Architecture and ablation switches.

    Call arguments:
        inputs: dict of tensors named as in :func:`build_inputs`.

    Returns:
        Click probability, float32 [B, 1].

    Example:
    >>> model = FESeq(spec, ModelConfig(embedding_dim=8))
    >>> model.compile(optimizer="adam", loss="binary_crossentropy")

    References:
        FESeq paper, section 3; AutoInt (Song et al., 2019); BST (Chen et al., 2019).
    """

    def __init__(self, spec: DatasetSpec | dict, config: ModelConfig | dict | None = None, **kwargs):
        spec, config = model_spec_and_config(spec, config)  # without feedback if use_feedback=False
        d = config.embedding_dim
        seq_fields = spec.sequential_fields
        nonseq_fields = spec.non_sequential_fields
        item_fields = spec.target_item_fields
        input_tables = embedding_tables(spec.fields, config)
        # The target item's own embedding and interacting layers only feed attention pooling.
        uses_query = config.pooling == "attention"
        output_tables = (
            embedding_tables(item_fields, config, prefix="output_embedding") if uses_query else {}
        )
        sequence_features = SequenceFeatures(
            spec.max_len, spec.time_unit, use_history=config.use_history, name="sequence_features"
        )
        input_interaction = [
            AutoIntLayer(num_heads=config.interaction_heads, dropout=config.dropout, name=f"input_interaction_{i}")
            for i in range(config.input_interaction_layers)
        ]
        target_interaction = [
            AutoIntLayer(num_heads=config.interaction_heads, dropout=config.dropout, name=f"target_interaction_{i}")
            for i in range(config.target_interaction_layers if uses_query else 0)
        ]
        num_fields = len(seq_fields) + (len(nonseq_fields) if config.nonseq_in_interaction else 0)
        compared = match_fields_of(spec, config)
        history_match = None
        if compared:  # one more field: which fields of each position equal the target's
            history_match = HistoryMatch(d, name="history_match")
            num_fields += 1
        refiner = TimeAwareTransformer(
            num_heads=config.transformer_heads,
            max_positions=spec.max_len + 1,
            time_clip=spec.time_clip,
            time_embedding_dim=d if config.time_combine == "concat" else None,
            combine=config.time_combine,
            use_position=config.use_position,
            use_time=config.use_time,
            causal=config.causal,
            num_layers=config.transformer_layers,
            dropout=config.dropout,
            layer_norm=config.transformer_layer_norm,
            name="sequence_refiner",
        )
        if config.pooling == "attention":
            pooling = BilinearAttentionPooling(
                hidden_units=config.pooling_hidden,
                attention=config.attention,
                use_scale=config.attention_scale,
                dropout=config.dropout,
                name="sequence_pooling",
            )
        elif config.pooling == "mean":
            pooling = MeanPooling(name="sequence_pooling")
        else:
            pooling = TargetPooling(name="sequence_pooling")
        output = OutputHead(spec, config)  # the MLP, the head and the optional wide term

        # ---- functional model --------------------------------------------------------------
        inputs = build_inputs(spec)
        model_inputs = inputs
        inputs = with_id_dropout(inputs, spec, config)  # unknown users (training only)
        seq = sequence_features(
            inputs[spec.time_field], inputs[spec.time_hist_name], inputs[HIST_LEN]
        )
        padding_mask, time_intervals = seq["padding_mask"], seq["time_intervals"]

        def sequence_of(f):  # [B, T] values of a sequential field, target last
            target = ops.expand_dims(inputs[f.name], 1)
            if not config.use_history:
                return target
            return ops.concatenate([inputs[f.hist_name], target], axis=1)

        seq_emb = [input_tables[f.name](sequence_of(f)) for f in seq_fields]  # each [B, T, d]
        nonseq_emb = [input_tables[f.name](inputs[f.name]) for f in nonseq_fields]  # [B, d]
        target_item_emb = [table(inputs[name]) for name, table in output_tables.items()]  # [B, d]

        T = spec.max_len + 1 if config.use_history else 1
        fields = [ops.expand_dims(e, 2) for e in seq_emb]  # [B, T, 1, d]
        if config.nonseq_in_interaction and nonseq_fields:
            ns = ops.stack(nonseq_emb, axis=1)  # [B, n_ns, d]
            ns = ops.repeat(ops.expand_dims(ns, 1), T, axis=1)  # [B, T, n_ns, d]
            fields = [ns] + fields
        if history_match is not None:  # ids of the fields compared with the target's
            compared_ids = ops.stack([sequence_of(f) for f in compared], axis=-1)  # [B, T, n]
            fields.append(ops.expand_dims(history_match(compared_ids, padding_mask), 2))
        e_in = ops.concatenate(fields, axis=2)  # [B, T, F, d]

        attention: dict[str, Any] = {}
        for layer in input_interaction:
            e_in, attention["input_field_attention"] = layer(e_in, return_attention_scores=True)
        flat = ops.reshape(e_in, (-1, T, num_fields * d))
        refined, attention["sequence_attention"] = refiner(
            flat, time_intervals=time_intervals, padding_mask=padding_mask, return_attention_scores=True
        )

        query = None
        if uses_query:
            e_out = ops.stack(target_item_emb, axis=1)  # [B, n_item, d]
            for layer in target_interaction:
                e_out, attention["target_field_attention"] = layer(e_out, return_attention_scores=True)
            query = ops.reshape(e_out, (-1, len(item_fields) * d))
        pooled, attention["pooling_attention"] = pooling(
            query, refined, padding_mask=padding_mask, return_attention_scores=True
        )

        parts = [pooled]
        if config.target_in_output:
            if query is not None:
                parts.append(query)
            else:  # no attention pooling: the target item's input embeddings
                parts += [input_tables[f.name](inputs[f.name]) for f in item_fields]
        x = ops.concatenate(parts + nonseq_emb, axis=-1) if len(parts + nonseq_emb) > 1 else pooled
        probability = output(x, inputs)

        super().__init__(inputs=model_inputs, outputs=probability, **kwargs)

        # ---- config ----------------------------------------------------------------------
        self._finish(spec, config)
        self._attention_tensors = attention

    def attention_model(self) -> keras.Model:
        """A model sharing these weights that also returns the attention maps.

        Outputs: ``probability`` [B, 1] and, where the architecture has them,
        ``input_field_attention`` [B, T, H, F, F] (last input interacting layer),
        ``target_field_attention`` [B, H, n_item, n_item], ``sequence_attention``
        [B, heads, T, T] and ``pooling_attention`` [B, T].
        """
        outputs = {"probability": self.outputs[0]}
        outputs.update(self._attention_tensors)
        return keras.Model(self.inputs, outputs, name=f"{self.name}_attention")
