"""The command line ``python -m feseq_tf.tune``: arguments, dataset preparation, one-line errors."""

from __future__ import annotations

import argparse
import json
from typing import Any

from feseq_tf import cli, tf_logging, train
from feseq_tf.config import MODEL_NAMES
from feseq_tf.schema import DatasetSpec
from feseq_tf.tune import space as search_space
from feseq_tf.tune.study import DEFAULT_EPOCHS, DEFAULT_OUTPUT_ROOT, tune


def _description() -> str:
    """The ``--help`` text: the package's overview, then the search space."""
    import feseq_tf.tune

    return f"{feseq_tf.tune.__doc__}\n{search_space.__doc__}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m feseq_tf.tune",
        description=_description(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--dataset",
        default="synthetic",
        help="synthetic (default), eleme, bundle, or a prepared dataset directory",
    )
    p.add_argument(
        "--model",
        help=f"model to tune, one of {', '.join(MODEL_NAMES)} "
        "(default: feseq, unless --config names another)",
    )
    p.add_argument(
        "--trials",
        type=int,
        required=True,
        help="finished trials the study should hold (a rerun resumes it)",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=DEFAULT_EPOCHS,
        help=f"maximum epochs per trial (default: {DEFAULT_EPOCHS}); early stopping "
        "uses the preset's patience",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the TPE sampler (default: 0)")
    p.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    p.add_argument("--space", help="JSON file replacing ranges of the search space")
    train.add_config_arguments(p, " of the base config")
    p.add_argument(
        "--output-dir",
        help=f"study, trials and best config (default: {DEFAULT_OUTPUT_ROOT}/<study name>)",
    )
    p.add_argument(
        "--storage",
        help="Optuna storage URL shared by several processes "
        "(default: sqlite:///OUTPUT_DIR/study.db)",
    )
    p.add_argument("--study-name", help="study name (default: <dataset>-<model>)")
    train.add_dataset_arguments(p)
    return p


def _load_space_file(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, json.JSONDecodeError) as err:
        raise train.UsageError(f"--space {path}: {err}") from None


@cli.command
def main(argv: list[str] | None = None) -> dict[str, Any]:
    """The command line: parse, prepare the dataset, :func:`tune`; errors as one line."""
    args = build_parser().parse_args(argv)
    tf_logging.import_tensorflow()  # C++ logs: warnings and errors
    try:
        if args.trials < 1:
            raise train.UsageError(f"--trials must be a positive integer, got {args.trials}.")
        if args.model is not None and args.model not in MODEL_NAMES:
            raise train.UsageError(
                f"--model must be one of {', '.join(MODEL_NAMES)}, got {args.model!r}."
            )
        space = _load_space_file(args.space)
        dataset_name, dataset_dir = train.prepare_dataset(
            args.dataset,
            data_dir=args.data_dir,
            raw_dir=args.raw_dir,
            synthetic_rows=args.synthetic_rows,
            synthetic_seed=args.synthetic_seed,
        )
        base = train.resolve_config(
            dataset_name,
            preset_name=train.preset_for(args.dataset, args.preset),
            config_file=args.config,
            overrides=train.parse_overrides(args.set),
            model_name=args.model,
            spec=DatasetSpec.load(dataset_dir),
        )
        return tune(
            dataset_dir,
            trials=args.trials,
            output_dir=args.output_dir,
            model_name=args.model,
            base_config=base,
            seed=args.seed,
            storage=args.storage,
            study_name=args.study_name,
            epochs=args.epochs,
            timeout=args.timeout,
            space=space,
        )
    except train.UsageError as err:
        raise SystemExit(f"error: {err}") from None
