"""Tests of ``feseq_tf.tune``: search space, trials, resume, pruning, best config, CLI errors."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil

import optuna
import pytest

from feseq_tf import train, tune
from feseq_tf.config import ExperimentConfig, load_config_file, preset
from feseq_tf.schema import DatasetSpec
from tests.conftest import TINY_MODEL_OVERRIDES

# Keep the model tiny in every trial: its size parameters get one choice each.
TINY_SPACE = {
    "batch_size": [512],
    "embedding_dim": [4],
    "mlp_units": [[16]],
    "pooling_hidden": [16],
    "input_interaction_layers": [1],
}


def tiny_base_config(dataset_dir: str) -> ExperimentConfig:
    overrides = train.parse_overrides(list(TINY_MODEL_OVERRIDES))
    overrides["model"]["input_interaction_layers"] = 1
    overrides["train"]["batch_size"] = 512
    spec = DatasetSpec.load(dataset_dir)
    # What the CLI resolves for a dataset directory: the recipe at the data's size.
    return train.resolve_config(spec.name, preset_name=train.preset_for(dataset_dir),
                                overrides=overrides, spec=spec)


def study_of(output_dir: str, dataset_dir: str) -> optuna.Study:
    storage = f"sqlite:///{os.path.abspath(os.path.join(output_dir, 'study.db'))}"
    name = f"{DatasetSpec.load(dataset_dir).name}-feseq"
    return optuna.load_study(study_name=name, storage=storage)


def test_space_is_widened_to_hold_the_base_config():
    base = preset("eleme").override({"model": {"embedding_dim": 12, "dropout": 0.7}})
    space = tune.model_space("feseq", base, tune.parse_space(None))
    assert 12 in space["embedding_dim"].values
    assert space["dropout"].high == 0.7
    assert space["embedding_l2"].low <= base.model.embedding_l2 <= space["embedding_l2"].high
    zero_l2 = preset("synthetic")  # embedding_l2 = 0: the "off" choice of the log range
    params = tune.default_params(
        zero_l2, tune.model_space("feseq", zero_l2, tune.parse_space(None))
    )
    assert params["embedding_l2_on"] is False and "embedding_l2" not in params


def test_baselines_search_only_the_fields_they_read():
    base = preset("synthetic")
    space = tune.parse_space(None)
    assert "pooling_hidden" not in tune.model_space("deepfm", base, space)
    assert "input_interaction_layers" not in tune.model_space("din", base, space)
    assert "pooling_hidden" in tune.model_space("din", base, space)
    assert {"pooling_hidden", "input_interaction_layers"} <= set(
        tune.model_space("feseq", base, space)
    )
    linear = {"learning_rate", "batch_size", "embedding_l2", "embedding_stddev", "id_dropout"}
    assert set(tune.model_space("lr", base, space)) == linear


@pytest.mark.parametrize("id_dropout", [0.0, "auto", 0.25])
def test_suggest_of_the_default_params_gives_the_base_config(id_dropout):
    base = preset("synthetic").override({"model": {"id_dropout": id_dropout}})
    space = tune.model_space("feseq", base, tune.parse_space(None))
    assert id_dropout in space["id_dropout"].values  # 0.25: widened to hold it
    trial = optuna.trial.FixedTrial(tune.default_params(base, space))
    assert base.override(tune.suggest(trial, space)) == base


@pytest.mark.parametrize(
    "space, match",
    [
        ({"momentum": [0.9]}, "momentum"),
        ({"dropout": {"low": 0.1}}, "dropout"),
        ({"learning_rate": {"low": 0.0, "high": 1e-2, "log": True}}, "low"),
        ({"batch_size": {"low": 256, "high": 512}}, "batch_size"),
        ({"mlp_units": []}, "mlp_units"),
    ],
)
def test_malformed_space_raises_value_error(space, match):
    with pytest.raises(ValueError, match=match):
        tune.parse_space(space)


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--trials", "0"], "--trials must be a positive integer, got 0"),
        (["--trials", "2", "--model", "nosuchmodel"], "--model must be one of .* 'nosuchmodel'"),
    ],
)
def test_cli_bad_arguments_fail_with_one_line(tmp_path, extra, match):
    with pytest.raises(SystemExit, match=match) as err:
        tune.main(["--dataset", str(tmp_path), "--output-dir", str(tmp_path / "out"), *extra])
    assert str(err.value).startswith("error: ") and "\n" not in str(err.value)


def test_tune_rejects_bad_arguments_before_training(tmp_path, tiny_trained_run):
    ds = tiny_trained_run.dataset_dir
    with pytest.raises(train.UsageError, match="trials must be a positive integer, got 0"):
        tune.tune(ds, trials=0, output_dir=str(tmp_path))
    with pytest.raises(train.UsageError, match="epochs must be a positive integer"):
        tune.tune(ds, trials=1, epochs=0, output_dir=str(tmp_path))
    with pytest.raises(train.UsageError, match="not a prepared dataset"):
        tune.tune(str(tmp_path), trials=1, output_dir=str(tmp_path))
    with pytest.raises(train.UsageError, match="dropout=1.5"):
        tune.tune(ds, trials=1, output_dir=str(tmp_path), space={"dropout": [0.1, 1.5]})
    assert not os.path.exists(tmp_path / "trials")


def tiny_cli_args(dataset_dir: str, output_dir: str, space_file: str) -> list[str]:
    argv = [
        "--dataset",
        dataset_dir,
        "--epochs",
        "1",
        "--seed",
        "1",
        "--output-dir",
        output_dir,
        "--space",
        space_file,
        "--set",
        "model.input_interaction_layers=1",
        "--set",
        "train.batch_size=512",
    ]
    for item in TINY_MODEL_OVERRIDES:
        argv += ["--set", item]
    return argv


@pytest.mark.slow
def test_cli_trials_write_the_best_config_that_train_reads(tmp_path, tiny_trained_run, capsys):
    ds, out = tiny_trained_run.dataset_dir, str(tmp_path / "tune")
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(TINY_SPACE))
    argv = tiny_cli_args(ds, out, str(space_file))
    result = tune.main([*argv, "--trials", "2"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("trial ")]
    assert [line.split(":")[0] for line in lines] == ["trial 0 (default)", "trial 1"]
    assert all("val AUC" in line and "best" in line for line in lines)

    trials = study_of(out, ds).get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    # Trial 0 is the base configuration, and the best is never worse than it.
    base = tiny_base_config(ds).override({"train": {"epochs": 1}})
    assert base.override(trials[0].user_attrs["overrides"]) == base
    best = max(trials, key=lambda t: t.value)
    assert result["best_trial"] == best.number and result["best_val_auc"] >= trials[0].value
    for t in trials:
        assert os.path.exists(os.path.join(out, "trials", str(t.number), "metrics.json"))

    # best_config.json is what `python -m feseq_tf.train --config` reads, with the best
    # trial's values, which are among the tried ones.
    path = os.path.join(out, "best_config.json")
    assert set(load_config_file(path)) == {"model_name", "model", "train"}
    loaded = train.resolve_config(DatasetSpec.load(ds).name, config_file=path)
    assert preset("synthetic").override(load_config_file(path)).model == loaded.model
    assert loaded == base.override(best.user_attrs["overrides"])
    assert loaded.train.learning_rate in {t.params["learning_rate"] for t in trials}
    assert loaded.model.dropout in {t.params["dropout"] for t in trials}

    with open(os.path.join(out, "trials.csv")) as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["number"]) for r in rows] == [0, 1]
    assert float(rows[best.number]["val_auc"]) == pytest.approx(best.value)

    # The same study with another base configuration is refused, not mixed in.
    two_epochs = list(argv)
    two_epochs[two_epochs.index("--epochs") + 1] = "2"
    with pytest.raises(SystemExit, match="another base configuration"):
        tune.main([*two_epochs, "--trials", "3"])
    assert len(study_of(out, ds).get_trials()) == 2

    # So is another dataset of the same name and configuration (the synthetic regimes
    # are all called "synthetic"): here a copy whose spec counts one validation row more.
    other = str(tmp_path / "other_dataset")
    shutil.copytree(ds, other)
    spec = DatasetSpec.load(other)
    dataclasses.replace(
        spec, split_sizes={**spec.split_sizes, "valid": spec.split_sizes["valid"] + 1}
    ).save(other)
    other_argv = list(argv)
    other_argv[other_argv.index("--dataset") + 1] = other
    with pytest.raises(SystemExit, match="another dataset"):
        tune.main([*other_argv, "--trials", "3"])
    assert len(study_of(out, ds).get_trials()) == 2


@pytest.mark.slow
def test_rerun_resumes_the_study_and_pruned_trial_stops_early(tmp_path, tiny_trained_run, capsys):
    ds, out = tiny_trained_run.dataset_dir, str(tmp_path / "tune")
    # An AUC is never above 2: this pruner prunes every trial at its first report.
    always = optuna.pruners.ThresholdPruner(lower=2.0)
    kwargs = dict(
        output_dir=out,
        base_config=tiny_base_config(ds),
        seed=0,
        epochs=2,
        space=TINY_SPACE,
        pruner=always,
    )
    tune.tune(ds, trials=1, **kwargs)
    metrics_0 = os.path.join(out, "trials", "0", "metrics.json")
    mtime_0 = os.path.getmtime(metrics_0)
    capsys.readouterr()

    result = tune.tune(ds, trials=2, **kwargs)
    printed = capsys.readouterr().out
    assert "1 of 2 trials finished" in printed
    lines = [line for line in printed.splitlines() if line.startswith("trial ")]
    assert len(lines) == 1 and lines[0].startswith("trial 1:") and "pruned at epoch 1" in lines[0]
    assert os.path.getmtime(metrics_0) == mtime_0  # trial 0 was not rerun

    trials = study_of(out, ds).get_trials()
    # The default trial is exempt from pruning, so the search keeps a complete baseline.
    assert [t.state for t in trials] == [
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.PRUNED,
    ]
    with open(metrics_0) as fh:
        assert json.load(fh)["epochs_run"] == 2
    with open(os.path.join(out, "trials", "1", "metrics.json")) as fh:
        assert json.load(fh)["epochs_run"] == 1
    assert result["best_trial"] == 0 and result["states"] == {"COMPLETE": 1, "PRUNED": 1}
    with open(os.path.join(out, "trials.csv")) as fh:
        assert [r["state"] for r in csv.DictReader(fh)] == ["COMPLETE", "PRUNED"]

    # A study that already holds its trials runs none and rewrites the outputs.
    again = tune.tune(ds, trials=2, **kwargs)
    assert again["best_trial"] == 0 and len(study_of(out, ds).get_trials()) == 2
