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


@pytest.fixture(scope="session")
def tiny_trained_run(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """One tiny FESeq run on 3000 synthetic rows (1 epoch), shared by the session: the
    first xdist worker that needs it trains it under a file lock, the other reads it.
    Read only: tests that change a run copy it first."""
    root = os.path.join(_shared_root(tmp_path_factory), "tiny_trained_run")
    os.makedirs(root, exist_ok=True)
    done = os.path.join(root, "trained_run.json")
    with open(os.path.join(root, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not os.path.exists(done):
                run = train_tiny_run(root)
                with open(done + ".tmp", "w") as fh:
                    json.dump(dataclasses.asdict(run), fh)
                os.replace(done + ".tmp", done)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    with open(done) as fh:
        return TrainedRun(**json.load(fh))


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


@pytest.fixture(scope="session")
def tiny_baseline_suite(
    tiny_trained_run: TrainedRun, tmp_path_factory: pytest.TempPathFactory
) -> BaselineSuite:
    """Every baseline trained for one epoch (seed 1) on the tiny run's dataset, through
    ``feseq_tf.benchmark`` (which calls ``feseq_tf.train.main --model NAME``)."""
    from feseq_tf import benchmark

    output_dir = str(tmp_path_factory.mktemp("tiny_baseline_suite"))
    argv = ["--suite", "baselines", "--dataset", tiny_trained_run.dataset_dir, "--epochs", "1",
            "--batch-size", "512", "--output-dir", output_dir]
    for item in TINY_MODEL_OVERRIDES:
        argv += ["--set", item]
    benchmark.main(argv + ["--seeds", "1", "--models", "deepfm,autoint,dcnv2,din,bst,dmr"])
    return BaselineSuite(output_dir, argv, tiny_trained_run.dataset_dir)
