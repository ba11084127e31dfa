"""Every Keras layer of the package: FESeq's embeddings, interacting layer, sequence
refiner and pooling, and the baselines' layers; importing it registers all of them
for ``.keras`` loading."""

from feseq_tf.layers.attention import MaskedSelfAttention, scaled_dot_product_attention
from feseq_tf.layers.autoint import AutoIntLayer
from feseq_tf.layers.baseline import DINAttention, FactorizationMachine, PositionalAttention
from feseq_tf.layers.din import Dice, DINActivationUnit
from feseq_tf.layers.embedding import FieldEmbedding, NumericEmbedding
from feseq_tf.layers.id_dropout import IdDropout
from feseq_tf.layers.logistic import LogisticOutput
from feseq_tf.layers.match import HistoryMatch
from feseq_tf.layers.pooling import BilinearAttentionPooling, MeanPooling, TargetPooling
from feseq_tf.layers.sequence import SequenceFeatures
from feseq_tf.layers.transformer import TimeAwareTransformer
from feseq_tf.options import ATTENTION_TYPES, TIME_COMBINE

#: The sequence refiner's ways to combine position/time embeddings (``TIME_COMBINE``).
COMBINE_MODES = TIME_COMBINE

__all__ = [
    "ATTENTION_TYPES",
    "COMBINE_MODES",
    "TIME_COMBINE",
    "AutoIntLayer",
    "BilinearAttentionPooling",
    "DINActivationUnit",
    "DINAttention",
    "Dice",
    "FactorizationMachine",
    "FieldEmbedding",
    "HistoryMatch",
    "IdDropout",
    "LogisticOutput",
    "MaskedSelfAttention",
    "MeanPooling",
    "NumericEmbedding",
    "PositionalAttention",
    "SequenceFeatures",
    "TargetPooling",
    "TimeAwareTransformer",
    "scaled_dot_product_attention",
]
