"""Fixtures and helpers of the attention-summary, TensorBoard-plugin and browser tests.

* ``tiny_run`` (session): a 2-epoch training run of a tiny FESeq on a 3,000-row
  synthetic dataset with :class:`feseq_tf.callbacks.AttentionSummaries`; it records
  every matrix the callback wrote, so tests compare what TensorBoard serves with it.
* :class:`TensorBoardServer`: ``python -m feseq_tf.tensorboard_plugin`` (TensorBoard
  with the plugin) on 127.0.0.1 and a free port, stopped on exit.
* :func:`browser_paths`: Chromium and chromedriver, or a skip outside CI.

Test modules load the fixtures with ``pytest_plugins = ("tests.tb_fixtures",)``, which
registers them once, so the session-scoped run is shared by all of them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARTIFACTS_DIR = os.environ.get("FESEQ_TEST_ARTIFACTS", os.path.join(REPO_ROOT, "artifacts"))
"""Where tests keep their artefacts (screenshots); ``artifacts/`` is git-ignored."""

TINY_MODEL = {
    "embedding_dim": 4,
    "transformer_heads": 2,
    "pooling_hidden": 16,
    "mlp_units": [16],
}


@dataclasses.dataclass
class TinyRun:
    """A finished tiny training run and the matrices its callback wrote."""

    dataset_dir: str
    run_dir: str
    logdir: str  # <run_dir>/logs: what `tensorboard --logdir` gets
    attention_dir: str  # <run_dir>/logs/attention: the callback's run
    spec: Any
    written: dict[int, dict[str, Any]]  # step -> tag -> AttentionMatrix
    field_names: list[str]


def make_tiny_run(root: str, *, rows: int = 3000, epochs: int = 2, seed: int = 2024) -> TinyRun:
    """Generates a synthetic dataset under ``root`` and trains a tiny FESeq on it."""
    from feseq_tf import training
    from feseq_tf.callbacks import SUMMARY_SUBDIR, AttentionSummaries
    from feseq_tf.config import preset
    from feseq_tf.explain import input_field_names
    from feseq_tf.models.feseq import FESeq
    from feseq_tf.schema import DatasetSpec
    from pipelines import synthetic

    dataset_dir = os.path.join(root, "data")
    run_dir = os.path.join(root, "run")
    synthetic.make_synthetic_dataset(dataset_dir, num_rows=rows, seed=seed, progress=False)
    spec = DatasetSpec.load(dataset_dir)
    config = preset("synthetic").override({
        "model": TINY_MODEL,
        "train": {"epochs": epochs, "batch_size": 256, "eval_batch_size": 1024, "patience": epochs},
    })
    written: dict[int, dict[str, Any]] = {}

    class Recording(AttentionSummaries):
        def write(self, step: int) -> None:
            super().write(step)
            written[step] = {m.tag: m for m in self.compute()}

    attention_dir = os.path.join(run_dir, "logs", SUMMARY_SUBDIR)
    callback = Recording.from_dataset(dataset_dir, attention_dir, probe_size=256, spec=spec)
    training.set_seed(seed)
    model = FESeq(spec, config.model, name="feseq")
    training.fit(model, dataset_dir, run_dir, config, jit=False, verbose=0, extra_callbacks=[callback])
    model.save(os.path.join(run_dir, "model.keras"))
    return TinyRun(
        dataset_dir=dataset_dir,
        run_dir=run_dir,
        logdir=os.path.join(run_dir, "logs"),
        attention_dir=attention_dir,
        spec=spec,
        written=written,
        field_names=input_field_names(spec, config.model),
    )


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """One tiny training run with attention summaries, shared by the session's workers
    (trained once under a file lock, handed over pickled). Read only."""
    import pickle

    from tests.conftest import once_per_session

    def make(root: str) -> dict:
        path = os.path.join(root, "tiny_run.pickle")
        with open(path, "wb") as fh:
            pickle.dump(make_tiny_run(root), fh)
        return {"pickle": path}

    with open(once_per_session(tmp_path_factory, "attention_run", make)["pickle"], "rb") as fh:
        return pickle.load(fh)


# ---- TensorBoard -------------------------------------------------------------------------
def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 30.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read().decode("utf-8"))


def get_status(url: str, timeout: float = 30.0) -> int:
    """The HTTP status of a GET (errors included)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


