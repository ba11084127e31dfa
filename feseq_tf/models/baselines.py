"""Baseline CTR models on FESeq's inputs: DeepFM, AutoInt, DCNv2, DIN, BST and DMR.

Every baseline is a functional ``keras.Model`` on :func:`feseq_tf.models.common.build_inputs`
(so the same input pipeline, evaluation and serving export work for it), with FESeq's
embeddings (one :class:`FieldEmbedding` / :class:`NumericEmbedding` table per field,
shared by the target value and the history, ``embedding_dim``, ``embedding_l2``,
``embedding_stddev``) and FESeq's output MLP (Dense -> LeakyReLU -> Dropout per entry of
``mlp_units``, then a float32 sigmoid ``"probability"`` head). They compute in the
global dtype policy (e.g. ``mixed_bfloat16``) and output float32.

Feature-interaction baselines see one row of fields, the target position: the
non-sequential fields and the target values of the sequential fields (no history).
Sequential baselines attend over the history of the item fields
(``spec.target_item_fields``); the other fields (user, context) enter the MLP as
their target-position embeddings. Padded history positions are masked everywhere.

The labels of the history (a dataset's history-only ``feedback`` field) have no
target value: the feature-interaction baselines see that field as the mean embedding
of its real history entries (a learned function of the history's click share), and
the sequential baselines describe every history entry by its item fields and its
label (the target gets the unknown label). Without such a field every model is
unchanged.

Which ``ModelConfig`` fields each reads (all read ``embedding_dim``, ``embedding_l2``,
``embedding_stddev``, ``mlp_units``, ``dropout``, ``id_dropout`` and ``wide``, the one-hot
linear term added to the logit by :class:`~feseq_tf.models.output.OutputHead`; DIN, BST
and DMR also read ``history_match``, FESeq's match field appended to every history entry
and to the target; the others are ignored):

==========  ===========================================================================
deepfm      nothing else. Output: the head sees [MLP(flat e), FM term, first-order term],
            so DeepFM's y_FM + y_DNN with learned weights on the two FM terms.
autoint     ``input_interaction_layers`` AutoInt layers with ``interaction_heads`` heads
            over the fields, flattened -> MLP (AutoInt+).
dcnv2       ``input_interaction_layers`` full-rank ``keras_rs.layers.FeatureCross``
            layers on the flattened embeddings; ``structure`` "stacked" (cross -> MLP,
            the default) or "parallel" (concat(cross, MLP)) -> head.
din         DIN activation unit (:class:`DINAttention`, Dice, no softmax) with hidden
            units (``pooling_hidden``, ``pooling_hidden // 2``).
bst         ``transformer_layers`` Transformer layers (:class:`TimeAwareTransformer`,
            non-causal, with LayerNorm as in BST) over [history..., target] item
            embeddings with a positional embedding (``use_position``) and BST's
            time-gap feature (``use_time``), ``transformer_heads`` heads (the largest
            divisor of the width not above it); real positions flattened -> MLP.
dmr         User-to-Item and Item-to-Item networks with :class:`PositionalAttention`
            of ``pooling_hidden`` units.
==========  ===========================================================================

DMR's auxiliary loss (sampled-softmax next-item prediction that trains the
User-to-Item network) is omitted: the relevance score is learned from the click loss
alone, as in the DMR paper's "w/o auxiliary loss" ablation.
"""

from __future__ import annotations

from typing import Any

import keras
import keras_rs
from keras import ops

