"""End-to-end tests of the training and evaluation entry points on tiny synthetic data."""

import dataclasses
import json
import math
import os

import pytest


def test_train_main_writes_metrics_model_and_self_contained_run_dir(tiny_trained_run):
    run = tiny_trained_run.run_dir
    for name in ("metrics.json", "model.keras", "config.json", "dataset_spec.json", "vocab"):
        assert os.path.exists(os.path.join(run, name)), name
    export_path = tiny_trained_run.metrics["export_path"]
    assert export_path.startswith(os.path.join(run, "export", "feseq"))
    assert os.path.exists(os.path.join(export_path, "saved_model.pb"))
    with open(os.path.join(run, "metrics.json")) as fh:
        metrics = json.load(fh)
    test = metrics["test"]
    for key in ("auc", "gauc", "logloss", "oracle_auc", "captured_lift"):
        assert math.isfinite(test[key]), key
    assert 0.0 <= test["auc"] <= 1.0 and test["logloss"] > 0
    assert test["oracle_auc"] > 0.6  # the generator's true probabilities rank clicks well
    assert test["captured_lift"] == pytest.approx((test["auc"] - 0.5) / (test["oracle_auc"] - 0.5))
    assert metrics["epochs_run"] == 1 and len(metrics["history"]) == 1
    assert "val_auc" in metrics["history"][0]
    with open(os.path.join(run, "dataset_spec.json")) as fh:
        sizes = json.load(fh)["split_sizes"]
    assert test["samples"] == sizes["test"] and metrics["valid"]["samples"] == sizes["valid"]


def test_evaluate_cli_reproduces_the_test_metrics_of_training(tiny_trained_run, tmp_path):
    from feseq_tf import evaluate

    out = os.path.join(tmp_path, "eval.json")
    result = evaluate.main(
        ["--model", tiny_trained_run.run_dir, "--dataset", tiny_trained_run.dataset_dir,
         "--output", out]
    )
    expected = tiny_trained_run.metrics["test"]
    assert result["auc"] == pytest.approx(expected["auc"], abs=1e-6)
    assert result["logloss"] == pytest.approx(expected["logloss"], abs=1e-6)
    with open(out) as fh:
        assert json.load(fh)["test"]["auc"] == pytest.approx(result["auc"])


@pytest.mark.slow
def test_same_seed_gives_same_metrics(tmp_path):
    # In this process, one run after the other (a deterministic run leaves op
    # determinism as it found it, so it does not leak into other tests).
    from feseq_tf import train
    from tests.conftest import TINY_MODEL_OVERRIDES, TINY_SYNTHETIC_ROWS

    results = []
    for name in ("a", "b"):
        argv = ["--seed", "7", "--deterministic", "--no-attention-summaries", "--no-export",
                "--synthetic-rows", str(TINY_SYNTHETIC_ROWS), "--epochs", "2", "--batch-size",
                "256", "--data-dir", str(tmp_path / "data"), "--output-dir", str(tmp_path / name)]
        for item in TINY_MODEL_OVERRIDES:
            argv += ["--set", item]
        results.append(train.main(argv))
    for key in ("auc", "gauc", "logloss"):
        assert results[0]["test"][key] == results[1]["test"][key], key
    assert results[0]["history"][-1]["loss"] == results[1]["history"][-1]["loss"]


def test_unknown_dataset_directory_is_a_clear_error(tmp_path):
    from feseq_tf import train

    with pytest.raises(SystemExit, match="neither one of"):
        train.main(["--dataset", str(tmp_path), "--output-dir", str(tmp_path / "run")])


def test_eleme_without_files_says_where_to_get_them(tmp_path):
    from feseq_tf import train

    with pytest.raises(SystemExit, match="tianchi.aliyun.com/dataset/131047"):
        train.main(["--dataset", "eleme", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "r")])


@pytest.mark.parametrize(
    "override, message",
    [("model.pooling=sum", "pooling must be one of"), ("model.nope=1", "Unknown keys"),
     ("pooling=mean", "SECTION.KEY=VALUE")],
)
def test_bad_config_overrides_are_rejected(tiny_trained_run, tmp_path, override, message):
    from feseq_tf import train

    with pytest.raises(SystemExit, match=message):
        train.main(["--dataset", tiny_trained_run.dataset_dir, "--set", override,
                    "--output-dir", str(tmp_path / "r")])


def test_existing_synthetic_data_of_another_size_is_not_silently_reused(tiny_trained_run, tmp_path):
    from feseq_tf import train

    data_dir = os.path.dirname(tiny_trained_run.dataset_dir)
    with pytest.raises(SystemExit, match="pass another --data-dir"):
        train.main(["--data-dir", data_dir, "--synthetic-rows", "12345",
                    "--output-dir", str(tmp_path / "r")])


def test_existing_synthetic_data_of_another_time_unit_is_not_silently_reused(tiny_trained_run, tmp_path):
    import shutil

    from feseq_tf import train
    from feseq_tf.schema import DatasetSpec

    data_dir = str(tmp_path / "data")
    shutil.copytree(tiny_trained_run.dataset_dir, os.path.join(data_dir, "synthetic"))
    spec = DatasetSpec.load(os.path.join(data_dir, "synthetic"))
    assert spec.time_unit == 60.0  # what the pipeline writes
    dataclasses.replace(spec, time_unit=1.0).save(os.path.join(data_dir, "synthetic"))
    with pytest.raises(SystemExit, match="units of 1 minutes"):
        train.main(["--data-dir", data_dir, "--output-dir", str(tmp_path / "r")])


@pytest.mark.slow
def test_run_api_trains_from_a_typed_config_and_callbacks_see_exact_validation_auc(
    tiny_trained_run, tmp_path
):
    import keras

    from feseq_tf import train

    seen = []

    class Probe(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(dict(logs))

    overrides = {"model": {"mlp_units": [8], "pooling_hidden": 8, "embedding_dim": 4,
                           "transformer_heads": 2},
                 "train": {"epochs": 2, "batch_size": 512, "patience": 5}}
    config = train.resolve_config("synthetic", overrides=overrides, model_name="din")
    assert config.model_name == "din" and config.train.epochs == 2
    metrics = train.run(config, tiny_trained_run.dataset_dir, str(tmp_path / "run"),
                        attention_summaries=False, export=False, callbacks=[Probe()], verbose=0)
    assert metrics["model"] == "din" and metrics["epochs_run"] == 2
    assert metrics["stopped_early"] is False
    assert [round(h["val_auc"], 10) for h in metrics["history"]] == [
        round(s["val_auc"], 10) for s in seen
    ]
    assert 0.0 <= metrics["test"]["auc"] <= 1.0
    with open(tmp_path / "run" / "config.json") as fh:
        assert json.load(fh)["model_name"] == "din"


def test_run_api_rejects_a_directory_without_a_dataset(tmp_path):
    from feseq_tf import train
    from feseq_tf.config import preset

    with pytest.raises(train.UsageError, match="not a prepared dataset"):
        train.run(preset("synthetic"), str(tmp_path), str(tmp_path / "run"))
    with pytest.raises(train.UsageError, match="Unknown keys"):
        train.resolve_config("synthetic", overrides={"model": {"nope": 1}})
