"""Warm-starting a run on a dataset that extends the run's (feseq_tf.warm_start)."""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import pytest

from feseq_tf import train, warm_start
from feseq_tf.schema import DatasetSpec
from tests.conftest import TINY_MODEL_OVERRIDES

pytest_plugins = ("tests.days_log",)  # fixture: days_datasets


def _argv(dataset: str, out: str, *extra: str) -> list[str]:
    argv = ["--dataset", dataset, "--output-dir", out, "--batch-size", "128", "--seed", "1",
            "--no-attention-summaries", *extra]
    if "--export-dir" not in extra:
        argv.append("--no-export")
    for item in TINY_MODEL_OVERRIDES:
        argv += ["--set", item]
    return argv


@pytest.fixture(scope="module")
def day1_exported(days_datasets, tmp_path_factory):
    """The tiny FESeq trained one epoch on day 1 and exported as version 1 of an export
    base: (run directory, export base directory)."""
    dirs, _ = days_datasets
    root = tmp_path_factory.mktemp("day1_run")
    out, export_dir = str(root / "run"), str(root / "models")
    train.main(_argv(dirs["day1"], out, "--epochs", "1", "--export-dir", export_dir))
    return out, export_dir


@pytest.fixture(scope="module")
def day1_run(day1_exported):
    return day1_exported[0]


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


def _predict(url: str, instance: dict) -> float:
    import http.client
    import urllib.parse

    parsed = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    try:
        conn.request("POST", "/v1/models/feseq:predict", body=json.dumps({"instances": [instance]}),
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        reply = json.loads(response.read())
        assert response.status == 200, reply
    finally:
        conn.close()
    return float(np.ravel(reply["predictions"])[0])


@pytest.mark.slow
def test_the_next_version_scores_a_new_id_through_its_own_row_once_the_server_swaps_it_in(
    days_datasets, day1_exported, tmp_path
):
    from export import devserver
    from export.contract import CONTRACT_FILE
    from feseq_tf.schema import read_vocab

    dirs, _ = days_datasets
    run1, export_dir = day1_exported
    base = os.path.join(export_dir, "feseq")
    old_users = read_vocab(dirs["day1"], "user")
    new_user = read_vocab(dirs["day2"], "user")[len(old_users)]  # new on day 2
    with open(os.path.join(base, "1", CONTRACT_FILE)) as fh:
        instance = json.load(fh)["example_request"]["instances"][0]
    with_new = {**instance, "user": new_user}
    with_unknown = {**instance, "user": "a-user-no-day-has"}
    with devserver.BackgroundServer(base, "feseq", poll_wait_s=0.1) as server:
        versions = server.model_server.versions["feseq"]
        assert versions.current.version == 1
        # version 1 has no row for the new user: its OOV row scores it
        assert _predict(server.url, with_new) == _predict(server.url, with_unknown)
        out = str(tmp_path / "day2_run")
        metrics = train.main(_argv(dirs["day2"], out, "--warm-start", run1,
                                   "--export-dir", export_dir))
        assert metrics["export_path"] == os.path.join(base, "2")  # the next version
        deadline = time.monotonic() + 120  # the server's own polling swaps it in
        while versions.current.version != 2:
            assert time.monotonic() < deadline, "version 2 was not swapped in"
            time.sleep(0.1)
        # version 2 scores the new user through the user's own row
        assert abs(_predict(server.url, with_new) - _predict(server.url, with_unknown)) > 1e-6


def test_a_model_scores_a_later_day_with_the_ids_it_has_no_row_for_as_oov(days_datasets, day1_run):
    """``benchmarks.continual.score``: day 1's model on day 2's records, whose new ids lie
    beyond its tables, gives what it gives with those ids written as OOV."""
    from benchmarks.continual import score
    from feseq_tf import metrics
    from feseq_tf.data import read_columns
    from feseq_tf.evaluate import load_model
    from feseq_tf.schema import OOV_ID, SPLITS

    dirs, _ = days_datasets
    got = score(day1_run, dirs["day2"])
    model = load_model(day1_run)
    spec = model.spec
    names = spec.model_input_names() + [spec.label]
    parts = [read_columns(dirs["day2"], s, names) for s in SPLITS]
    cols = {n: np.concatenate([p[n] for p in parts]) for n in names}
    beyond = 0
    for f in spec.fields:
        for name in (f.name, f.hist_name) if f.is_categorical else ():
            if name in cols:
                new = cols[name] >= f.vocab_size
                beyond += int(new.sum())
                cols[name] = np.where(new, OOV_ID, cols[name])
    assert beyond > 0  # day 2 has ids day 1's model has no row for
    pred = model.predict({n: cols[n] for n in spec.model_input_names()}, verbose=0).ravel()
    assert got["rows"] == len(pred) == sum(DatasetSpec.load(dirs["day2"]).split_sizes.values())
    assert got["auc"] == pytest.approx(metrics.auc(cols[spec.label], pred), abs=1e-9)
