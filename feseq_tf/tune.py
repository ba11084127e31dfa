"""Hyperparameter search on exact validation AUC: ``python -m feseq_tf.tune --dataset D --trials N``.

An Optuna study: a TPE sampler proposes configurations (seeded by ``--seed`` and the
number of trials the study already holds, with a "constant liar" so that processes
sharing the study do not propose the same configuration while their trials run), each trial
trains one model with :func:`feseq_tf.train.run` into ``OUTPUT_DIR/trials/<number>``
(at most ``--epochs`` epochs, early stopping with the base config's ``train.patience``,
best epoch restored) and scores it by the exact validation AUC of its best epoch. A
``MedianPruner`` reads the per-epoch validation AUC and stops a trial whose AUC is
below the median of earlier trials at the same epoch (not before 5 trials have
finished, never at the first epoch). The test split is never looked at for selection.

The study lives in SQLite (``--storage``, default ``sqlite:///OUTPUT_DIR/study.db``):
rerunning the command resumes it, and several processes started with the same
``--storage`` and ``--study-name`` share it. ``--trials N`` is the study's total of
finished (complete or pruned) trials: each process stops once the study holds N, and a
rerun after an interruption runs only what is missing. A trial whose process died is
marked failed by the next process after a grace period and does not count. Give each
process that shares a study its own ``--seed`` (the first trials are sampled at random).

Trial 0 is the base configuration itself (the preset's defaults with ``--config`` and
``--set`` applied), enqueued before any sampled trial and exempt from pruning, and every
range below is widened to hold its value: the best trial is therefore never worse than
the default on validation AUC.

Search space (``--model`` decides which parameters are searched: each model gets only
the ``ModelConfig`` fields it reads, see :data:`MODEL_PARAMS` (``lr``, the linear model,
only the training parameters, ``embedding_l2`` and ``embedding_stddev``); the rest keep
the base config's values):

========================  =================================  ==========================
parameter                 range                              why
========================  =================================  ==========================
learning_rate             log-uniform [1e-4, 1e-2]           the paper uses 1e-3
                                                             (Ele.me) and 1e-4
                                                             (Bundle); Adam on sparse
                                                             embeddings rarely trains
                                                             above 1e-2; its effect is
                                                             multiplicative, hence log
batch_size                {256, 512, 1024, 2048, 4096}       4096 is the paper's, for
                                                             1.2M rows; small data gets
                                                             few updates per epoch at
                                                             that size
dropout                   uniform [0, 0.5]                   the paper uses 0.1; above
                                                             0.5 the narrow attention
                                                             inputs lose too much
embedding_l2              0, or log-uniform [1e-6, 1e-1]     the paper's lambda is 0.1
                                                             but small data trains best
                                                             with none: the amount spans
                                                             decades and "none" is a
                                                             real option a log scale
                                                             cannot reach, so it is a
                                                             separate on/off choice
embedding_stddev          log-uniform [1e-4, 1]              the paper initialises at
                                                             1e-4; small data needs
                                                             rows large enough for
                                                             attention to tell entries
                                                             apart from the start (the
                                                             synthetic preset: 0.5)
embedding_dim             {8, 16, 32}                        the paper's d is 16 (its
                                                             Table 11 sweeps d); wider
                                                             tables overfit ids with
                                                             few rows and cost time
mlp_units                 [1024, 512, 256], [256, 128, 64],  the paper's tower, the
                          [128, 64], [64]                    synthetic preset's, and
                                                             narrower ones for small data
pooling_hidden            {16, 32, 64, 128}                  d_h: the paper uses 128
                                                             (Ele.me) and 32 (Bundle)
input_interaction_layers  {1, 2, 3}                          the paper's M is 2; 0 is
                                                             the "w/o Int" ablation, not
                                                             a setting to tune
history_match, wide,      {True, False}                      FESeq's options beyond the
target_in_output                                             paper (on in the recipe):
                                                             whether a dataset rewards
                                                             them is an empirical matter
========================  =================================  ==========================

``--space FILE`` (JSON) replaces ranges: ``{"learning_rate": {"low": 3e-4, "high": 3e-3,
"log": true}, "batch_size": [512, 1024], "embedding_l2": {"low": 1e-5, "high": 1e-2,
"log": true, "zero": true}, "mlp_units": [[256, 128]], "embedding_dim": null}``: a
mapping ``{"low", "high"[, "log"][, "zero"]}`` is a float range (``zero``: 0 is a
choice too), a list is a set of choices, ``null`` leaves the parameter out of the
search (the base config's value is used).

Outputs in ``--output-dir`` (one study per directory; default
``runs/tune/<dataset>-<model>``): ``study.db``, ``trials/<n>/``
(each trial's run: ``config.json``, ``metrics.json``, ``model.keras``, ``train.log``),
``trials.csv`` (one row per trial, rewritten after every trial), and
``best_config.json`` (``model_name``, ``model`` and ``train`` sections of the best
trial) which ``python -m feseq_tf.train --dataset D --config OUTPUT_DIR/best_config.json``
reads. One line per trial is printed: number, parameters, validation AUC (or where it
was pruned), the best so far and the seconds it took.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import math
import os
import shutil
import sys
import time
import warnings
from typing import Any

import optuna
import sqlalchemy.exc

from feseq_tf import train
from feseq_tf.config import MODEL_NAMES, ExperimentConfig
from feseq_tf.schema import SPEC_FILE, DatasetSpec

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


@dataclasses.dataclass(frozen=True)
class FloatRange:
    """A float parameter: uniform (or log-uniform) in [low, high]; ``zero`` adds 0."""

    low: float
    high: float
    log: bool = False
    zero: bool = False

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise ValueError(f"low must be <= high, got low={self.low!r}, high={self.high!r}.")
        if self.log and not self.low > 0:
            raise ValueError(f"a log range needs low > 0, got low={self.low!r}.")

    def widened(self, value: float) -> FloatRange:
        """The range, widened so that ``value`` lies in it (0 as the zero choice)."""
        if value == 0 and (self.log or self.low > 0):
            return dataclasses.replace(self, zero=True)
        return dataclasses.replace(self, low=min(self.low, value), high=max(self.high, value))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Choices:
    """A categorical parameter: one of ``values``."""

    values: tuple

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError("a list of choices must not be empty.")

    def widened(self, value: Any) -> Choices:
        return self if value in self.values else Choices((*self.values, value))

    def to_dict(self) -> dict[str, Any]:
        return {"choices": [list(v) if isinstance(v, tuple) else v for v in self.values]}


#: The default search space (see the module docstring for the reasons of each range).
SEARCH_SPACE: dict[str, FloatRange | Choices] = {
    "learning_rate": FloatRange(1e-4, 1e-2, log=True),
    "batch_size": Choices((256, 512, 1024, 2048, 4096)),
    "dropout": FloatRange(0.0, 0.5),
    "embedding_l2": FloatRange(1e-6, 1e-1, log=True, zero=True),
    "embedding_stddev": FloatRange(1e-4, 1.0, log=True),
    "embedding_dim": Choices((8, 16, 32)),
    "mlp_units": Choices(((1024, 512, 256), (256, 128, 64), (128, 64), (64,))),
    "pooling_hidden": Choices((16, 32, 64, 128)),
    "input_interaction_layers": Choices((1, 2, 3)),
    "history_match": Choices((True, False)),
    "wide": Choices((True, False)),
    "target_in_output": Choices((True, False)),
}
TRAIN_PARAMS = ("learning_rate", "batch_size")
_SHARED = (
    *TRAIN_PARAMS,
    "dropout",
    "embedding_l2",
    "embedding_stddev",
    "embedding_dim",
    "mlp_units",
)
#: The parameters searched for each model: those it reads (``feseq_tf.models.baselines``
#: lists the fields each baseline reads). A model not listed gets ``TRAIN_PARAMS`` only.
MODEL_PARAMS: dict[str, tuple[str, ...]] = {
    "feseq": (
        *_SHARED, "pooling_hidden", "input_interaction_layers", "history_match", "wide",
        "target_in_output",
    ),
    "deepfm": _SHARED,
    "autoint": (*_SHARED, "input_interaction_layers"),
    "dcnv2": (*_SHARED, "input_interaction_layers"),
    "din": (*_SHARED, "pooling_hidden"),
    "bst": _SHARED,
    "dmr": (*_SHARED, "pooling_hidden"),
    "lr": (*TRAIN_PARAMS, "embedding_l2", "embedding_stddev"),
}


def _section(param: str) -> str:
    return "train" if param in TRAIN_PARAMS else "model"


def _parse_spec(name: str, value: Any) -> FloatRange | Choices | None:
    if value is None:
        return None
    if isinstance(value, list):
        return Choices(tuple(tuple(v) if isinstance(v, list) else v for v in value))
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"low", "high", "log", "zero"})
        if unknown or not {"low", "high"} <= set(value):
            raise ValueError(
                f"a range holds 'low', 'high' and optionally 'log', 'zero', got {sorted(value)}."
            )
        return FloatRange(
            float(value["low"]),
            float(value["high"]),
            bool(value.get("log", False)),
            bool(value.get("zero", False)),
        )
    raise ValueError(
        f"expected a list of choices, a {{'low', 'high'}} range or null, got {value!r}."
    )


def parse_space(overrides: dict[str, Any] | None) -> dict[str, FloatRange | Choices]:
    """:data:`SEARCH_SPACE` with the ranges of ``overrides`` (the ``--space`` format).

    Raises:
        ValueError: an unknown parameter or a malformed range (the message names it).
    """
    overrides = overrides or {}
    if not isinstance(overrides, dict):
        raise ValueError(f"space must be a mapping of parameter -> range, got {overrides!r}.")
    unknown = sorted(set(overrides) - set(SEARCH_SPACE))
    if unknown:
        raise ValueError(f"unknown parameters in space: {unknown}; known: {sorted(SEARCH_SPACE)}.")
    space: dict[str, FloatRange | Choices] = {}
    for name, default in SEARCH_SPACE.items():
        try:
            spec = _parse_spec(name, overrides[name]) if name in overrides else default
        except ValueError as err:
            raise ValueError(f"space[{name!r}]: {err}") from None
        if spec is not None:
            if name in (
                "batch_size",
                "embedding_dim",
                "pooling_hidden",
                "input_interaction_layers",
                "mlp_units",
                "history_match",
                "wide",
                "target_in_output",
            ) and not isinstance(spec, Choices):
                raise ValueError(
                    f"space[{name!r}]: expected a list of choices, got {overrides[name]!r}."
                )
            space[name] = spec
    return space


def model_space(
    model_name: str, base_config: ExperimentConfig, space: dict[str, FloatRange | Choices]
) -> dict[str, FloatRange | Choices]:
    """The parameters searched for ``model_name``, each widened to hold the base value."""
    wanted = MODEL_PARAMS.get(model_name, TRAIN_PARAMS)
    out: dict[str, FloatRange | Choices] = {}
    for name in wanted:
        if name in space:
            out[name] = space[name].widened(_base_value(base_config, name))
    return out


def _check_values(base_config: ExperimentConfig, space: dict[str, FloatRange | Choices]) -> None:
    """Every choice and range end is a valid config value (else a one-line error now,
    not a failed trial later)."""
    for name, spec in space.items():
        values = spec.values if isinstance(spec, Choices) else (spec.low, spec.high)
        for value in values:
            value = list(value) if isinstance(value, tuple) else value
            try:
                base_config.override({_section(name): {name: value}})
            except (TypeError, ValueError) as err:
                raise train.UsageError(f"invalid search space: {name}={value!r}: {err}") from None


def _base_value(config: ExperimentConfig, name: str) -> Any:
    value = getattr(getattr(config, _section(name)), name)
    return tuple(value) if isinstance(value, list) else value


def _encode(value: Any) -> Any:
    """A choice as Optuna stores it (tuples of units as ``"256-128-64"``)."""
    return "-".join(str(v) for v in value) if isinstance(value, tuple) else value


def _decode(value: Any) -> Any:
    if isinstance(value, str):
        return [int(v) for v in value.split("-")]
    return value


def suggest(
    trial: optuna.Trial, space: dict[str, FloatRange | Choices]
) -> dict[str, dict[str, Any]]:
    """One configuration from the space, as ``{"model": {...}, "train": {...}}`` overrides."""
    overrides: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
    for name, spec in space.items():
        if isinstance(spec, Choices):
            value = _decode(trial.suggest_categorical(name, [_encode(v) for v in spec.values]))
        elif spec.zero and not trial.suggest_categorical(f"{name}_on", [True, False]):
            value = 0.0
        else:
            value = trial.suggest_float(name, spec.low, spec.high, log=spec.log)
        overrides[_section(name)][name] = value
    return overrides


def default_params(
    base_config: ExperimentConfig, space: dict[str, FloatRange | Choices]
) -> dict[str, Any]:
    """The Optuna parameters that :func:`suggest` turns into the base configuration."""
    params: dict[str, Any] = {}
    for name, spec in space.items():
        value = _base_value(base_config, name)
        if isinstance(spec, FloatRange) and spec.zero:
            params[f"{name}_on"] = value != 0
            if value == 0:
                continue
        params[name] = _encode(value)
    return params


def _make_pruning_callback(trial: optuna.Trial, prunable: bool) -> Any:
    import keras

    class PruneOnValidationAUC(keras.callbacks.Callback):
        """Reports each epoch's exact ``val_auc`` to the trial; stops training when pruned."""

        def __init__(self) -> None:
            super().__init__()
            self.pruned_epoch: int | None = None
            self.last_auc = float("nan")

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            auc = (logs or {}).get("val_auc")
            if auc is None or not math.isfinite(float(auc)):
                return
            self.last_auc = float(auc)
            trial.report(self.last_auc, epoch + 1)
            if prunable and trial.should_prune():
                self.pruned_epoch = epoch + 1
                self.model.stop_training = True

    return PruneOnValidationAUC()


