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
range of the search space is widened to hold its value: the best trial is therefore
never worse than the default on validation AUC.

The search space, the reasons for each range and the ``--space`` format:
:mod:`feseq_tf.tune.space` (printed by ``--help`` too). One job per module: ``space``,
``objective`` (one trial), ``report`` (progress lines, ``trials.csv``), ``study``
(storage, resumption, :func:`tune`) and ``cli`` (the command line).

Outputs in ``--output-dir`` (one study per directory; default
``runs/tune/<dataset>-<model>``): ``study.db``, ``trials/<n>/``
(each trial's run: ``config.json``, ``metrics.json``, ``model.keras``, ``train.log``),
``trials.csv`` (one row per trial, rewritten after every trial), and
``best_config.json`` (``model_name``, ``model`` and ``train`` sections of the best
trial) which ``python -m feseq_tf.train --dataset D --config OUTPUT_DIR/best_config.json``
reads. One line per trial is printed: number, parameters, validation AUC (or where it
was pruned), the best so far and the seconds it took.
"""

from feseq_tf.tune.cli import build_parser, main
from feseq_tf.tune.report import best_config_dict, write_trials_csv
from feseq_tf.tune.space import (
    MODEL_PARAMS,
    SEARCH_SPACE,
    TRAIN_PARAMS,
    Choices,
    FloatRange,
    default_params,
    model_space,
    parse_space,
    suggest,
)
from feseq_tf.tune.study import (
    DEFAULT_EPOCHS,
    DEFAULT_OUTPUT_ROOT,
    GRACE_S,
    HEARTBEAT_S,
    PRUNER_STARTUP_TRIALS,
    PRUNER_WARMUP_EPOCHS,
    STARTUP_TRIALS,
    tune,
)

__all__ = [
    "DEFAULT_EPOCHS",
    "DEFAULT_OUTPUT_ROOT",
    "GRACE_S",
    "HEARTBEAT_S",
    "MODEL_PARAMS",
    "PRUNER_STARTUP_TRIALS",
    "PRUNER_WARMUP_EPOCHS",
    "SEARCH_SPACE",
    "STARTUP_TRIALS",
    "TRAIN_PARAMS",
    "Choices",
    "FloatRange",
    "best_config_dict",
    "build_parser",
    "default_params",
    "main",
    "model_space",
    "parse_space",
    "suggest",
    "tune",
    "write_trials_csv",
]