from feseq_tf.config import ModelConfig
from feseq_tf.layers import (
    AutoIntLayer,
    DINAttention,
    FactorizationMachine,
    HistoryMatch,
    PositionalAttention,
    SequenceFeatures,
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
from feseq_tf.options import DCN_STRUCTURES
from feseq_tf.schema import HIST_LEN, DatasetSpec, FieldSpec


# ---- shared parts ----------------------------------------------------------------------------
def _apply(layers: list[keras.layers.Layer], x: Any) -> Any:
    for layer in layers:
        x = layer(x)
    return x


def _concat(tensors: list[Any]) -> Any:
    return tensors[0] if len(tensors) == 1 else ops.concatenate(tensors, axis=-1)


def _largest_divisor(width: int, at_most: int) -> int:
    return max(h for h in range(1, min(width, at_most) + 1) if width % h == 0)


class BaselineModel(SpecModel):
    """Common constructor contract and config of the baselines: ``(spec, config)``."""


# ---- feature interaction (target position only) -------------------------------------------
def _target_fields(spec: DatasetSpec) -> tuple[FieldSpec, ...]:
    return spec.non_sequential_fields + spec.sequential_fields


def _target_row(
    tables: dict[str, keras.layers.Layer],
    inputs: dict[str, Any],
    fields: tuple[FieldSpec, ...],
    max_len: int,
) -> list[Any]:
    """The fields at the target position, each [B, dim]: the embedded target value, or
    for a history-only field (no target value) the mean embedding of its real history
    entries (zeros without history)."""
    out = []
    for f in fields:
        if not f.history_only:
            out.append(tables[f.name](inputs[f.name]))
            continue
        first_real = max_len - ops.cast(inputs[HIST_LEN], "int32")[:, None]
        real = ops.greater_equal(ops.arange(max_len, dtype="int32")[None, :], first_real)
        emb = tables[f.name](inputs[f.hist_name])  # [B, L, dim]
        weight = ops.expand_dims(ops.cast(real, emb.dtype), -1)
        out.append(ops.sum(emb * weight, axis=1) / ops.maximum(ops.sum(weight, axis=1), 1))
    return out


@keras.saving.register_keras_serializable(package="feseq_tf")
class DeepFM(BaselineModel):
    """DeepFM: first-order + FM second-order + MLP over the target-position fields.

    Args:
        spec: DatasetSpec or its dict.
        config: ModelConfig or its dict (see the module docstring for the fields used).

    Returns (call):
        Click probability, float32 [B, 1].

    References:
        Guo et al., DeepFM: A Factorization-Machine based Neural Network for CTR
        Prediction, IJCAI 2017.
    """

    def __init__(
        self, spec: DatasetSpec | dict, config: ModelConfig | dict | None = None, **kwargs
    ):
        spec, config = model_spec_and_config(spec, config)
        fields = _target_fields(spec)
        # ---- layers
        tables = embedding_tables(fields, config)
        first_order = embedding_tables(fields, config, prefix="first_order", dim=1)
        fm = FactorizationMachine(name="fm")
        output = OutputHead(spec, config)
        # ---- functional model
        inputs = build_inputs(spec)
        ids = with_id_dropout(inputs, spec, config)  # unknown users (training only)
        emb = ops.stack(_target_row(tables, ids, fields, spec.max_len), axis=1)  # [B, F, d]
        linear = ops.sum(
            ops.concatenate(_target_row(first_order, ids, fields, spec.max_len), axis=-1),
            axis=-1,
            keepdims=True,
        )  # [B, 1]
        deep = output.hidden(ops.reshape(emb, (-1, len(fields) * config.embedding_dim)))
        probability = output.probability(ops.concatenate([deep, fm(emb), linear], axis=-1), ids)
        super().__init__(inputs=inputs, outputs=probability, **kwargs)
        # ---- config
        self._finish(spec, config)


@keras.saving.register_keras_serializable(package="feseq_tf")
class AutoInt(BaselineModel):
    """AutoInt+: AutoInt layers over the target-position fields, flattened, then the MLP.

    Args:
        spec: DatasetSpec or its dict.
        config: ModelConfig or its dict (``input_interaction_layers`` layers with
            ``interaction_heads`` heads).

    References:
        Song et al., AutoInt: Automatic Feature Interaction Learning via
        Self-Attentive Neural Networks, CIKM 2019.
    """

    def __init__(
        self, spec: DatasetSpec | dict, config: ModelConfig | dict | None = None, **kwargs
    ):
        spec, config = model_spec_and_config(spec, config)
        fields = _target_fields(spec)
        # ---- layers
        tables = embedding_tables(fields, config)
        interaction = [
            AutoIntLayer(
                num_heads=config.interaction_heads, dropout=config.dropout, name=f"interaction_{i}"
            )
            for i in range(config.input_interaction_layers)
        ]
        output = OutputHead(spec, config)
        # ---- functional model
        inputs = build_inputs(spec)
        ids = with_id_dropout(inputs, spec, config)  # unknown users (training only)
        x = ops.stack(_target_row(tables, ids, fields, spec.max_len), axis=1)  # [B, F, d]
        x = _apply(interaction, x)
        probability = output(ops.reshape(x, (-1, x.shape[1] * x.shape[2])), ids)
        super().__init__(inputs=inputs, outputs=probability, **kwargs)
        # ---- config
        self._finish(spec, config)


@keras.saving.register_keras_serializable(package="feseq_tf")
class DCNv2(BaselineModel):
    """DCN-V2: ``keras_rs`` cross layers on the flattened target-position embeddings.

        x_{l+1} = x_0 * (W_l x_l + b_l) + x_l     (full-rank W_l, DCN-V2 eq. 1)

    Args:
        spec: DatasetSpec or its dict.
        config: ModelConfig or its dict (``input_interaction_layers`` cross layers).
        structure: str. ``"stacked"`` (cross network, then the MLP) or ``"parallel"``
            (cross network and MLP side by side, concatenated). Defaults to "stacked".

    References:
        Wang et al., DCN V2: Improved Deep & Cross Network, WWW 2021.
    """

    def __init__(
        self,
        spec: DatasetSpec | dict,
        config: ModelConfig | dict | None = None,
        structure: str = "stacked",
        **kwargs,
    ):
        if structure not in DCN_STRUCTURES:
            raise ValueError(f"structure must be one of {DCN_STRUCTURES}, got {structure!r}.")
        spec, config = model_spec_and_config(spec, config)
        fields = _target_fields(spec)
        # ---- layers
        tables = embedding_tables(fields, config)
        cross = [
            keras_rs.layers.FeatureCross(name=f"cross_{i}")
            for i in range(config.input_interaction_layers)
        ]
        output = OutputHead(spec, config)
        # ---- functional model
        inputs = build_inputs(spec)
        ids = with_id_dropout(inputs, spec, config)  # unknown users (training only)
        x0 = ops.concatenate(_target_row(tables, ids, fields, spec.max_len), axis=-1)  # [B, F*d]
        x = x0
        for layer in cross:
            x = layer(x0, x)
        if structure == "stacked":
            probability = output(x, ids)
        else:
            probability = output.probability(ops.concatenate([x, output.hidden(x0)], axis=-1), ids)
        super().__init__(inputs=inputs, outputs=probability, **kwargs)
        # ---- config
        self._finish(spec, config)
        self.structure = structure

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "structure": self.structure}