def _objective(
    base_config: ExperimentConfig,
    space: dict[str, FloatRange | Choices],
    dataset_dir: str,
    output_dir: str,
) -> Any:
    def objective(trial: optuna.Trial) -> float:
        overrides = suggest(trial, space)
        trial.set_user_attr("overrides", overrides)
        config = base_config.override(overrides)
        trial_dir = os.path.join(output_dir, "trials", str(trial.number))
        shutil.rmtree(trial_dir, ignore_errors=True)  # a trial always starts afresh
        os.makedirs(trial_dir)
        pruning = _make_pruning_callback(trial, prunable=not trial.user_attrs.get("default"))
        import keras

        keras.backend.clear_session()  # free the previous trial's graphs
        with (
            open(os.path.join(trial_dir, "train.log"), "w") as log,
            contextlib.redirect_stdout(log),
        ):
            metrics = train.run(
                config,
                dataset_dir,
                trial_dir,
                attention_summaries=False,
                export=False,
                callbacks=[pruning],
                verbose=0,
            )
        trial.set_user_attr("epochs_run", metrics["epochs_run"])
        trial.set_user_attr("best_epoch", metrics["best_epoch"])
        if pruning.pruned_epoch is not None:
            trial.set_user_attr("pruned_epoch", pruning.pruned_epoch)
            raise optuna.TrialPruned(f"pruned at epoch {pruning.pruned_epoch}")
        return float(metrics["valid"]["auc"])

    return objective


