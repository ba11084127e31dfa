"""Shared pytest fixtures.

Fixtures here are session scoped and cheap by design (tiny synthetic data, one epoch,
a tiny model): they exist so that end-to-end tests share one training run instead of
each training its own.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os

import pytest

# A tiny FESeq: fast to train and export on a laptop CPU.
TINY_MODEL_OVERRIDES = (
    "model.mlp_units=[16]",
    "model.pooling_hidden=16",
    "model.embedding_dim=4",
    "model.transformer_heads=2",
)
TINY_SYNTHETIC_ROWS = 3000


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    """A finished training run.

    Attributes:
        run_dir: str. The training output directory (``model.keras``,
            ``dataset_spec.json``, ``vocab/``, ``config.json``, ``metrics.json``).
        dataset_dir: str. The prepared dataset it was trained on (TFRecord splits,
            vocabularies, and ``raw/`` with the raw synthetic Ele.me-layout files).
        metrics: dict. What ``feseq_tf.train.main`` returned.
    """

    run_dir: str
    dataset_dir: str
    metrics: dict


def train_tiny_run(root: str, extra_args: tuple[str, ...] = ()) -> TrainedRun:
    """Train the tiny FESeq for one epoch on tiny synthetic data under ``root``."""
    from feseq_tf import train

    data_dir = os.path.join(root, "data")
    run_dir = os.path.join(root, "run")
    argv = [
        "--synthetic-rows",
        str(TINY_SYNTHETIC_ROWS),
        "--epochs",
        "1",
        "--batch-size",
        "256",
        "--data-dir",
        data_dir,
        "--output-dir",
        run_dir,
    ]
    for item in TINY_MODEL_OVERRIDES:
        argv += ["--set", item]
    metrics = train.main(argv + list(extra_args))
    return TrainedRun(
        run_dir=run_dir, dataset_dir=os.path.join(data_dir, "synthetic"), metrics=metrics
    )


def _shared_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A directory every xdist worker of this session sees (the parent of the workers'
    own temporary roots); the session's temporary root without xdist."""
    base = tmp_path_factory.getbasetemp()
    return str(base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base)


def once_per_session(tmp_path_factory: pytest.TempPathFactory, name: str, make) -> dict:
    """``make(root)`` (a JSON-able dict) run once per session in a directory ``root`` that
    every xdist worker sees: the first worker that needs it runs it under a file lock, the
    others wait and read what it returned."""
    root = os.path.join(_shared_root(tmp_path_factory), name)
    os.makedirs(root, exist_ok=True)
    done = os.path.join(root, "done.json")
    with open(os.path.join(root, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not os.path.exists(done):
                result = make(root)
                with open(done + ".tmp", "w") as fh:
                    json.dump(result, fh)
                os.replace(done + ".tmp", done)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    with open(done) as fh:
        return json.load(fh)


@pytest.fixture(scope="session")
def tiny_trained_run(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """One tiny FESeq run on 3000 synthetic rows (1 epoch), shared by the session's
    workers (:func:`once_per_session`). Read only: tests that change a run copy it first."""
    made = once_per_session(tmp_path_factory, "tiny_trained_run",
                            lambda root: dataclasses.asdict(train_tiny_run(root)))
    return TrainedRun(**made)


@pytest.fixture(scope="session")
def tiny_exported_model(tiny_trained_run: TrainedRun) -> str:
    """The tiny run's SavedModel, ``<run_dir>/export/feseq/1`` (its parent is the model's
    base path): written by the training run itself, which calls
    ``export.savedmodel.export_run`` as ``python -m feseq_tf.train`` does. Read only:
    tests that add versions copy it into a base path of their own."""
    path = tiny_trained_run.metrics["export_path"]
    assert os.path.basename(path) == "1", path
    return path


@dataclasses.dataclass(frozen=True)
class BaselineSuite:
    """The six baselines trained by ``feseq_tf.benchmark --suite baselines --seeds 1``.

    Attributes:
        output_dir: str. The benchmark's ``--output-dir``; run ``<name>`` lives in
            ``<output_dir>/baselines/<name>/seed1``.
        argv: list of str. The benchmark arguments (rerun them to resume the suite).
        dataset_dir: str. The tiny prepared dataset.
    """

    output_dir: str
    argv: list
    dataset_dir: str

    def run_dir(self, name: str, seed: int = 1) -> str:
        return os.path.join(self.output_dir, "baselines", name, f"seed{seed}")

    def copy(self, directory: str) -> BaselineSuite:
        """The suite copied into ``directory`` (file times kept), its argv pointing there."""
        import shutil

        shutil.copytree(self.output_dir, directory)
        argv = list(self.argv)
        argv[argv.index("--output-dir") + 1] = directory
        return BaselineSuite(directory, argv, self.dataset_dir)


@pytest.fixture(scope="session")
def tiny_baseline_suite(
    tiny_trained_run: TrainedRun, tmp_path_factory: pytest.TempPathFactory
) -> BaselineSuite:
    """Every baseline trained for one epoch (seed 1) on the tiny run's dataset, through
    ``feseq_tf.benchmark`` (which calls ``feseq_tf.train.main --model NAME``); shared by
    the session's workers (:func:`once_per_session`). Read only: a test that adds runs
    works on a copy (:meth:`BaselineSuite.copy`)."""

    def make(root: str) -> dict:
        from feseq_tf import benchmark

        output_dir = os.path.join(root, "suite")
        argv = ["--suite", "baselines", "--dataset", tiny_trained_run.dataset_dir, "--epochs",
                "1", "--batch-size", "512", "--output-dir", output_dir]
        for item in TINY_MODEL_OVERRIDES:
            argv += ["--set", item]
        benchmark.main(argv + ["--seeds", "1", "--models", "deepfm,autoint,dcnv2,din,bst,dmr"])
        return {"output_dir": output_dir, "argv": argv, "dataset_dir": tiny_trained_run.dataset_dir}

    return BaselineSuite(**once_per_session(tmp_path_factory, "tiny_baseline_suite", make))
