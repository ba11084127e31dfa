"""Train FESeq: ``python -m feseq_tf.train [--dataset synthetic|eleme|bundle|DIR] ...``.

``--model NAME`` trains a baseline instead (deepfm, autoint, dcnv2, din, bst, dmr; see
``feseq_tf.models.baselines``) with the same data, config and outputs; the attention
heatmaps are FESeq's only, and a baseline's SavedModel has only ``serving_default``.

With no ``--dataset`` it trains on the built-in synthetic dataset (generated on first
use into ``--data-dir``), evaluates on the test split with exact AUC / gAUC / logloss
and the captured share of the oracle's AUC lift, and writes into ``--output-dir``:
``metrics.json``, ``config.json`` (the resolved config), ``model.keras`` (best
weights), ``dataset_spec.json``, ``vocab/``, TensorBoard logs under ``logs/`` (scalars
and the attention heatmaps) and a versioned SavedModel for TF Serving under ``export/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import tempfile
import time
from typing import Any

from feseq_tf import cli, tf_logging
from feseq_tf.config import (
    AUTO_ID_DROPOUT,
    LINEAR_MODEL,
    LINEAR_TRAINING,
    MODEL_NAMES,
    PAPER_ARCHITECTURE,
    PAPER_MODEL,
    ExperimentConfig,
    ModelConfig,
    load_config_file,
    preset,
)
from feseq_tf.dataset import PreparedDataset, as_prepared
from feseq_tf.schema import SPEC_FILE, DatasetSpec

DEFAULT_DATA_DIR = "data"
DEFAULT_OUTPUT_DIR = os.path.join("runs", "feseq")
NAMED_DATASETS = ("synthetic", "eleme", "bundle")

ELEME_HELP = """\
The Ele.me data is Tianchi dataset 131047 (https://tianchi.aliyun.com/dataset/131047,
free, behind a Tianchi login). Download the day files (D1_0.csv, D3_1.csv, D5_0.csv, ...),
put them in one directory and run
    python -m feseq_tf.train --dataset eleme --raw-dir THAT_DIRECTORY
