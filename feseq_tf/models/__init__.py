"""Model builders: FESeq, the baseline models and logistic regression (their layers
live in :mod:`feseq_tf.layers`); importing the package registers all of them, and the
optimizer training compiles them with (:class:`feseq_tf.optimizers.DeduplicatedAdam`), for
``.keras`` loading."""

from feseq_tf.models.baselines import BST, DIN, DMR, AutoInt, DCNv2, DeepFM
from feseq_tf.models.common import build_inputs
from feseq_tf.models.feseq import FESeq
from feseq_tf.models.linear import LogisticRegression
from feseq_tf.models.registry import MODELS, build_model
from feseq_tf.optimizers import DeduplicatedAdam  # noqa: F401  (registered for loading)

__all__ = [
    "AutoInt",
    "BST",
    "DCNv2",
    "DeepFM",
    "DIN",
    "DMR",
    "FESeq",
    "LogisticRegression",
    "MODELS",
    "build_inputs",
    "build_model",
]
