"""Warm-starting a run on a dataset that extends the run's (feseq_tf.warm_start)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from feseq_tf import train, warm_start
from feseq_tf.schema import DatasetSpec
from tests.conftest import TINY_MODEL_OVERRIDES

pytest_plugins = ("tests.days_log",)  # fixture: days_datasets


def _argv(dataset: str, out: str, *extra: str) -> list[str]:
    argv = ["--dataset", dataset, "--output-dir", out, "--batch-size", "128", "--seed", "1",
            "--no-attention-summaries", "--no-export", *extra]
    for item in TINY_MODEL_OVERRIDES:
        argv += ["--set", item]
    return argv


@pytest.fixture(scope="module")
def day1_run(days_datasets, tmp_path_factory):
    """The tiny FESeq trained one epoch on day 1: its run directory."""
    dirs, _ = days_datasets
    out = str(tmp_path_factory.mktemp("day1_run") / "run")
    train.main(_argv(dirs["day1"], out, "--epochs", "1"))
    return out


def _model_for(dataset_dir: str, run_dir: str):
    """The model the warm-started run builds (the same config, the new spec)."""
    from feseq_tf.config import ExperimentConfig
    from feseq_tf.models.registry import build_model

    with open(os.path.join(run_dir, "config.json")) as fh:
        config = ExperimentConfig.from_dict(json.load(fh))
    spec = DatasetSpec.load(dataset_dir)
    model_config = config.model
    if model_config.id_dropout == "auto":  # resolved by the run; any value builds alike
        import dataclasses

        model_config = dataclasses.replace(model_config, id_dropout=0.0)
    return build_model(config.model_name, spec, model_config, name=config.model_name), spec


def test_old_rows_are_kept_bit_for_bit_and_new_rows_are_freshly_drawn(days_datasets, day1_run):
    from feseq_tf.evaluate import load_model

    dirs, _ = days_datasets
    model, spec = _model_for(dirs["day2"], day1_run)
    drawn = [np.array(w.numpy()) for w in model.weights]
    info = warm_start.warm_start(model, dirs["day2"], spec, day1_run, "feseq")
    trained = load_model(day1_run)
    grown = 0
    for old, new, fresh in zip(trained.weights, model.weights, drawn, strict=True):
        old_v, new_v = np.asarray(old.numpy()), np.asarray(new.numpy())
        rows = old_v.shape[0] if old_v.ndim else None
        np.testing.assert_array_equal(new_v[:rows], old_v, err_msg=new.path)  # bit for bit
        if new_v.shape != old_v.shape:
            grown += 1
            np.testing.assert_array_equal(new_v[rows:], fresh[rows:], err_msg=new.path)
            assert np.std(new_v[rows:]) > 0  # drawn rows, not zeros
    assert grown >= 2  # the user and item tables at least
    day1, day2 = (DatasetSpec.load(dirs[k]) for k in ("day1", "day2"))
    assert info["rows_gained"]["item"] == day2.field("item").vocab_size - day1.field("item").vocab_size > 0
    assert info["rows_gained"]["h"] == 0  # hashed: nothing to grow


def test_a_warm_started_run_trains_one_pass_and_records_where_it_started(days_datasets, day1_run,
                                                                         tmp_path):
    dirs, _ = days_datasets
    out = str(tmp_path / "day2_run")
    metrics = train.main(_argv(dirs["day2"], out, "--warm-start", day1_run))
    assert metrics["epochs_run"] == 1
    assert metrics["warm_start"]["run_dir"] == os.path.abspath(day1_run)
    assert metrics["warm_start"]["rows_gained"]["user"] > 0
    with open(os.path.join(out, "config.json")) as fh:
        train_config = json.load(fh)["train"]
    assert train_config["epochs"] == 1 and train_config["redraw_embeddings"] is False
    assert np.isfinite(metrics["test"]["auc"])
    # the user's own settings win over the warm-start recipe
    cfg = train.resolve_config("days", spec=DatasetSpec.load(dirs["day2"]),
                               overrides=train.warm_start_config({"train": {"epochs": 3}}))
    assert cfg.train.epochs == 3 and cfg.train.redraw_embeddings is False


def test_a_dataset_that_does_not_extend_the_runs_is_refused_naming_the_field(
    days_datasets, day1_run, tmp_path
):
    dirs, _ = days_datasets
    # every day prepared at once numbers its values afresh: not an extension of day 1
    with pytest.raises(train.UsageError, match="vocabulary of field '(user|item|cat)' was reordered"):
        train.run(train.resolve_config("days", spec=DatasetSpec.load(dirs["all"])),
                  dirs["all"], str(tmp_path / "r"), warm_start=day1_run, export=False,
                  attention_summaries=False)
    day1 = DatasetSpec.load(dirs["day1"])
    day2 = DatasetSpec.load(dirs["day2"])
    import dataclasses

    fewer = dataclasses.replace(day2, fields=tuple(f for f in day2.fields if f.name != "cat"))
    with pytest.raises(ValueError, match="field 'cat' of the warm-start run's data is not in"):
        warm_start.check_extension(day1, fewer, dirs["day1"], dirs["day2"])
    retyped = dataclasses.replace(day2, fields=tuple(
        dataclasses.replace(f, role="context") if f.name == "user" else f for f in day2.fields))
    with pytest.raises(ValueError, match="field 'user' was retyped"):
        warm_start.check_extension(day1, retyped, dirs["day1"], dirs["day2"])
    shrunk = dataclasses.replace(day2, fields=tuple(
        dataclasses.replace(f, vocab_size=3) if f.name == "item" else f for f in day2.fields))
    with pytest.raises(ValueError, match="vocabulary of field 'item' shrank"):
        warm_start.check_extension(day1, shrunk, dirs["day1"], dirs["day2"])


def test_warm_start_needs_a_finished_run_of_the_same_model(days_datasets, day1_run, tmp_path):
    dirs, _ = days_datasets
    model, spec = _model_for(dirs["day2"], day1_run)
    with pytest.raises(ValueError, match="no finished run"):
        warm_start.warm_start(model, dirs["day2"], spec, str(tmp_path), "feseq")
    with pytest.raises(ValueError, match="trained 'feseq', this run 'din'"):
        warm_start.warm_start(model, dirs["day2"], spec, day1_run, "din")
    copy = tmp_path / "copy"
    shutil.copytree(day1_run, copy)
    assert warm_start.check_extension(
        DatasetSpec.load(str(copy)), spec, str(copy), dirs["day2"]
    )["item"] > 0
