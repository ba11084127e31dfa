"""PreparedDataset: a training run reads dataset_spec.json and lists the split files once,
and training on the opened dataset gives exactly what training on its directory gives."""

from __future__ import annotations

import collections
import dataclasses
import glob
import os
import shutil

import numpy as np
import pytest

from feseq_tf import data as data_lib
from feseq_tf.dataset import PreparedDataset, as_prepared
from feseq_tf.schema import SPEC_FILE, SPLITS, DatasetSpec
from tests.conftest import TINY_MODEL_OVERRIDES, TINY_SYNTHETIC_ROWS


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory) -> str:
    from pipelines.synthetic import make_synthetic_dataset

    out = str(tmp_path_factory.mktemp("prepared") / "data")
    make_synthetic_dataset(out, num_rows=TINY_SYNTHETIC_ROWS, progress=False)
    return out


@dataclasses.dataclass
class Reads:
    """What a block of code read of one prepared dataset directory."""

    spec_loads: int = 0  # DatasetSpec.load calls on its dataset_spec.json
    listings: collections.Counter = dataclasses.field(default_factory=collections.Counter)


def start_counting(monkeypatch: pytest.MonkeyPatch, directory: str) -> Reads:
    """A :class:`Reads` filled in from now on: every ``DatasetSpec.load`` of
    ``<directory>/dataset_spec.json`` and every ``glob.glob`` of
    ``<directory>/<split>/*.tfrecord`` (the listing of a split's shards), per split."""
    reads = Reads()
    spec_file = os.path.realpath(os.path.join(directory, SPEC_FILE))
    split_dirs = {os.path.realpath(os.path.join(directory, split)): split for split in SPLITS}
    load, listing = DatasetSpec.load.__func__, glob.glob

    def counting_load(cls, path):
        full = os.path.join(path, SPEC_FILE) if os.path.isdir(path) else path
        if os.path.realpath(full) == spec_file:
            reads.spec_loads += 1
        return load(cls, path)

    def counting_glob(pattern, *args, **kwargs):
        head, tail = os.path.split(pattern)
        split = split_dirs.get(os.path.realpath(head))
        if split and tail == "*.tfrecord":
            reads.listings[split] += 1
        return listing(pattern, *args, **kwargs)

    monkeypatch.setattr(DatasetSpec, "load", classmethod(counting_load))
    monkeypatch.setattr(glob, "glob", counting_glob)
    return reads


@pytest.fixture
def count_reads(monkeypatch):
    """``count_reads(directory)``: :func:`start_counting` undone after the test."""
    return lambda directory: start_counting(monkeypatch, directory)


# ---- the object ----------------------------------------------------------------------------
def test_open_reads_the_spec_once_and_lists_every_split_once(prepared_dir, count_reads):
    reads = count_reads(prepared_dir)
    dataset = PreparedDataset.open(prepared_dir)
    assert reads.spec_loads == 1
    assert reads.listings == {split: 1 for split in SPLITS}

    assert dataset.directory == prepared_dir
    assert dataset.spec == DatasetSpec.load(prepared_dir)
    for split in SPLITS:
        assert dataset.split_files(split) == sorted(
            glob.glob(os.path.join(prepared_dir, split, "*.tfrecord"))
        )
    assert dataset.sizes == dataset.spec.split_sizes
    assert sum(dataset.sizes.values()) > 0


def test_readers_of_an_opened_dataset_read_no_file_again(prepared_dir, count_reads):
    dataset = PreparedDataset.open(prepared_dir)
    reads = count_reads(prepared_dir)
    assert data_lib.count_examples(dataset, "train") == dataset.sizes["train"]
    columns = data_lib.read_columns(dataset, "valid")
    batches = list(data_lib.make_dataset(dataset, "valid", 64))
    assert sum(int(y.shape[0]) for _, y in batches) == len(columns[dataset.spec.label])
    assert (reads.spec_loads, dict(reads.listings)) == (0, {})


def test_readers_give_the_same_batches_for_the_directory_and_the_object(prepared_dir):
    dataset = PreparedDataset.open(prepared_dir)
    by_dir = list(data_lib.make_dataset(prepared_dir, "test", 128))
    by_object = list(data_lib.make_dataset(dataset, "test", 128))
    assert len(by_dir) == len(by_object)
    for (x_dir, y_dir), (x_obj, y_obj) in zip(by_dir, by_object, strict=True):
        np.testing.assert_array_equal(y_dir.numpy(), y_obj.numpy())
        for name in x_dir:
            np.testing.assert_array_equal(x_dir[name].numpy(), x_obj[name].numpy())


def test_as_prepared_keeps_an_opened_dataset_and_opens_a_directory(prepared_dir, count_reads):
    dataset = PreparedDataset.open(prepared_dir)
    assert as_prepared(dataset) is dataset
    reads = count_reads(prepared_dir)
    opened = as_prepared(prepared_dir)
    assert reads.spec_loads == 1
    assert opened == dataset


