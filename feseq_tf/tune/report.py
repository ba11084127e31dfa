"""What the tuner reports: one line per trial, ``trials.csv`` and ``best_config.json``'s content."""

from __future__ import annotations

import csv
import json
import os
from typing import Any

import optuna

from feseq_tf.config import ExperimentConfig


def format_params(trial: optuna.trial.FrozenTrial) -> str:
    """A trial's searched values as ``name=value`` words, training parameters first."""
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


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The study's best complete trial, or None while it has none."""
    try:
        return study.best_trial
    except ValueError:  # no complete trial yet
        return None


def progress_line(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> str:
    """The line printed after a trial: its values, its result, the best so far, its seconds."""
    state = trial.state
    if state == optuna.trial.TrialState.COMPLETE:
        result = f"val AUC {trial.value:.5f}"
    elif state == optuna.trial.TrialState.PRUNED:
        auc = trial.value if trial.value is not None else float("nan")
        result = f"pruned at epoch {trial.user_attrs.get('pruned_epoch', '?')} (val AUC {auc:.5f})"
    else:
        result = state.name.lower()
    best = best_trial(study)
    best_text = f"best {best.value:.5f} (trial {best.number})" if best else "no best yet"
    seconds = trial.duration.total_seconds() if trial.duration else float("nan")
    default = " (default)" if trial.user_attrs.get("default") else ""
    return (
        f"trial {trial.number}{default}: {format_params(trial)} -> {result}; "
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