class TensorBoardServer:
    """TensorBoard with the attention plugin on 127.0.0.1, as a context manager.

    Args:
        logdir: str. The log directory.
        command: list of str. The command to run before the flags. Defaults to
            ``python -m feseq_tf.tensorboard_plugin`` (plugin added explicitly); pass
            ``["tensorboard"]`` to test the installed entry point.
        timeout: float. Seconds to wait for the server.
    """

    def __init__(self, logdir: str, command: list[str] | None = None, timeout: float = 90.0):
        self.logdir = logdir
        self.command = command or [sys.executable, "-m", "feseq_tf.tensorboard_plugin"]
        self.timeout = timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen | None = None
        self._log = None

    def data(self, route: str, **params: Any) -> Any:
        """JSON of ``/data/<route>`` with query ``params``."""
        query = ("?" + urllib.parse.urlencode(params)) if params else ""
        return get_json(f"{self.url}/data/{route}{query}")

    def __enter__(self) -> TensorBoardServer:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p
        ))
        self._log = open(os.path.join(self.logdir, os.pardir, f"tensorboard-{self.port}.log"), "w")
        self._proc = subprocess.Popen(
            self.command + ["--logdir", self.logdir, "--host", "127.0.0.1", "--port", str(self.port),
                            "--reload_interval", "2"],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT,
        )
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            if self._proc.poll() is not None:
                self.__exit__(None, None, None)
                raise RuntimeError(f"TensorBoard exited with {self._proc.returncode}: {self.output()}")
            try:
                get_json(f"{self.url}/data/plugins_listing", timeout=5)
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        self.__exit__(None, None, None)
        raise RuntimeError(f"TensorBoard did not answer within {self.timeout}s: {self.output()}")

    def output(self) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        with open(self._log.name) as fh:
            return fh.read()[-4000:]

    def __exit__(self, *exc: Any) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._log is not None:
            self._log.close()


def wait_for(predicate, timeout: float = 60.0, interval: float = 1.0) -> Any:
    """Calls ``predicate`` until it returns a truthy value (returned) or time runs out."""
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value or time.time() > deadline:
            return value
        time.sleep(interval)


@pytest.fixture(scope="session")
def tensorboard_server(tiny_run: TinyRun) -> Iterator[TensorBoardServer]:
    """TensorBoard (with the plugin) serving the tiny run's logs, up to its last step."""
    last = max(tiny_run.written)
    with TensorBoardServer(tiny_run.logdir) as server:

        def loaded() -> bool:
            listing = server.data("plugins_listing")
            if not listing.get("feseq_attention", {}).get("enabled"):
                return False
            steps = server.data("plugin/feseq_attention/steps", run="attention",
                                tag="attention/input_fields")
            return bool(steps) and steps[-1]["step"] == last

        if not wait_for(loaded, timeout=60):
            raise RuntimeError(f"TensorBoard did not load the attention summaries: {server.output()}")
        yield server


# ---- the browser -------------------------------------------------------------------------
def browser_paths() -> tuple[str, str]:
    """Paths of Chromium and chromedriver; skips (outside CI only) when they are missing."""
    chromium = next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
    )
    driver = shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", chromium), ("chromedriver", driver)) if not path]
    if missing:
        reason = (
            f"{' and '.join(missing)} not installed (Debian packages `chromium` and "
            "`chromium-driver`; .ci/run installs them)"
        )
        if os.environ.get("CI"):
            pytest.fail(f"Browser test cannot run in CI: {reason}.")
        pytest.skip(reason)
    return chromium, driver


# ---- feseq_tf.train ------------------------------------------------------------------------
@pytest.fixture(scope="session")
def train_main_run_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The output directory of a tiny ``feseq_tf.train.main`` run (default options).

    Reuses the session's ``tiny_trained_run`` (tests/conftest.py) where it exists.
    """
    try:
        return request.getfixturevalue("tiny_trained_run").run_dir
    except pytest.FixtureLookupError:
        pass
    from feseq_tf import train

    root = str(tmp_path_factory.mktemp("train_main_run"))
    argv = ["--synthetic-rows", "3000", "--epochs", "1", "--batch-size", "256",
            "--data-dir", os.path.join(root, "data"), "--output-dir", os.path.join(root, "run")]
    for key, value in TINY_MODEL.items():
        argv += ["--set", f"model.{key}={json.dumps(value)}"]
    train.main(argv)
    return os.path.join(root, "run")