def _format_params(trial: optuna.trial.FrozenTrial) -> str:
    overrides = trial.user_attrs.get("overrides") or {}
    parts = []
    for section in ("train", "model"):
        for name, value in overrides.get(section, {}).items():
            if isinstance(value, float):
                parts.append(f"{name}={value:.3g}")
            elif isinstance(value, list):
                parts.append(f"{name}={','.join(str(v) for v in value)}")
            else:
                parts.append(f"{name}={value}")
    return " ".join(parts)


def _best(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:  # no complete trial yet
        return None


def _progress_line(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> str:
    state = trial.state
    if state == optuna.trial.TrialState.COMPLETE:
        result = f"val AUC {trial.value:.5f}"
    elif state == optuna.trial.TrialState.PRUNED:
        auc = trial.value if trial.value is not None else float("nan")
        result = f"pruned at epoch {trial.user_attrs.get('pruned_epoch', '?')} (val AUC {auc:.5f})"
    else:
        result = state.name.lower()
    best = _best(study)
    best_text = f"best {best.value:.5f} (trial {best.number})" if best else "no best yet"
    seconds = trial.duration.total_seconds() if trial.duration else float("nan")
    default = " (default)" if trial.user_attrs.get("default") else ""
    return (
        f"trial {trial.number}{default}: {_format_params(trial)} -> {result}; "
        f"{best_text}; {seconds:.1f} s"
    )


def _trial_row(trial: optuna.trial.FrozenTrial, names: list[str]) -> dict[str, Any]:
    flat = {}
    for section in (trial.user_attrs.get("overrides") or {}).values():
        flat.update(section)
    row = {
        "number": trial.number,
        "state": trial.state.name,
        "val_auc": "" if trial.value is None else trial.value,
        "epochs_run": trial.user_attrs.get("epochs_run", ""),
        "best_epoch": trial.user_attrs.get("best_epoch", ""),
        "seconds": round(trial.duration.total_seconds(), 1) if trial.duration else "",
    }
    for name in names:
        value = flat.get(name, "")
        row[name] = json.dumps(value) if isinstance(value, list) else value
    return row


def write_trials_csv(study: optuna.Study, path: str, names: list[str]) -> None:
    """One row per trial: number, state, val AUC, epochs, seconds and the parameters."""
    rows = [_trial_row(t, names) for t in study.get_trials(deepcopy=False)]
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(
            fh,
            fieldnames=[
                "number",
                "state",
                "val_auc",
                "epochs_run",
                "best_epoch",
                "seconds",
                *names,
            ],
        )
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)  # several processes may write it: never a half-written file


def best_config_dict(
    base_config: ExperimentConfig, trial: optuna.trial.FrozenTrial
) -> dict[str, Any]:
    """``model_name``, ``model`` and ``train`` of a trial, as ``--config`` reads them."""
    config = base_config.override(trial.user_attrs["overrides"]).to_dict()
    return {"model_name": config["model_name"], "model": config["model"], "train": config["train"]}


def _check_study(study: optuna.Study, fingerprint: dict[str, Any], storage: str) -> None:
    saved = study.user_attrs.get("search")
    if saved is None:
        study.set_user_attr("search", fingerprint)
    elif saved != fingerprint:
        raise train.UsageError(
            f"study {study.study_name!r} in {storage} was run with another base configuration, "
            "model, epochs or search space; pass another --study-name or --output-dir."
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
        space: dict or None. Range overrides in the ``--space`` format (module docstring).
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
    dataset_name = DatasetSpec.load(dataset_dir).name
    if base_config is None:
        # A directory trains with the recipe sized from its data (train.preset_for).
        base_config = train.resolve_config(
            dataset_name, preset_name=train.preset_for(dataset_dir), model_name=model_name,
            spec=DatasetSpec.load(dataset_dir),
        )
    top: dict[str, Any] = {"train": {"epochs": epochs} if epochs is not None else {}}
    if model_name is not None:
        top["model_name"] = model_name
    base_config = base_config.override(top)
    model_name = base_config.model_name
    search = model_space(model_name, base_config, search)
    _check_values(base_config, search)

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
        _check_study(study, json.loads(json.dumps(fingerprint)), storage)
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
            print(_progress_line(study, trial), flush=True)
            write_trials_csv(study, csv_path, names)

        start = time.time()
        if done < trials:
            study.optimize(
                _objective(base_config, search, dataset_dir, output_dir),
                n_trials=trials - done,
                timeout=timeout,
                callbacks=[report, optuna.study.MaxTrialsCallback(trials, states=counted)],
            )
        write_trials_csv(study, csv_path, names)
        best = _best(study)
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
        f"best: trial {best.number}, val AUC {best.value:.5f}: {_format_params(best)} "
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m feseq_tf.tune",
        description=__doc__,
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
    p.add_argument("--preset", help="config preset (default: the dataset's own, else auto, the recipe sized from the data)")
    p.add_argument("--config", help="JSON/YAML file with 'model'/'train' overrides of the preset")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one base config value, e.g. --set train.seed=1 (repeatable)",
    )
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
    p.add_argument(
        "--data-dir",
        default=train.DEFAULT_DATA_DIR,
        help="where named datasets are prepared (default: ./data)",
    )
    p.add_argument("--raw-dir", help="raw Ele.me/Bundle files, prepared on first use")
    p.add_argument("--synthetic-rows", type=int, help="rows of the synthetic dataset")
    p.add_argument("--synthetic-seed", type=int, help="seed of the synthetic data generator")
    return p


def _load_space_file(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, json.JSONDecodeError) as err:
        raise train.UsageError(f"--space {path}: {err}") from None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """The command line: parse, prepare the dataset, :func:`tune`; errors as one line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # C++ info logs off unless asked for
    args = build_parser().parse_args(argv)
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


if __name__ == "__main__":
    main(sys.argv[1:])