(or prepare once with `python -m pipelines.eleme --raw-dir THAT_DIRECTORY --out {out}`)."""


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m feseq_tf.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="synthetic",
                   help="synthetic (default), eleme, bundle, or a prepared dataset directory")
    p.add_argument("--model", choices=MODEL_NAMES,
                   help="model to train: feseq (default, unless --config names another) "
                        "or a baseline (lr: logistic regression)")
    add_config_arguments(p)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--jit", dest="jit", action="store_const", const="on",
                   help="compile with XLA (default on GPU)")
    p.add_argument("--no-jit", dest="jit", action="store_const", const="off",
                   help="do not compile with XLA")
    p.add_argument("--mixed-precision", choices=("off", "bfloat16", "float16", "auto"))
    p.add_argument("--strategy", choices=("auto", "default", "mirrored", "multi_worker"),
                   help="tf.distribute strategy (default auto: several workers when TF_CONFIG "
                        "names a cluster, mirrored over several GPUs, else one device)")
    p.add_argument("--scale-learning-rate", dest="scale_learning_rate", action="store_const",
                   const=True, help="multiply the learning rate by the number of replicas")
    p.add_argument("--seed", type=int)
    p.add_argument("--deterministic", action="store_true",
                   help="enable TensorFlow op determinism (bit-identical reruns; slower)")
    p.add_argument("--output-dir", default=DEFAULT_OUTPUT_DIR)
    add_dataset_arguments(p)
    p.add_argument("--no-attention-summaries", dest="attention_summaries", action="store_false",
                   help="do not write attention heatmaps for TensorBoard (logs/attention)")
    p.add_argument("--attention-every", type=int, default=1, metavar="N",
                   help="write the attention heatmaps every N epochs (default: 1)")
    p.add_argument("--export-dir", help="where to write the SavedModel for TF Serving "
                   "(default: OUTPUT_DIR/export; the model lands in <dir>/<model>/<version>, "
                   "<model> being feseq or the baseline's name)")
    p.add_argument("--no-export", action="store_true", help="skip the SavedModel export")
    p.add_argument("--warm-start", metavar="RUN_DIR",
                   help="start from this finished run's weights; the dataset must extend its "
                   "data (pipelines.generic --extend). Trains one epoch with the embeddings "
                   "kept unless --epochs/--set say otherwise; with --export-dir BASE the "
                   "export is the next version under BASE")
    p.add_argument("--overwrite", action="store_true",
                   help="start from scratch even if --output-dir holds an interrupted run")
    return p


def add_config_arguments(p: argparse.ArgumentParser, runs: str = "") -> None:
    """``--preset``, ``--config`` and ``--set`` as :func:`resolve_config` reads them.

    ``runs`` ends each help text (e.g. ``" of every run"`` for a command that trains many).
    """
    p.add_argument("--preset", help=f"config preset{runs}: eleme, bundle, synthetic or auto "
                   "(default: the dataset's own, else auto, the recipe sized from the data)")
    p.add_argument("--config", help=f"JSON/YAML file with 'model'/'train' overrides of the preset{runs}")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override one config value{runs}, e.g. --set model.pooling=mean (repeatable)")


def add_dataset_arguments(p: argparse.ArgumentParser) -> None:
    """``--data-dir``, ``--raw-dir``, ``--synthetic-rows``, ``--synthetic-seed``: what
    :func:`prepare_dataset` takes besides the dataset argument."""
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                   help="where named datasets are prepared (default: ./data)")
    p.add_argument("--raw-dir", help="raw Ele.me/Bundle files, prepared on first use")
    p.add_argument("--synthetic-rows", type=int,
                   help="rows of the synthetic dataset (default: the generator's default)")
    p.add_argument("--synthetic-seed", type=int,
                   help="seed of the synthetic data generator (default: the generator's, "
                        "independent of --seed)")


class UsageError(ValueError):
    """A dataset or configuration the run cannot use; the message says what to do."""


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``["model.pooling=mean", ...]`` -> ``{"model": {"pooling": "mean"}, "train": {}}``.

    Values are read as JSON where they parse (numbers, booleans, lists), else as strings.
    """
    overrides: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
    for item in items:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise UsageError(
                f"--set expects SECTION.KEY=VALUE (e.g. model.pooling=mean), got {item!r}"
            )
        key, value = item.split("=", 1)
        section, field = key.split(".", 1)
        if section not in overrides:
            raise UsageError(f"--set: section must be 'model' or 'train', got {section!r}")
        overrides[section][field] = _parse_value(value)
    return overrides


AUTO_PRESET = "auto"


def default_preset(dataset_name: str) -> str:
    """The preset a dataset trains with when none is named: a named dataset's own, else
    ``"auto"`` (:func:`feseq_tf.recipe.recipe`, sized from the data)."""
    return dataset_name if dataset_name in NAMED_DATASETS else AUTO_PRESET


def preset_for(dataset: str, preset_name: str | None = None) -> str:
    """The preset of a run given ``--dataset`` as the user typed it: ``preset_name`` if
    given, a named dataset's own (``eleme``, ``bundle``, ``synthetic``), and ``"auto"``
    for a dataset directory, whatever its spec's name (a synthetic regime prepared into
    a directory is data of its own size)."""
    return preset_name or (dataset if dataset in NAMED_DATASETS else AUTO_PRESET)


def resolve_config(
    dataset_name: str,
    *,
    preset_name: str | None = None,
    config_file: str | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    model_name: str | None = None,
    spec: DatasetSpec | None = None,
) -> ExperimentConfig:
    """The run's configuration: preset, then the config file, then ``overrides``.

    Args:
        dataset_name: str. The dataset's name (a named dataset picks its own preset).
        preset_name: str or None. Preset to start from. Defaults to
            :func:`default_preset` of the dataset.
        config_file: str or None. JSON/YAML file with ``model``/``train`` sections.
        overrides: dict or None. ``{"model": {...}, "train": {...}}`` applied last.
        model_name: str or None. The model to train (FESeq or a baseline); None keeps
            the preset's or the config file's.
        spec: DatasetSpec or None. The prepared dataset; needed by the ``"auto"``
            preset (the default for datasets without a preset of their own).

    Raises:
        UsageError: unknown keys or invalid values (the message names them).
    """
    try:
        name = preset_name or default_preset(dataset_name)
        if name == AUTO_PRESET:
            if spec is None:
                raise UsageError(
                    f"the {AUTO_PRESET!r} preset sizes the recipe from the data: pass the "
                    "dataset's spec, or name another preset"
                )
            from feseq_tf.recipe import recipe

            cfg = recipe(spec)
        else:
            cfg = preset(name)
        if config_file:
            cfg = cfg.override(load_config_file(config_file))
        top: dict[str, Any] = {"dataset": dataset_name}
        if model_name:
            top["model_name"] = model_name
        if top.get("model_name", cfg.model_name) == PAPER_MODEL:  # the paper's architecture,
            cfg = cfg.override({"model": PAPER_ARCHITECTURE, **top})  # then the user's settings
        elif top.get("model_name", cfg.model_name) == LINEAR_MODEL:  # the linear model's steps
            cfg = cfg.override({"train": LINEAR_TRAINING, **top})
        return cfg.override({**(overrides or {}), **top})
    except (TypeError, ValueError, FileNotFoundError) as err:
        raise UsageError(f"invalid configuration: {err}") from err


