"""The tuning study: its storage and resumption, the trial loop, and ``best_config.json``.

:func:`tune` is the API behind ``python -m feseq_tf.tune`` (see :mod:`feseq_tf.tune`).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from typing import Any

import optuna
import sqlalchemy.exc

from feseq_tf import train
from feseq_tf.config import MODEL_NAMES, ExperimentConfig
from feseq_tf.schema import SPEC_FILE, DatasetSpec
from feseq_tf.tune.objective import make_objective
from feseq_tf.tune.report import (
    best_config_dict,
    best_trial,
    format_params,
    progress_line,
    write_trials_csv,
)
from feseq_tf.tune.space import check_values, default_params, model_space, parse_space

DEFAULT_EPOCHS = 10
#: Output directories default to ``<DEFAULT_OUTPUT_ROOT>/<study name>``.
DEFAULT_OUTPUT_ROOT = os.path.join("runs", "tune")
#: Trials sampled at random (the default trial counts) before TPE models the results.
STARTUP_TRIALS = 5
#: Finished trials before the median pruner may stop one; epochs before it may.
PRUNER_STARTUP_TRIALS = 5
PRUNER_WARMUP_EPOCHS = 1
#: A process that has not written a heartbeat for this long has died: its trial fails.
HEARTBEAT_S = 60
GRACE_S = 180


def _check_study(
    study: optuna.Study, fingerprint: dict[str, Any], dataset: dict[str, Any], storage: str
) -> None:
    """A study holds the trials of one search on one dataset: refuse to mix in another.

    ``dataset`` is the prepared dataset's spec (its fields, vocabulary sizes and split
    sizes): the synthetic regimes all carry the name ``synthetic``, so the name alone,
    and with it the default study name, does not tell them apart. A study written
    before the spec was recorded adopts the spec of its next run.
    """
    for key, value, what in (
        ("search", fingerprint, "with another base configuration, model, epochs or search space"),
        ("dataset", dataset, f"on another dataset (its {SPEC_FILE} differs from this one's)"),
    ):
        saved = study.user_attrs.get(key)
        if saved is None:
            study.set_user_attr(key, value)
        elif saved != value:
            raise train.UsageError(
                f"study {study.study_name!r} in {storage} was run {what}; "
                "pass another --study-name or --output-dir."
            )


def _check_output_dir(output_dir: str, study_name: str) -> None:
    """One study per output directory (trial directories are named by trial number)."""
    path = os.path.join(output_dir, "study.json")
    owner = {"study_name": study_name}
    if os.path.exists(path):
        with open(path) as fh:
            saved = json.load(fh)
        if saved != owner:
            raise train.UsageError(
                f"{output_dir} holds the trials of study {saved.get('study_name')!r}, not "
                f"{study_name!r}; pass another --output-dir."
            )
        return
    with open(path, "w") as fh:
        json.dump(owner, fh, indent=2)


def tune(
    dataset_dir: str,
    *,
    trials: int,
    output_dir: str | None = None,
    model_name: str | None = None,
    base_config: ExperimentConfig | None = None,
    seed: int = 0,
    storage: str | None = None,
    study_name: str | None = None,
    epochs: int | None = DEFAULT_EPOCHS,
    timeout: float | None = None,
    space: dict[str, Any] | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> dict[str, Any]:
    """Search hyperparameters on exact validation AUC: the API behind ``python -m feseq_tf.tune``.

    Args:
        dataset_dir: str. A prepared dataset directory (see :func:`feseq_tf.train.prepare_dataset`).
        trials: int. The study's total of finished (complete or pruned) trials; a
            resumed study runs only the missing ones.
        output_dir: str or None. Where the study, the trials, ``trials.csv`` and
            ``best_config.json`` go. Defaults to ``runs/tune/<study name>``.
        model_name: str or None. The model to tune (one of ``MODEL_NAMES``). Defaults to
            the base config's.
        base_config: ExperimentConfig or None. Trial 0 and the values of everything not
            searched. Defaults to the recipe sized from the dataset
            (:func:`feseq_tf.train.resolve_config` with the ``"auto"`` preset).
        seed: int. Seed of the TPE sampler. Defaults to 0.
        storage: str or None. Optuna storage URL. Defaults to
            ``sqlite:///<output_dir>/study.db``.
        study_name: str or None. Defaults to ``"<dataset>-<model>"``.
        epochs: int or None. Maximum epochs per trial (None: the base config's).
            Defaults to 10.
        timeout: float or None. Stop starting trials after this many seconds.
        space: dict or None. Range overrides in the ``--space`` format
            (:mod:`feseq_tf.tune.space`).
        pruner: optuna pruner or None. Defaults to a ``MedianPruner`` (5 startup trials,
            never at the first epoch). The default trial is never pruned.

    Returns:
        A dict: ``study_name``, ``storage``, ``best_trial`` (number), ``best_val_auc``,
        ``best_config`` (the dict written to ``best_config.json``), ``best_config_path``,
        ``trials_csv`` and ``states`` (trial count by state).

    Raises:
        feseq_tf.train.UsageError: bad arguments or a study run with other settings.
    """
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise train.UsageError(f"trials must be a positive integer, got {trials!r}.")
    if epochs is not None and (
        isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1
    ):
        raise train.UsageError(f"epochs must be a positive integer, got {epochs!r}.")
    if timeout is not None and not timeout > 0:
        raise train.UsageError(f"timeout must be > 0 seconds, got {timeout!r}.")
    if model_name is not None and model_name not in MODEL_NAMES:
        raise train.UsageError(f"model must be one of {MODEL_NAMES}, got {model_name!r}.")
    if not os.path.exists(os.path.join(dataset_dir, SPEC_FILE)):
        raise train.UsageError(
            f"{dataset_dir} is not a prepared dataset directory (no {SPEC_FILE})."
        )
    try:
        search = parse_space(space)
    except ValueError as err:
        raise train.UsageError(f"invalid search space: {err}") from None
    dataset_spec = DatasetSpec.load(dataset_dir)
    dataset_name = dataset_spec.name
    if base_config is None:
        # A directory trains with the recipe sized from its data (train.preset_for).
        base_config = train.resolve_config(
            dataset_name, preset_name=train.preset_for(dataset_dir), model_name=model_name,
            spec=dataset_spec,
        )
    top: dict[str, Any] = {"train": {"epochs": epochs} if epochs is not None else {}}
    if model_name is not None:
        top["model_name"] = model_name
    base_config = base_config.override(top)
    model_name = base_config.model_name
    search = model_space(model_name, base_config, search)
    check_values(base_config, search)

    study_name = study_name or f"{dataset_name}-{model_name}"
    output_dir = output_dir or os.path.join(DEFAULT_OUTPUT_ROOT, study_name)
    os.makedirs(output_dir, exist_ok=True)
    storage = storage or f"sqlite:///{os.path.abspath(os.path.join(output_dir, 'study.db'))}"
    _check_output_dir(output_dir, study_name)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial is ours
    try:
        with warnings.catch_warnings():  # the heartbeat is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                rdb = optuna.storages.RDBStorage(
                    storage, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S
                )
            except (ValueError, ImportError, sqlalchemy.exc.SQLAlchemyError) as err:
                raise train.UsageError(f"storage {storage!r} cannot be opened: {err}") from None
        study = optuna.create_study(
            storage=rdb,
            study_name=study_name,
            direction="maximize",
            load_if_exists=True,
            pruner=pruner
            or optuna.pruners.MedianPruner(
                n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=PRUNER_WARMUP_EPOCHS + 1
            ),
        )
        # Seeded by --seed and the trials already there: a rerun does not replay the
        # samples of the first run; the constant liar keeps processes that share the
        # study from proposing the same configuration while their trials run.
        study.sampler = optuna.samplers.TPESampler(
            seed=seed + len(study.get_trials(deepcopy=False)),
            n_startup_trials=STARTUP_TRIALS,
            constant_liar=True,
        )
        fingerprint = {
            "base_config": base_config.to_dict(),
            "space": {name: spec.to_dict() for name, spec in search.items()},
        }
        _check_study(study, json.loads(json.dumps(fingerprint)),
                     json.loads(json.dumps(dataset_spec.to_dict())), storage)
        study.enqueue_trial(
            default_params(base_config, search), user_attrs={"default": True}, skip_if_exists=True
        )

        names = list(search)
        csv_path = os.path.join(output_dir, "trials.csv")
        counted = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        done = len(study.get_trials(deepcopy=False, states=counted))
        print(
            f"study {study_name!r} in {storage}: {done} of {trials} trials finished; "
            f"model {model_name}, dataset {dataset_dir}, at most {base_config.train.epochs} "
            f"epochs per trial; searching {', '.join(names) or 'nothing'}",
            flush=True,
        )

        def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            print(progress_line(study, trial), flush=True)
            write_trials_csv(study, csv_path, names)

        start = time.time()
        if done < trials:
            study.optimize(
                make_objective(base_config, search, dataset_dir, output_dir),
                n_trials=trials - done,
                timeout=timeout,
                callbacks=[report, optuna.study.MaxTrialsCallback(trials, states=counted)],
            )
        write_trials_csv(study, csv_path, names)
        best = best_trial(study)
        if best is None:
            raise train.UsageError(
                f"study {study_name!r} has no complete trial: see {csv_path} and the "
                f"train.log of the trials in {os.path.join(output_dir, 'trials')}."
            )
        best_config = best_config_dict(base_config, best)
        best_path = os.path.join(output_dir, "best_config.json")
        with open(best_path, "w") as fh:
            json.dump(best_config, fh, indent=2)
    finally:
        optuna.logging.set_verbosity(verbosity)
    states: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        states[t.state.name] = states.get(t.state.name, 0) + 1
    print(
        f"best: trial {best.number}, val AUC {best.value:.5f}: {format_params(best)} "
        f"({round(time.time() - start, 1)} s in this process; trials {states})",
        flush=True,
    )
    print(
        f"wrote {best_path} (train it with: python -m feseq_tf.train --dataset {dataset_dir} "
        f"--config {best_path}) and {csv_path}",
        flush=True,
    )
    return {
        "study_name": study_name,
        "storage": storage,
        "best_trial": best.number,
        "best_val_auc": float(best.value),
        "best_config": best_config,
        "best_config_path": best_path,
        "trials_csv": csv_path,
        "states": states,
    }
