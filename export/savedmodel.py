"""Export a trained FESeq run as a versioned SavedModel that takes *raw* features.

``python -m export.savedmodel --model RUN_DIR --export-dir D [--name feseq] [--version N]``
writes ``D/<name>/<version>/``, the layout TensorFlow Serving polls, atomically. This
module loads the training run and composes the jobs of the export:

* :mod:`export.raw_encoder`: raw request values -> the model's inputs, in the graph;
* :mod:`export.archive`: the SavedModel, its contract file and the versioned layout;
* :mod:`export.contract`: the signatures, their inputs and example requests.

Their public names are importable from here as well (``from export.savedmodel import
export_run, example_rows, CONTRACT_FILE``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from export.archive import (
    build_export_archive,
    check_name_and_version,
    next_version,
    write_saved_model,
    write_version,
)
from export.contract import (
    ATTENTION_SIGNATURE,
    CONTRACT_FILE,
    CONTRACT_FORMAT_VERSION,
    DEFAULT_MODEL_NAME,
    POOLING_ATTENTION,
    PROBABILITY,
    SERVING_SIGNATURE,
    example_rows,
    history_input_names,
    serving_contract,
    serving_input_signature,
    to_request_row,
)
from export.raw_encoder import KEY_SEPARATOR, VOCABULARY_ASSET, RawFeatureEncoder
from feseq_tf import cli
from feseq_tf.schema import SPEC_FILE, DatasetSpec

__all__ = [
    "ATTENTION_SIGNATURE",
    "CONTRACT_FILE",
    "CONTRACT_FORMAT_VERSION",
    "DEFAULT_MODEL_NAME",
    "KEY_SEPARATOR",
    "POOLING_ATTENTION",
    "PROBABILITY",
    "SERVING_SIGNATURE",
    "VOCABULARY_ASSET",
    "RawFeatureEncoder",
    "build_export_archive",
    "build_parser",
    "example_rows",
    "export_run",
    "history_input_names",
    "load_run",
    "main",
    "next_version",
    "serving_contract",
    "serving_input_signature",
    "to_request_row",
    "write_saved_model",
    "write_version",
]


def load_run(run_dir: str) -> tuple[Any, DatasetSpec]:
    """Load a training run directory: (the Keras model, its dataset spec).

    Raises:
        FileNotFoundError: when ``model.keras``, ``dataset_spec.json`` or ``vocab/`` is
            missing.
        ValueError: when the model and the spec disagree.
    """
    model_path = os.path.join(run_dir, "model.keras")
    for path in (model_path, os.path.join(run_dir, SPEC_FILE)):
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{path} does not exist: --model must be a training run directory "
                "(python -m feseq_tf.train --output-dir RUN) holding model.keras, "
                f"{SPEC_FILE} and vocab/."
            )
    import keras

    import feseq_tf.layers  # noqa: F401  (registers the custom layers)
    import feseq_tf.models  # noqa: F401  (registers FESeq and the baselines)

    spec = DatasetSpec.load(run_dir)
    model = keras.saving.load_model(model_path, compile=False)
    try:  # a model built without feedback serves without the feedback input
        spec = spec.model_view(getattr(model, "spec", None))
    except ValueError as err:
        raise ValueError(f"{model_path} does not match its run directory: {err}") from None
    return model, spec


def export_run(
    run_dir: str,
    export_dir: str,
    *,
    name: str = DEFAULT_MODEL_NAME,
    version: int | None = None,
) -> str:
    """Export a training run as ``<export_dir>/<name>/<version>/``, atomically.

    The SavedModel is written into a hidden temporary directory under
    ``<export_dir>/<name>/`` (TensorFlow Serving ignores non-numeric names) and renamed
    to its version number when complete (:func:`export.archive.write_version`).

    Args:
        run_dir: str. Training output directory (``model.keras``, ``dataset_spec.json``,
            ``vocab/``).
        export_dir, name, version: as :func:`export.archive.write_version`; ``name``
            defaults to ``"feseq"``, ``version`` to the next free number.

    Returns:
        The path of the written version directory.

    Raises:
        ValueError: on a bad name or version number, or a model that does not match
            its run directory.
        FileNotFoundError: when the run directory lacks its files (:func:`load_run`).
        FileExistsError: when that version already exists (versions are immutable).
    """
    check_name_and_version(name, version)
    vocab_dir = os.path.join(run_dir, "vocab")
    model, spec = load_run(run_dir)
    return write_version(
        export_dir,
        name,
        version,
        lambda path: write_saved_model(model, spec, vocab_dir, path, model_name=name),
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m export.savedmodel",
        description="Export a trained FESeq run as a versioned SavedModel for TF Serving "
        "(raw-feature signatures serving_default and attention).",
    )
    p.add_argument("--model", required=True, help="training run directory (holds model.keras)")
    p.add_argument(
        "--export-dir",
        required=True,
        help="root of the exported models; writes EXPORT_DIR/NAME/VERSION/",
    )
    p.add_argument("--name", default=DEFAULT_MODEL_NAME, help="model name (default: feseq)")
    p.add_argument(
        "--version", type=int, help="version number (default: one more than the largest existing)"
    )
    return p


@cli.command
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        path = export_run(args.model, args.export_dir, name=args.name, version=args.version)
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        print(cli.error_line(err), file=sys.stderr)
        return 2
    print(
        f"exported {args.model} as {path} (signatures: {SERVING_SIGNATURE}, {ATTENTION_SIGNATURE})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