def test_as_prepared_rejects_what_is_not_a_dataset():
    with pytest.raises(TypeError, match="dataset must be a PreparedDataset"):
        as_prepared(42)


def test_open_without_a_spec_names_the_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a prepared dataset directory"):
        PreparedDataset.open(str(tmp_path))


def test_a_split_without_shards_fails_when_it_is_read(prepared_dir, tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(os.path.join(prepared_dir, SPEC_FILE), partial / SPEC_FILE)
    shutil.copytree(os.path.join(prepared_dir, "train"), partial / "train")
    dataset = PreparedDataset.open(str(partial))  # a missing split is no error until read
    assert dataset.files["valid"] == ()
    assert len(dataset.split_files("train")) >= 1
    with pytest.raises(FileNotFoundError, match="No TFRecord shards for split 'valid'"):
        dataset.split_files("valid")
    with pytest.raises(FileNotFoundError, match="No TFRecord shards for split 'valid'"):
        data_lib.split_files(str(partial), "valid")
    with pytest.raises(ValueError, match="split must be one of"):
        dataset.split_files("holdout")


def test_examples_counts_a_split_whose_size_the_spec_does_not_record(prepared_dir):
    dataset = PreparedDataset.open(prepared_dir)
    unrecorded = dataclasses.replace(
        dataset, spec=dataclasses.replace(dataset.spec, split_sizes={})
    )
    assert unrecorded.sizes == {}
    for split in SPLITS:
        assert unrecorded.examples(split) == dataset.sizes[split]


# ---- a training run ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Trained:
    metrics: dict
    weights: list[np.ndarray]
    reads: Reads


def _train(dataset, output_dir: str) -> dict:
    """Two epochs of the tiny FESeq with the preset's seed, op determinism, the ``"auto"``
    id dropout (the cold-start rates read the train and valid splits) and attention
    summaries."""
    from feseq_tf import train

    overrides = train.parse_overrides(
        [
            *TINY_MODEL_OVERRIDES,
            "model.id_dropout=auto",
            "train.epochs=2",
            "train.batch_size=256",
        ]
    )
    config = train.resolve_config("synthetic", overrides=overrides)
    return train.run(config, dataset, output_dir, export=False, deterministic=True, verbose=0)


def _weights(run_dir: str) -> list[np.ndarray]:
    import keras

    import feseq_tf.models  # noqa: F401  (registers the models)

    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    return [np.asarray(w) for w in model.get_weights()]


@pytest.fixture(scope="module")
def runs(prepared_dir, tmp_path_factory) -> dict[str, Trained]:
    """The same run twice: given the directory string, and given the opened dataset;
    what each read of the dataset directory once ``train.run`` was called."""
    out: dict[str, Trained] = {}
    for kind in ("directory", "object"):
        run_dir = str(tmp_path_factory.mktemp(f"run_{kind}"))
        given = prepared_dir if kind == "directory" else PreparedDataset.open(prepared_dir)
        with pytest.MonkeyPatch.context() as monkeypatch:
            reads = start_counting(monkeypatch, prepared_dir)  # once the object is open
            metrics = _train(given, run_dir)
        out[kind] = Trained(metrics, _weights(run_dir), reads)
    return out


@pytest.mark.slow
def test_a_training_run_reads_the_spec_once_and_lists_each_split_once(runs):
    # Given the directory, train.run opens it: one load of dataset_spec.json and one
    # listing per split, for the cold-start rates, the input pipeline, two epochs of
    # validation, the attention probe batch and the test evaluation together.
    reads = runs["directory"].reads
    assert reads.spec_loads == 1
    assert reads.listings == {split: 1 for split in SPLITS}
    # Given the opened dataset, the run reads neither again.
    reads = runs["object"].reads
    assert (reads.spec_loads, dict(reads.listings)) == (0, {})


@pytest.mark.slow
def test_training_on_the_directory_and_on_the_opened_dataset_is_bit_identical(runs):
    by_dir, by_object = runs["directory"], runs["object"]
    assert by_dir.metrics["epochs_run"] == 2
    assert by_dir.metrics["test"] == by_object.metrics["test"]
    assert by_dir.metrics["valid"] == by_object.metrics["valid"]
    assert by_dir.metrics["history"] == by_object.metrics["history"]
    assert by_dir.metrics["dataset_dir"] == by_object.metrics["dataset_dir"]
    assert len(by_dir.weights) == len(by_object.weights)
    for a, b in zip(by_dir.weights, by_object.weights, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_deterministic_runs_leave_op_determinism_off_for_later_xla_compiles(runs):
    from tensorflow.python.framework import config as tf_config

    assert len(runs) == 2  # both ran with deterministic=True in this process
    assert not tf_config.is_op_determinism_enabled()
