"""Evaluate a trained model: ``python -m feseq_tf.evaluate --model RUN_DIR|MODEL.keras --dataset DIR``.

Prints and optionally writes exact AUC, gAUC and logloss over a whole split (and the
oracle AUC and captured lift when the dataset carries the true click probability).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from feseq_tf import tf_logging


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m feseq_tf.evaluate", description=__doc__)
    p.add_argument("--model", required=True, help="a training output directory or a .keras file")
    p.add_argument("--dataset", required=True,
                   help="a prepared dataset directory (e.g. data/synthetic)")
    p.add_argument("--split", default="test", choices=("train", "valid", "test"))
    p.add_argument("--batch-size", type=int, default=8192)
    p.add_argument("--output", help="write the metrics as JSON here")
    return p


def load_model(path: str):
    import keras

    import feseq_tf.layers  # noqa: F401  (registers the custom layers)
    import feseq_tf.models  # noqa: F401  (registers FESeq and the baselines)

    if os.path.isdir(path):
        path = os.path.join(path, "model.keras")
    if not os.path.exists(path):
        raise SystemExit(f"No model at {path}: pass a training output directory or a .keras file.")
    return keras.saving.load_model(path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    tf_logging.import_tensorflow()  # C++ logs: warnings and errors
    from feseq_tf import training
    from feseq_tf.schema import DatasetSpec

    spec = DatasetSpec.load(args.dataset)
    model = load_model(args.model)
    try:  # a model built without feedback reads the dataset without it
        spec = spec.model_view(getattr(model, "spec", None))
    except ValueError as err:
        raise SystemExit(f"error: {err} Evaluate it on the dataset it was trained on.") from None
    result = training.evaluate_split(model, args.dataset, args.split, args.batch_size, spec)
    print(json.dumps({args.split: result}, indent=2))
    if args.output:
        with open(args.output, "w") as fh:
            json.dump({args.split: result}, fh, indent=2)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
