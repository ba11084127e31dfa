"""Registered names of every layer and model: `.keras` files find classes by them."""

from __future__ import annotations

import inspect

import keras
import pytest

import feseq_tf.layers
import feseq_tf.models

# As registered before the layers moved under feseq_tf.layers; a `.keras` file saved
# by any earlier version names its classes this way, so none of these may change.
SAVED_NAMES = {
    "AutoIntLayer": "feseq_tf>AutoIntLayer",
    "BilinearAttentionPooling": "feseq_tf>BilinearAttentionPooling",
    "DINAttention": "feseq_tf>DINAttention",
    "Dice": "feseq_tf>Dice",
    "FactorizationMachine": "feseq_tf>FactorizationMachine",
    "FieldEmbedding": "feseq_tf>FieldEmbedding",
    "HistoryMatch": "feseq_tf>HistoryMatch",
    "LogisticOutput": "feseq_tf>LogisticOutput",
    "MaskedSelfAttention": "feseq_tf>MaskedSelfAttention",
    "MeanPooling": "feseq_tf>MeanPooling",
    "NumericEmbedding": "feseq_tf>NumericEmbedding",
    "PositionalAttention": "feseq_tf>PositionalAttention",
    "SequenceFeatures": "feseq_tf>SequenceFeatures",
    "TargetPooling": "feseq_tf>TargetPooling",
    "TimeAwareTransformer": "feseq_tf>TimeAwareTransformer",
}
SAVED_MODEL_NAMES = {
    name: f"feseq_tf>{name}"
    for name in ("FESeq", "LogisticRegression", "DeepFM", "AutoInt", "DCNv2", "DIN", "BST", "DMR")
}
# Layers added since; registered the same way.
NEW_NAMES = {"DINActivationUnit": "feseq_tf>DINActivationUnit", "IdDropout": "feseq_tf>IdDropout"}


def _public_layer_classes() -> dict[str, type]:
    return {
        name: obj
        for name, obj in vars(feseq_tf.layers).items()
        if inspect.isclass(obj) and issubclass(obj, keras.layers.Layer)
    }


@pytest.mark.parametrize(
    "module, names",
    [(feseq_tf.layers, {**SAVED_NAMES, **NEW_NAMES}), (feseq_tf.models, SAVED_MODEL_NAMES)],
    ids=["layers", "models"],
)
def test_registered_names_are_unchanged(module, names):
    for class_name, registered in names.items():
        cls = getattr(module, class_name)
        assert keras.saving.get_registered_name(cls) == registered
        assert keras.saving.get_registered_object(registered) is cls


def test_every_layer_lives_in_feseq_tf_layers_and_is_listed():
    classes = _public_layer_classes()
    assert set(classes) == set(SAVED_NAMES) | set(NEW_NAMES)
    for cls in classes.values():
        assert cls.__module__.startswith("feseq_tf.layers."), cls
    # feseq_tf.models holds model builders only.
    for module in (
        feseq_tf.models.baselines,
        feseq_tf.models.common,
        feseq_tf.models.feseq,
        feseq_tf.models.linear,
        feseq_tf.models.registry,
    ):
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and obj.__module__ == module.__name__:
                is_layer = issubclass(obj, keras.layers.Layer)
                assert not is_layer or issubclass(obj, keras.Model), f"{module.__name__}.{name}"
