"""Write raw-feature SavedModels and their versions in TensorFlow Serving's layout.

:func:`write_saved_model` writes one SavedModel: the trained model behind the raw
encoder (:class:`export.raw_encoder.RawFeatureEncoder`), with the signatures of
:mod:`export.contract`, the contract file and TF Serving's warm-up requests
(:mod:`export.warmup`) beside it. It uses Keras' export API
(:class:`keras.export.ExportArchive`), so that session-based loaders
(``saved_model_cli run``, TensorFlow Serving) restore its variables; a Keras 3 model
saved with plain ``tf.saved_model.save`` does not load there.

:func:`write_version` lays versions out as ``<export_dir>/<name>/<version>/``, the
layout TensorFlow Serving polls (a numbered directory per version under the model's
base path; ``export/serving/models.config`` names the base paths). A version is written
into a hidden temporary directory next to it and renamed into place when complete, so
a server never sees a half-written version; versions are immutable.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from export.contract import (
    ATTENTION_SIGNATURE,
    CONTRACT_FILE,
    DEFAULT_MODEL_NAME,
    POOLING_ATTENTION,
    PROBABILITY,
    SERVING_SIGNATURE,
    serving_contract,
    serving_input_signature,
)
from export.raw_encoder import RawFeatureEncoder
from export.warmup import warmup_logs, write_warmup_file
from feseq_tf import raw_format
from feseq_tf.schema import DatasetSpec

_MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def build_export_archive(model: Any, spec: DatasetSpec, vocab_dir: str) -> Any:
    """A :class:`keras.export.ExportArchive` with the two raw-feature signatures.

    Args:
        model: the trained FESeq Keras model (inputs as :func:`build_inputs`).
        spec: DatasetSpec the model was trained with.
        vocab_dir: str. Directory of the vocabulary files ``<field>.txt``.

    Returns:
        The archive, ready for ``write_out``.
    """
    import keras

    missing = sorted(set(spec.model_input_names()) - set(_model_input_names(model)))
    if missing:
        raise ValueError(
            f"The model does not take the inputs {missing} of its dataset spec: "
            "export a model built with feseq_tf.models.feseq.build_inputs(spec)."
        )
    encoder = RawFeatureEncoder(spec, vocab_dir)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(encoder)
    signature = [serving_input_signature(spec)]

    def serve(raw: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        probability = model(encoder(raw), training=False)
        return {PROBABILITY: tf.reshape(tf.cast(probability, tf.float32), [-1])}

    archive.add_endpoint(SERVING_SIGNATURE, serve, input_signature=signature)

    explainer = model.attention_model() if hasattr(model, "attention_model") else None
    if explainer is not None and POOLING_ATTENTION in explainer.output:

        def attention(raw: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
            outputs = explainer(encoder(raw), training=False)
            return {
                PROBABILITY: tf.reshape(tf.cast(outputs[PROBABILITY], tf.float32), [-1]),
                POOLING_ATTENTION: tf.cast(outputs[POOLING_ATTENTION], tf.float32),
            }

        archive.add_endpoint(ATTENTION_SIGNATURE, attention, input_signature=signature)
    return archive


def _model_input_names(model: Any) -> list[str]:
    inputs = model.input
    if isinstance(inputs, Mapping):
        return list(inputs)
    return [t.name for t in (inputs if isinstance(inputs, (list, tuple)) else [inputs])]


def write_saved_model(
    model: Any,
    spec: DatasetSpec,
    vocab_dir: str,
    path: str,
    *,
    model_name: str = DEFAULT_MODEL_NAME,
) -> str:
    """Write the raw-feature SavedModel of ``model`` to ``path`` (not versioned).

    Besides the SavedModel it writes ``assets.extra/feseq_serving.json``: the serving
    contract (inputs, history format, max_len, an example request) for humans and
    clients, and ``assets.extra/tf_serving_warmup_requests``: the requests TF Serving
    replays when it loads the version (:mod:`export.warmup`). :func:`write_version` writes it as a version, atomically (as
    :func:`export.savedmodel.export_run` does).

    Returns:
        ``path``.
    """
    archive = build_export_archive(model, spec, vocab_dir)
    archive.write_out(path, verbose=False)
    vocabularies = {
        f.name: raw_format.read_vocabulary(os.path.join(vocab_dir, f"{f.name}.txt"))
        for f in spec.fields
        if f.is_categorical and not f.is_hashed
    }
    contract = serving_contract(
        spec,
        model_name=model_name,
        vocabularies=vocabularies,
        attention=hasattr(model, "attention_model"),
    )
    os.makedirs(os.path.join(path, os.path.dirname(CONTRACT_FILE)), exist_ok=True)
    with open(os.path.join(path, CONTRACT_FILE), "w") as fh:
        json.dump(contract, fh, indent=2)
    write_warmup_file(path, warmup_logs(spec, vocabularies, model_name=model_name))
    return path


def next_version(base_path: str) -> int:
    """One more than the largest numeric version directory under ``base_path`` (1 if none)."""
    versions = (
        [int(d) for d in os.listdir(base_path) if d.isdigit()] if os.path.isdir(base_path) else []
    )
    return max(versions, default=0) + 1


def check_name_and_version(name: str, version: int | None) -> None:
    """Raise ValueError unless ``name`` is a model name (letters, digits, ``_.-``, not
    starting with a separator) and ``version`` None or an integer >= 1."""
    if not isinstance(name, str) or not _MODEL_NAME_PATTERN.match(name):
        raise ValueError(
            f"name must be letters, digits, '_', '.' or '-' (not starting with a "
            f"separator), got {name!r}."
        )
    if version is not None and (
        not isinstance(version, (int, np.integer)) or isinstance(version, bool) or version < 1
    ):
        raise ValueError(f"version must be an integer >= 1, got {version!r}.")


def write_version(
    export_dir: str,
    name: str,
    version: int | None,
    write: Callable[[str], Any],
) -> str:
    """Write ``<export_dir>/<name>/<version>/`` atomically with ``write(path)``.

    ``write`` fills a hidden temporary directory under ``<export_dir>/<name>/``
    (TensorFlow Serving ignores non-numeric names), which is renamed to its version
    number when complete; on any error it is removed.

    Args:
        export_dir: str. Root of the exported models (TF Serving's ``/models``).
        name: str. Model name (the base path is ``<export_dir>/<name>``).
        version: int or None. Version number; None takes one more than the largest
            existing version (1 for the first export).
        write: callable. Writes the version's files into the directory it is given.

    Returns:
        The path of the written version directory.

    Raises:
        ValueError: on a bad name or version number.
        FileExistsError: when that version already exists (versions are immutable).
    """
    check_name_and_version(name, version)
    base = os.path.join(export_dir, name)
    os.makedirs(base, exist_ok=True)
    version = int(version) if version is not None else next_version(base)
    final = os.path.join(base, str(version))
    if os.path.exists(final):
        raise FileExistsError(
            f"{final} already exists: versions are immutable, export a new version "
            "(omit --version to take the next number)."
        )
    tmp = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=base)
    try:
        write(tmp)
        _make_readable(tmp)
        if os.path.exists(final):
            raise FileExistsError(f"{final} was created by another export meanwhile.")
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _make_readable(root: str) -> None:
    """``mkdtemp`` creates a private directory; a model server may run as another user."""
    for directory, _, files in os.walk(root):
        os.chmod(directory, 0o755)
        for f in files:
            os.chmod(os.path.join(directory, f), 0o644)
