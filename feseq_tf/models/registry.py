"""Model registry: FESeq, the baselines and logistic regression by name
(``feseq_tf.train --model NAME``)."""

from __future__ import annotations

import keras

from feseq_tf.config import MODEL_NAMES, PAPER_MODEL, ModelConfig, check_paper_architecture
from feseq_tf.models.baselines import BASELINES
from feseq_tf.models.common import SpecModel
from feseq_tf.models.feseq import FESeq
from feseq_tf.models.linear import LogisticRegression
from feseq_tf.schema import DatasetSpec

#: Every model ``build_model`` knows, FESeq first.
MODELS: tuple[str, ...] = MODEL_NAMES

_CLASSES: dict[str, type[SpecModel]] = {
    "feseq": FESeq, PAPER_MODEL: FESeq, **BASELINES, "lr": LogisticRegression,
}


def build_model(
    model_name: str,
    spec: DatasetSpec | dict,
    model_config: ModelConfig | dict | None = None,
    name: str | None = None,
) -> keras.Model:
    """Build model ``model_name`` (one of :data:`MODELS`) for a dataset spec.

    Args:
        model_name: str. ``"feseq"``, ``"feseq_paper"`` (FESeq with every option beyond
            the paper off: a config that turns one on is refused), a baseline (``"deepfm"``, ``"autoint"``,
            ``"dcnv2"``, ``"din"``, ``"bst"``, ``"dmr"``) or ``"lr"`` (logistic
            regression, :class:`~feseq_tf.models.linear.LogisticRegression`).
        spec: DatasetSpec or its dict.
        model_config: ModelConfig or its dict; the baselines read the shared fields
            listed in :mod:`feseq_tf.models.baselines`.
        name: str or None. The Keras model's name. Defaults to ``model_name``.

    Returns:
        An uncompiled functional Keras model on ``build_inputs(model.spec)`` returning
        the float32 click probability [B, 1]; ``model.spec`` is ``spec``, without its
        feedback field when ``use_feedback`` is False.
    """
    if model_name not in MODELS:
        raise ValueError(f"model_name must be one of {MODELS}, got {model_name!r}.")
    if model_name == PAPER_MODEL:
        check_paper_architecture(
            model_config if isinstance(model_config, ModelConfig) else ModelConfig.from_dict(model_config or {})
        )
    return _CLASSES[model_name](spec, model_config, name=name or model_name)
