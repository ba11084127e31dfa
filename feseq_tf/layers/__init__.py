"""FESeq layers: embeddings, interacting layer, sequence refiner and pooling."""

from feseq_tf.layers.attention import MaskedSelfAttention
from feseq_tf.layers.autoint import AutoIntLayer
from feseq_tf.layers.embedding import FieldEmbedding, NumericEmbedding
from feseq_tf.layers.match import HistoryMatch
from feseq_tf.layers.pooling import (
    ATTENTION_TYPES,
    BilinearAttentionPooling,
    Dice,
    MeanPooling,
    TargetPooling,
)
from feseq_tf.layers.transformer import COMBINE_MODES, TimeAwareTransformer

__all__ = [
    "ATTENTION_TYPES",
    "COMBINE_MODES",
    "AutoIntLayer",
    "BilinearAttentionPooling",
    "Dice",
    "FieldEmbedding",
    "HistoryMatch",
    "MaskedSelfAttention",
    "MeanPooling",
    "NumericEmbedding",
    "TargetPooling",
    "TimeAwareTransformer",
]
