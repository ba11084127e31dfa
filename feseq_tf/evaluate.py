"""Evaluate a trained model: ``python -m feseq_tf.evaluate --model RUN_DIR|MODEL.keras --dataset DIR``.

Prints and optionally writes exact AUC, gAUC and logloss over a whole split (and the
oracle AUC and captured lift when the dataset carries the true click probability).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING, Any

from feseq_tf import cli

if TYPE_CHECKING:
    from feseq_tf.dataset import PreparedDataset


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m feseq_tf.evaluate", description=__doc__)
    p.add_argument("--model", required=True, help="a training output directory or a .keras file")
    p.add_argument("--dataset", required=True,
                   help="a prepared dataset directory (e.g. data/synthetic)")
    p.add_argument("--split", default="test", choices=("train", "valid", "test"))
    p.add_argument("--batch-size", type=int, default=8192)
    p.add_argument("--output", help="write the metrics as JSON here")
    return p


def load_model(path: str) -> Any:
    """Load a trained model (a training output directory or a ``.keras`` file).

    Args:
        path: str. A training output directory (its ``model.keras`` is read) or a
            ``.keras`` file.

    Returns:
        The Keras model, with the package's layers and models registered for loading.

    Raises:
        FileNotFoundError: there is no model at ``path``.
    """
    if os.path.isdir(path):
        path = os.path.join(path, "model.keras")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"No model at {path}: pass a training output directory or a .keras file."
        )
    import keras

    import feseq_tf.layers  # noqa: F401  (registers the custom layers)
    import feseq_tf.models  # noqa: F401  (registers FESeq and the baselines)

    return keras.saving.load_model(path)


def evaluate_model(
    model: Any,
    dataset_dir: str | PreparedDataset,
    split: str = "test",
    batch_size: int = 8192,
) -> dict[str, float]:
    """Evaluate a trained model on one split of a prepared dataset: the Python API behind
    ``python -m feseq_tf.evaluate``.

    Args:
        model: keras.Model or str. A model, or a training output directory or ``.keras``
            file (:func:`load_model`).
        dataset_dir: str or PreparedDataset. The prepared dataset the model was trained
            on (:class:`feseq_tf.dataset.PreparedDataset`), or its directory.
        split: str. ``"train"``, ``"valid"`` or ``"test"``. Defaults to ``"test"``.
        batch_size: int. Prediction batch size. Defaults to 8192.

    Returns:
        Exact ``auc``, ``gauc`` and ``logloss`` over the whole split (plus ``oracle_auc``
        and ``captured_lift`` when the dataset carries the true click probability).

    Raises:
        ValueError: an unknown split, a batch size below 1, or a model built for another
            dataset.
        FileNotFoundError: no model or no prepared dataset at the given path.
    """
    from feseq_tf.dataset import as_prepared
    from feseq_tf.schema import SPLITS

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    dataset = as_prepared(dataset_dir)  # FileNotFoundError without a dataset_spec.json
    if isinstance(model, (str, os.PathLike)):
        model = load_model(os.fspath(model))
    from feseq_tf import training

    try:  # a model built without feedback reads the dataset without it
        spec = dataset.spec.model_view(getattr(model, "spec", None))
    except ValueError as err:
        raise ValueError(f"{err} Evaluate it on the dataset it was trained on.") from None
    return training.evaluate_split(model, dataset, split, batch_size, spec)


@cli.command
def main(argv: list[str] | None = None) -> dict[str, Any]:
    """The command line: :func:`evaluate_model`, printed (and written with ``--output``)."""
    args = build_parser().parse_args(argv)
    result = evaluate_model(args.model, args.dataset, args.split, args.batch_size)
    print(json.dumps({args.split: result}, indent=2))
    if args.output:
        with open(args.output, "w") as fh:
            json.dump({args.split: result}, fh, indent=2)
    return result


if __name__ == "__main__":
    main()
