"""FESeq click-through-rate models in TensorFlow / Keras 3: the names a user builds, trains,
evaluates and exports with.

``import feseq_tf`` is cheap: it imports neither TensorFlow nor the package's modules.
Each name below is imported from its module on first use (:func:`__getattr__`), so that
``feseq_tf.ModelConfig`` costs what :mod:`feseq_tf.config` costs and only the layers,
models, training and export load TensorFlow.

Example:

```python
import feseq_tf

spec = feseq_tf.DatasetSpec.load("data/synthetic")
model = feseq_tf.build_model("feseq", spec, feseq_tf.preset("synthetic").model)
metrics = feseq_tf.run(feseq_tf.recipe_for(spec), "data/synthetic", "runs/feseq")
```

Three functions are offered under names of their own because their module names are
taken: ``feseq_tf.recipe`` and ``feseq_tf.evaluate`` stay the modules (``from feseq_tf
import evaluate`` keeps meaning the module), so the data-sized recipe
(:func:`feseq_tf.recipe.recipe`) is :func:`recipe_for` and evaluation is
:func:`evaluate_model`. :func:`export_run` lives in the export job
(:mod:`export.savedmodel`); it is offered here on first use, so the library core still
imports no export code.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from typing import TYPE_CHECKING, Any

if sys.argv[:1] == ["-m"]:  # `python -m` is locating a module: maybe one of our command lines
    from feseq_tf import cli as _cli

    _cli.quiet_command_line()  # drops TensorFlow's start-up noise from the first import on

if TYPE_CHECKING:  # the names for type checkers and editors; at run time see _LAZY
    from export.savedmodel import export_run
    from feseq_tf.config import PRESETS, ExperimentConfig, ModelConfig, TrainConfig, preset
    from feseq_tf.evaluate import evaluate_model, load_model
    from feseq_tf.layers import (
        AutoIntLayer,
        BilinearAttentionPooling,
        Dice,
        DINActivationUnit,
        DINAttention,
        FactorizationMachine,
        FieldEmbedding,
        HistoryMatch,
        IdDropout,
        LogisticOutput,
        MaskedSelfAttention,
        MeanPooling,
        NumericEmbedding,
        PositionalAttention,
        SequenceFeatures,
        TargetPooling,
        TimeAwareTransformer,
    )
    from feseq_tf.models import MODELS, FESeq, build_model
    from feseq_tf.recipe import recipe as recipe_for
    from feseq_tf.schema import DatasetSpec
    from feseq_tf.train import run

_DISTRIBUTION = "feseq-tf"

#: Public name -> the module that defines it (imported on first use), and the name there
#: where it differs.
_RENAMED: dict[str, str] = {"recipe_for": "recipe"}
_LAZY: dict[str, str] = {
    # Configuration (no TensorFlow).
    "ExperimentConfig": "feseq_tf.config",
    "ModelConfig": "feseq_tf.config",
    "TrainConfig": "feseq_tf.config",
    "PRESETS": "feseq_tf.config",
    "preset": "feseq_tf.config",
    "recipe_for": "feseq_tf.recipe",
    "DatasetSpec": "feseq_tf.schema",
    # Models.
    "FESeq": "feseq_tf.models",
    "MODELS": "feseq_tf.models",
    "build_model": "feseq_tf.models",
    # Layers.
    "AutoIntLayer": "feseq_tf.layers",
    "BilinearAttentionPooling": "feseq_tf.layers",
    "DINActivationUnit": "feseq_tf.layers",
    "DINAttention": "feseq_tf.layers",
    "Dice": "feseq_tf.layers",
    "FactorizationMachine": "feseq_tf.layers",
    "FieldEmbedding": "feseq_tf.layers",
    "HistoryMatch": "feseq_tf.layers",
    "IdDropout": "feseq_tf.layers",
    "LogisticOutput": "feseq_tf.layers",
    "MaskedSelfAttention": "feseq_tf.layers",
    "MeanPooling": "feseq_tf.layers",
    "NumericEmbedding": "feseq_tf.layers",
    "PositionalAttention": "feseq_tf.layers",
    "SequenceFeatures": "feseq_tf.layers",
    "TargetPooling": "feseq_tf.layers",
    "TimeAwareTransformer": "feseq_tf.layers",
    # Training, evaluation, export.
    "run": "feseq_tf.train",
    "evaluate_model": "feseq_tf.evaluate",
    "load_model": "feseq_tf.evaluate",
    "export_run": "export.savedmodel",
}

__all__ = [
    "MODELS",
    "PRESETS",
    "AutoIntLayer",
    "BilinearAttentionPooling",
    "DINActivationUnit",
    "DINAttention",
    "DatasetSpec",
    "Dice",
    "ExperimentConfig",
    "FESeq",
    "FactorizationMachine",
    "FieldEmbedding",
    "HistoryMatch",
    "IdDropout",
    "LogisticOutput",
    "MaskedSelfAttention",
    "MeanPooling",
    "ModelConfig",
    "NumericEmbedding",
    "PositionalAttention",
    "SequenceFeatures",
    "TargetPooling",
    "TimeAwareTransformer",
    "TrainConfig",
    "__version__",
    "build_model",
    "evaluate_model",
    "export_run",
    "load_model",
    "preset",
    "recipe_for",
    "run",
]


def _source_tree_version() -> str | None:
    """The version in ``pyproject.toml`` when the package runs from its source checkout.

    An editable install's metadata keeps the version it was installed with; the
    checkout's ``pyproject.toml`` is the truth there. A wheel has no such file beside it.
    """
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyproject.toml")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError:
        return None
    project = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    if not project or not re.search(rf'^name\s*=\s*"{_DISTRIBUTION}"', project.group(1), re.M):
        return None
    version = re.search(r'^version\s*=\s*"([^"]+)"', project.group(1), re.M)
    return version.group(1) if version else None


def _version() -> str:
    """The package version: the source checkout's, else the installed distribution's."""
    version = _source_tree_version()
    if version is not None:
        return version
    from importlib import metadata

    try:
        return metadata.version(_DISTRIBUTION)
    except metadata.PackageNotFoundError:  # neither installed nor a checkout
        return "0+unknown"


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use (PEP 562) and keep it."""
    if name == "__version__":
        value = _version()
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), _RENAMED.get(name, name))
    else:
        raise AttributeError(f"module 'feseq_tf' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
