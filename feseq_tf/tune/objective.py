"""One tuning trial: a sampled configuration trained by :func:`feseq_tf.train.run`, pruned by epoch.

Each trial trains into ``OUTPUT_DIR/trials/<number>`` (started afresh, its output in
``train.log``) and is scored by the exact validation AUC of its best epoch; a Keras
callback reports every epoch's ``val_auc`` to Optuna and stops a trial the pruner
prunes (never the default trial).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
from typing import Any

import optuna

from feseq_tf import train
from feseq_tf.config import ExperimentConfig
from feseq_tf.tune.space import Choices, FloatRange, suggest


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


def make_objective(
    base_config: ExperimentConfig,
    space: dict[str, FloatRange | Choices],
    dataset_dir: str,
    output_dir: str,
) -> Any:
    """The Optuna objective: trains the trial's configuration, returns its validation AUC."""

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