# ---- sequential ---------------------------------------------------------------------------
class _SequentialParts:
    """Embeddings of a sequential baseline: item history, target item, other fields."""

    def __init__(self, spec: DatasetSpec, config: ModelConfig):
        self.spec = spec
        self.item_fields = spec.target_item_fields
        # A history entry is its item and, with feedback, its label.
        self.behaviour_fields = self.item_fields + spec.history_only_fields
        self.other_fields = tuple(f for f in spec.fields if f not in self.behaviour_fields)
        self.tables = embedding_tables(spec.fields, config)
        self.sequence_features = SequenceFeatures(
            spec.max_len, spec.time_unit, name="sequence_features"
        )
        # With ``history_match``, every entry (and the target) also carries FESeq's
        # match field: which categorical fields of the entry equal the target's.
        self.match_fields = match_fields(spec) if config.history_match else ()
        self.history_match = (
            HistoryMatch(config.embedding_dim, name="history_match") if self.match_fields else None
        )
        entry_fields = len(self.behaviour_fields) + int(self.history_match is not None)
        self.item_dim = entry_fields * config.embedding_dim

    def __call__(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Returns ``history`` [B, L, D_item], ``target`` [B, D_item], ``target_match``
        (the target's match field [B, d] in a list, empty without ``history_match``),
        ``others`` (list of [B, d]), ``mask`` [B, L+1] (True = real, target last) and
        ``time_intervals`` [B, L+1]."""
        t = self.tables
        spec = self.spec
        seq = self.sequence_features(
            inputs[spec.time_field], inputs[spec.time_hist_name], inputs[HIST_LEN]
        )
        history = [t[f.name](inputs[f.hist_name]) for f in self.behaviour_fields]
        target = [t[f.name](inputs[f.name]) for f in self.behaviour_fields]
        target_match = []
        if self.history_match is not None:
            ids = ops.stack([  # [B, L+1, n], the target last
                ops.concatenate([inputs[f.hist_name], ops.expand_dims(inputs[f.name], 1)], 1)
                for f in self.match_fields
            ], axis=-1)
            match = self.history_match(ids, seq["padding_mask"])  # [B, L+1, d]
            history.append(match[:, :-1])
            target_match = [match[:, -1]]
        return {
            "history": _concat(history),
            "target": _concat(target + target_match),
            "target_match": target_match,
            "others": [t[f.name](inputs[f.name]) for f in self.other_fields],
            "mask": seq["padding_mask"],
            "time_intervals": seq["time_intervals"],
        }


@keras.saving.register_keras_serializable(package="feseq_tf")
class DIN(BaselineModel):
    """Deep Interest Network: target attention over the item history, then the MLP.

    MLP input: [pooled interest, target item, other fields' embeddings].

    Args:
        spec: DatasetSpec or its dict.
        config: ModelConfig or its dict (``pooling_hidden`` sizes the activation unit).

    References:
        Zhou et al., Deep Interest Network for Click-Through Rate Prediction, KDD 2018.
    """

    def __init__(
        self, spec: DatasetSpec | dict, config: ModelConfig | dict | None = None, **kwargs
    ):
        spec, config = model_spec_and_config(spec, config)
        # ---- layers
        parts = _SequentialParts(spec, config)
        h = config.pooling_hidden
        attention = DINAttention(hidden_units=(h, max(h // 2, 1)), name="din_attention")
        output = OutputHead(spec, config)
        # ---- functional model
        inputs = build_inputs(spec)
        ids = with_id_dropout(inputs, spec, config)  # unknown users (training only)
        x = parts(ids)
        pooled = attention(x["target"], x["history"], padding_mask=x["mask"][:, :-1])
        probability = output(_concat([pooled, x["target"]] + x["others"]), ids)
        super().__init__(inputs=inputs, outputs=probability, **kwargs)
        # ---- config
        self._finish(spec, config)


@keras.saving.register_keras_serializable(package="feseq_tf")
class BST(BaselineModel):
    """Behavior Sequence Transformer over [history..., target] item embeddings.

    The Transformer's outputs at the real positions (padded ones zeroed) are
    flattened and concatenated with the other fields' embeddings for the MLP.

    Args:
        spec: DatasetSpec or its dict.
        config: ModelConfig or its dict (``transformer_layers``, ``transformer_heads``,
            ``use_position``, ``use_time``).

    References:
        Chen et al., Behavior Sequence Transformer for E-commerce Recommendation in
        Alibaba, DLP-KDD 2019.
    """

    def __init__(
        self, spec: DatasetSpec | dict, config: ModelConfig | dict | None = None, **kwargs
    ):
        spec, config = model_spec_and_config(spec, config)
        d, T = config.embedding_dim, spec.max_len + 1
        # ---- layers
        parts = _SequentialParts(spec, config)
        width = parts.item_dim + d * (int(config.use_position) + int(config.use_time))
        transformer = TimeAwareTransformer(
            num_heads=_largest_divisor(width, config.transformer_heads),
            max_positions=T,
            time_clip=spec.time_clip,
            time_embedding_dim=d,
            combine="concat",
            use_position=config.use_position,
            use_time=config.use_time,
            causal=False,
            num_layers=config.transformer_layers,
            dropout=config.dropout,
            layer_norm=True,
            name="transformer",
        )
        output = OutputHead(spec, config)
        # ---- functional model
        inputs = build_inputs(spec)
        ids = with_id_dropout(inputs, spec, config)  # unknown users (training only)
        x = parts(ids)
        sequence = ops.concatenate([x["history"], ops.expand_dims(x["target"], 1)], axis=1)
        refined = transformer(sequence, time_intervals=x["time_intervals"], padding_mask=x["mask"])
        refined = refined * ops.expand_dims(ops.cast(x["mask"], refined.dtype), -1)
        flat = ops.reshape(refined, (-1, T * width))
        probability = output(_concat([flat] + x["others"]), ids)
        super().__init__(inputs=inputs, outputs=probability, **kwargs)
        # ---- config
        self._finish(spec, config)


@keras.saving.register_keras_serializable(package="feseq_tf")
class DMR(BaselineModel):
    """Deep Match to Rank: User-to-Item and Item-to-Item relevance plus the MLP.

    * User-to-Item: positional attention over the history (positions as the query)
      pools a user vector ``u = LeakyReLU(W sum_t alpha_t e_t)``; its relevance to the
      target is ``<u, v'>`` with ``v'`` the target item in a separate output
      embedding table.
    * Item-to-Item: target attention (query: the target item) pools ``u_hat``; the
      relevance is the sum of the attention logits over the real positions.

    MLP input: [u, u_hat, target item, other fields, r_u2i, r_i2i]. The auxiliary
    loss of the paper is omitted (see the module docstring).

    Args:
        spec: DatasetSpec or its dict.
        config: ModelConfig or its dict (``pooling_hidden`` attention units).

    References:
        Lyu et al., Deep Match to Rank Model for Personalized Click-Through Rate
        Prediction, AAAI 2020.
    """

    def __init__(
        self, spec: DatasetSpec | dict, config: ModelConfig | dict | None = None, **kwargs
    ):
        spec, config = model_spec_and_config(spec, config)
        d, L = config.embedding_dim, spec.max_len
        # ---- layers
        parts = _SequentialParts(spec, config)
        output_tables = embedding_tables(parts.behaviour_fields, config, prefix="output_embedding")
        user_attention = PositionalAttention(
            config.pooling_hidden, L, d, name="user_to_item_attention"
        )
        user_vector = keras.layers.Dense(parts.item_dim, name="user_vector")
        user_act = keras.layers.LeakyReLU(name="user_vector_act")
        item_attention = PositionalAttention(
            config.pooling_hidden, L, d, name="item_to_item_attention"
        )
        output = OutputHead(spec, config)
        # ---- functional model
        inputs = build_inputs(spec)
        ids = with_id_dropout(inputs, spec, config)  # unknown users (training only)
        x = parts(ids)
        mask = x["mask"][:, :-1]
        user = user_act(user_vector(user_attention(x["history"], padding_mask=mask)))
        target_out = _concat(
            [output_tables[f.name](ids[f.name]) for f in parts.behaviour_fields]
            + x["target_match"]  # the target matches itself in every compared field
        )
        r_u2i = ops.sum(user * target_out, axis=-1, keepdims=True)
        pooled, logits = item_attention(
            x["history"], padding_mask=mask, query=x["target"], return_logits=True
        )
        r_i2i = ops.sum(logits, axis=-1, keepdims=True)
        features = [user, pooled, x["target"]] + x["others"] + [r_u2i, r_i2i]
        probability = output(_concat(features), ids)
        super().__init__(inputs=inputs, outputs=probability, **kwargs)
        # ---- config
        self._finish(spec, config)


BASELINES: dict[str, type[BaselineModel]] = {
    "deepfm": DeepFM,
    "autoint": AutoInt,
    "dcnv2": DCNv2,
    "din": DIN,
    "bst": BST,
    "dmr": DMR,
}