def warm_start_config(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Overrides with the warm-start recipe under them: one epoch, the embeddings kept
    (:data:`feseq_tf.warm_start.WARM_START_TRAINING`); ``overrides``' own values win.

    Pass the result as ``resolve_config(..., overrides=...)``.
    """
    from feseq_tf.warm_start import WARM_START_TRAINING

    overrides = dict(overrides or {})
    return {**overrides, "model": dict(overrides.get("model", {})),
            "train": {**WARM_START_TRAINING, **overrides.get("train", {})}}


def _config_from_args(
    args: argparse.Namespace, dataset_name: str, spec: DatasetSpec
) -> ExperimentConfig:
    overrides = parse_overrides(args.set)
    flag_map = {
        "epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
        "jit_compile": args.jit, "mixed_precision": args.mixed_precision, "seed": args.seed,
        "strategy": args.strategy, "scale_learning_rate": args.scale_learning_rate,
    }
    overrides["train"].update({k: v for k, v in flag_map.items() if v is not None})
    if args.warm_start:
        overrides = warm_start_config(overrides)
    return resolve_config(
        dataset_name, preset_name=preset_for(args.dataset, args.preset),
        config_file=args.config, overrides=overrides,
        model_name=args.model, spec=spec,
    )


def prepare_dataset(
    dataset: str = "synthetic",
    *,
    data_dir: str = DEFAULT_DATA_DIR,
    raw_dir: str | None = None,
    synthetic_rows: int | None = None,
    synthetic_seed: int | None = None,
) -> tuple[str, str]:
    """Return (dataset name, prepared directory), preparing named datasets on first use.

    Args:
        dataset: str. ``"synthetic"``, ``"eleme"``, ``"bundle"`` or a prepared dataset
            directory (one holding ``dataset_spec.json``).
        data_dir: str. Where named datasets are prepared (``<data_dir>/<name>``).
        raw_dir: str or None. Raw Ele.me/Bundle files, prepared on first use.
        synthetic_rows: int or None. Rows of the synthetic data (generator default).
        synthetic_seed: int or None. Seed of the synthetic generator (its default).

    Raises:
        UsageError: the dataset is missing or was prepared with other settings.
    """
    ds = dataset
    if ds not in NAMED_DATASETS:
        if not os.path.exists(os.path.join(ds, SPEC_FILE)):
            raise UsageError(
                f"--dataset {ds!r} is neither one of {NAMED_DATASETS} nor a prepared dataset "
                f"directory (no {SPEC_FILE} in it)."
            )
        return DatasetSpec.load(ds).name, ds
    out = os.path.join(data_dir, ds)
    if os.path.exists(os.path.join(out, SPEC_FILE)):
        if ds == "synthetic":
            from pipelines.synthetic import TIME_UNIT_MINUTES

            prepared = DatasetSpec.load(out)
            made = prepared.extra.get("generator", {})
            asked = {"num_rows": synthetic_rows, "seed": synthetic_seed}
            differ = {k: v for k, v in asked.items() if v is not None and made.get(k) != v}
            if differ:
                raise UsageError(
                    f"{out} holds synthetic data with {made.get('num_rows')} rows and seed "
                    f"{made.get('seed')}, not {differ}: pass another --data-dir or delete it."
                )
            if prepared.time_unit != TIME_UNIT_MINUTES:
                raise UsageError(
                    f"{out} was prepared with time intervals in units of {prepared.time_unit:g} "
                    f"minutes, not the current {TIME_UNIT_MINUTES:g}: delete it to regenerate "
                    f"it, or train on it as it is with --dataset {out}."
                )
        return ds, out
    if ds == "synthetic":
        from pipelines import synthetic

        rows = synthetic_rows or synthetic.DEFAULT_NUM_ROWS
        print(f"generating the synthetic dataset ({rows} rows) into {out}", flush=True)
        seed = synthetic_seed if synthetic_seed is not None else synthetic.DEFAULT_SEED
        synthetic.make_synthetic_dataset(out, num_rows=rows, seed=seed)
        return ds, out
    if ds == "eleme":
        if not raw_dir:
            raise UsageError("No prepared Ele.me data in " + out + ".\n" + ELEME_HELP.format(out=out))
        from pipelines import eleme

        eleme.prepare(raw_dir, out)
        return ds, out
    if not raw_dir:
        raise UsageError(
            f"No prepared Bundle data in {out}. The Bundle dataset is private; with your own copy "
            "run `python -m pipelines.bundle --input FILE --out " + out + "` first."
        )
    from pipelines import bundle

    bundle.prepare(raw_dir, out)
    return ds, out


def run(
    config: ExperimentConfig,
    dataset_dir: str | PreparedDataset,
    output_dir: str = DEFAULT_OUTPUT_DIR,
    *,
    attention_summaries: bool = True,
    attention_every: int = 1,
    export: bool = True,
    export_dir: str | None = None,
    overwrite: bool = False,
    deterministic: bool = False,
    callbacks: list[Any] | None = None,
    verbose: Any = None,
    warm_start: str | None = None,
) -> dict[str, Any]:
    """Train, evaluate and export one model: the Python API behind ``python -m feseq_tf.train``.

    Args:
        config: ExperimentConfig. Model name, architecture and training settings (see
            :func:`resolve_config`).
        dataset_dir: str or PreparedDataset. A prepared dataset directory (see
            :func:`prepare_dataset`), or the dataset opened from it
            (:meth:`feseq_tf.dataset.PreparedDataset.open`). A directory is opened once
            here; the run hands the opened dataset to everything that reads the data.
        output_dir: str. Where ``metrics.json``, ``config.json``, ``model.keras``, the
            spec and vocabularies, TensorBoard logs and the export go. An interrupted
            run in it resumes unless ``overwrite``.
        attention_summaries: bool. Write FESeq's attention heatmaps for TensorBoard.
        attention_every: int. Write them every N epochs.
        export: bool. Export a SavedModel for TF Serving at the end.
        export_dir: str or None. Export base directory. Defaults to ``<output_dir>/export``.
        overwrite: bool. Start afresh even if ``output_dir`` holds an interrupted run.
        deterministic: bool. TensorFlow op determinism (bit-identical reruns; slower).
        callbacks: list of keras callbacks or None. Extra callbacks; they see the exact
            validation metrics (``val_auc``...) in the epoch logs.
        verbose: None, 0, 1 or 2. Keras progress output (None: a bar on a terminal).
        warm_start: str or None. A finished run directory to start from: the dataset must
            extend that run's (``pipelines.generic --extend``); its weights are copied,
            grown tables keep their trained rows (:mod:`feseq_tf.warm_start`). The config
            is used as given: :func:`warm_start_config` applies the warm-start recipe.

    Returns:
        The metrics written to ``metrics.json``: test and valid metrics, per-epoch
        history, best epoch, throughput, precision and XLA settings (and with
        ``warm_start`` the run it started from and the ids each table gained).
    """
    if not isinstance(dataset_dir, PreparedDataset) and not os.path.exists(
        os.path.join(dataset_dir, SPEC_FILE)
    ):
        raise UsageError(f"{dataset_dir} is not a prepared dataset directory (no {SPEC_FILE}).")
    if isinstance(attention_every, bool) or not isinstance(attention_every, int) or attention_every < 1:
        raise UsageError(f"attention_every must be a positive integer, got {attention_every!r}.")
    from feseq_tf import distribute

    # A multi-worker strategy must exist before TensorFlow runs anything in the process.
    try:
        strategy = distribute.make_strategy(config.train.strategy)
        chief = distribute.is_chief()
    except ValueError as err:  # TF_CONFIG or the strategy name: a one-line error
        raise UsageError(str(err)) from None
    if overwrite and chief and os.path.isdir(output_dir):
        shutil.rmtree(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    if overwrite:
        from feseq_tf.training import barrier

        barrier(strategy)  # workers look for a backup only once the chief has removed it
    # dataset_spec.json is read and the split files are listed here, once for the run.
    dataset = as_prepared(dataset_dir)
    # The chief writes the run directory; other workers write to a temporary one.
    out = output_dir if chief else tempfile.mkdtemp(prefix="feseq-worker-")
    from tensorflow.python.framework import config as tf_config

    determinism_was_on = tf_config.is_op_determinism_enabled()
    try:
        return _run(config, dataset, output_dir, out, strategy, chief,
                    attention_summaries=attention_summaries, attention_every=attention_every,
                    export=export, export_dir=export_dir, deterministic=deterministic,
                    callbacks=callbacks, verbose=verbose, warm_start=warm_start)
    finally:
        if not chief:
            shutil.rmtree(out, ignore_errors=True)
        # Op determinism is process-wide and turns XLA off in later Keras compiles: a
        # deterministic run leaves it as it found it.
        if deterministic and not determinism_was_on:
            tf_config.disable_op_determinism()


def _resolve_id_dropout(
    config: ExperimentConfig, dataset: PreparedDataset, spec: DatasetSpec
) -> ModelConfig:
    """The model config with ``id_dropout="auto"`` replaced by the data's rates.

    The rates are printed; ``config.json`` keeps ``"auto"`` and the saved model holds
    the rates.
    """
    model_config = config.model
    if model_config.id_dropout != AUTO_ID_DROPOUT:
        return model_config
    from feseq_tf.cold_start import id_dropout_rates

    found = id_dropout_rates(dataset, spec)
    shares = ", ".join(
        f"{name} {rate:g} (OOV {found['train_oov'][name]:.3f} of train, {found['valid_oov'][name]:.3f} of valid)"
        for name, rate in found["rates"].items()
    )
    print(f"id dropout (auto): {shares or 'no non-sequential categorical field'}", flush=True)
    return dataclasses.replace(model_config, id_dropout=found["rates"])


def _run(config, dataset, shared_dir, out, strategy, chief, *, attention_summaries,
         attention_every, export, export_dir, deterministic, callbacks, verbose,
         warm_start=None) -> dict[str, Any]:
    """:func:`run` once the strategy exists: ``out`` is this process's directory."""
    config.save(os.path.join(out, "config.json"))

    import keras

    from feseq_tf import training
    from feseq_tf.models.registry import build_model

    training.set_seed(config.train.seed, deterministic=deterministic)
    policy = training.resolve_precision(config.train.mixed_precision)
    keras.mixed_precision.set_global_policy(policy)
    jit = training.resolve_jit(config.train.jit_compile)
    spec = dataset.spec
    dataset_name = config.dataset
    # The run directory is self-contained: spec and vocabularies travel with the model.
    shutil.copy(os.path.join(dataset.directory, SPEC_FILE), os.path.join(out, SPEC_FILE))
    vocab_dir = os.path.join(dataset.directory, "vocab")
    if os.path.isdir(vocab_dir):
        shutil.copytree(vocab_dir, os.path.join(out, "vocab"), dirs_exist_ok=True)
    print(
        f"dataset {dataset_name} at {dataset.directory}: {spec.split_sizes}; "
        f"precision {policy}, XLA {'on' if jit else 'off'}; "
        f"{type(strategy).__name__} over {strategy.num_replicas_in_sync} replica(s)"
        + ("" if chief else " (worker: writes nothing)"),
        flush=True,
    )

    start = time.time()
    try:
        model_name = config.model_name
        model_config = _resolve_id_dropout(config, dataset, spec)
        with strategy.scope():
            model = build_model(model_name, spec, model_config, name=model_name)
        print(f"model {model_name}: {model.count_params():,} parameters", flush=True)
        started_from = None
        if warm_start:
            from feseq_tf import warm_start as warm

            try:
                started_from = warm.warm_start(model, dataset.directory, spec, warm_start, model_name)
            except (ValueError, FileNotFoundError) as err:
                raise UsageError(f"--warm-start {warm_start}: {err}") from None
            gained = ", ".join(f"{k} +{v}" for k, v in started_from["rows_gained"].items() if v)
            print(f"warm start from {warm_start}: ids gained: {gained or 'none'}", flush=True)
        extra = list(callbacks or [])
        if attention_summaries and not hasattr(model, "attention_model"):
            print(f"note: no attention summaries for {model_name} (FESeq only)", flush=True)
        elif attention_summaries and chief:
            from feseq_tf.callbacks import SUMMARY_SUBDIR, AttentionSummaries

            extra.append(AttentionSummaries.from_dataset(
                dataset, os.path.join(out, "logs", SUMMARY_SUBDIR), spec=model.spec,
                every=attention_every,
            ))
        result = training.fit(
            model, dataset, out, config, jit=jit, verbose=verbose, extra_callbacks=extra,
            strategy=strategy, shared_dir=shared_dir, write=chief,
        )
        if not chief:  # the chief evaluates, saves and exports; wait for it to finish
            training.barrier(strategy)
            return {"model": model_name, "chief": False, "history": result["history"],
                    "best_epoch": result["best_epoch"], "replicas": result["replicas"]}
        eval_spec = model.spec
        test = training.evaluate_split(model, dataset, "test", config.train.eval_batch_size, eval_spec)
        valid = training.evaluate_split(model, dataset, "valid", config.train.eval_batch_size, eval_spec)
        model.save(os.path.join(out, "model.keras"))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    shutil.rmtree(os.path.join(out, "backup"), ignore_errors=True)
    export_path = None
    if export:
        from export.savedmodel import export_run

        export_path = export_run(out, export_dir or os.path.join(out, "export"), name=model_name)
        print(f"exported the SavedModel for TF Serving to {export_path}", flush=True)

    metrics = {
        "model": model_name,
        "dataset": dataset_name,
        "dataset_dir": os.path.abspath(dataset.directory),
        "test": test,
        "valid": valid,
        "best_epoch": result["best_epoch"],
        "epochs_run": len(result["history"]),
        "stopped_early": result["stopped_early"],
        "history": result["history"],
        "train_samples_per_s": result["train_samples_per_s"],
        "precision": policy,
        "jit_compile": jit,
        "jit_compile_effective": result["jit_compile_effective"],
        "strategy": type(strategy).__name__,
        "replicas": result["replicas"],
        "global_batch_size": result["global_batch_size"],
        "parameters": int(model.count_params()),
        "seconds": round(time.time() - start, 1),
        "export_path": export_path,
    }
    if started_from is not None:
        metrics["warm_start"] = started_from
    with open(os.path.join(out, "metrics.json"), "w") as fh:
        json.dump(metrics, fh, indent=2)
    training.barrier(strategy)  # other workers exit only now (no "task crashed" reports)
    line = f"test: AUC {test['auc']:.5f}  gAUC {test.get('gauc', float('nan')):.5f}  logloss {test['logloss']:.5f}"
    if "captured_lift" in test:
        line += f"  oracle AUC {test['oracle_auc']:.5f}  captured lift {test['captured_lift']:.3f}"
    print(line, flush=True)
    return metrics


@cli.command
def main(argv: list[str] | None = None) -> dict[str, Any]:
    """The command line: parse, prepare the dataset, :func:`run`; errors as one line."""
    args = build_parser().parse_args(argv)
    parse_overrides(args.set or [])  # a bad --set fails before the data is prepared
    tf_logging.import_tensorflow()  # C++ logs: warnings and errors
    dataset_name, dataset_dir = prepare_dataset(  # a UsageError is one line (feseq_tf.cli)
        args.dataset, data_dir=args.data_dir, raw_dir=args.raw_dir,
        synthetic_rows=args.synthetic_rows, synthetic_seed=args.synthetic_seed,
    )
    config = _config_from_args(args, dataset_name, DatasetSpec.load(dataset_dir))
    metrics = run(
        config, dataset_dir, args.output_dir,
        attention_summaries=args.attention_summaries, attention_every=args.attention_every,
        export=not args.no_export, export_dir=args.export_dir, overwrite=args.overwrite,
        deterministic=args.deterministic, warm_start=args.warm_start,
    )
    out = args.output_dir
    print(f"wrote {out}/metrics.json, model.keras; attention heatmaps and curves: "
          f"tensorboard --logdir {out}/logs", flush=True)
    return metrics


if __name__ == "__main__":
    main()
