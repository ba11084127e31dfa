"""The built wheel works on its own: installed (not editable) into a fresh virtual
environment, run from outside the checkout, it trains on tiny synthetic data and starts
the TensorBoard plugin's command line.

TensorFlow and the other dependencies come from the test's own environment
(``--system-site-packages``; the wheel is installed with ``--no-deps``). That environment
also holds the checkout's editable install, whose finder is appended to ``sys.meta_path``
by a ``.pth`` file; the venv's own site-packages come first on ``sys.path``, so the wheel's
copy must win, which the test proves from ``__file__`` of every top-level package.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = ("pyproject.toml", "requirements.txt", "README.md", "feseq_tf", "pipelines", "export")
TOP_LEVEL = ("feseq_tf", "pipelines", "export")


def _project_version() -> str:
    tomllib = pytest.importorskip("tomllib")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        return tomllib.load(fh)["project"]["version"]


def _build_wheel(tmp: str) -> str:
    """Build the wheel from a copy of the sources (the checkout gets no build/ folder)."""
    src = os.path.join(tmp, "src")
    os.makedirs(src)
    for name in SOURCES:
        path = os.path.join(ROOT, name)
        if os.path.isdir(path):
            shutil.copytree(path, os.path.join(src, name),
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(path, src)
    dist = os.path.join(tmp, "dist")
    # No build isolation: the build needs no network (setuptools and wheel are installed).
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-q", src, "-w", dist],
                   check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = glob.glob(os.path.join(dist, "*.whl"))
    return wheel


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "TF_CPP_MIN_LOG_LEVEL")}
    env["PYTHONNOUSERSITE"] = "1"
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


@pytest.mark.slow
def test_installed_wheel_trains_and_starts_the_plugin_outside_the_checkout(tmp_path):
    tmp = str(tmp_path)
    wheel = _build_wheel(tmp)
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.startswith("feseq_tf-")} == set(TOP_LEVEL)
    assert any(n.startswith("feseq_tf/tensorboard_plugin/static/") for n in names)

    venv = os.path.join(tmp, "venv")
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv],
                   check=True, timeout=120)
    python = os.path.join(venv, "bin", "python")
    # The outer environment's pip installs into the venv it runs in (sys.prefix).
    subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                    "--disable-pip-version-check", wheel],
                   check=True, capture_output=True, text=True, timeout=300, env=_env())

    work = os.path.join(tmp, "work")  # outside the checkout: no checkout on sys.path
    os.makedirs(work)

    def run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
        return subprocess.run([python, *args], cwd=work, env=_env(), capture_output=True,
                              text=True, timeout=timeout)

    where = run("-c", "import json, feseq_tf, pipelines, export; print(json.dumps("
                "{m.__name__: m.__file__ for m in (feseq_tf, pipelines, export)} "
                "| {'version': feseq_tf.__version__}))")
    assert where.returncode == 0, where.stderr
    found = json.loads(where.stdout.strip().splitlines()[-1])
    site = os.path.realpath(venv)
    for module in TOP_LEVEL:
        path = os.path.realpath(found[module])
        assert path.startswith(site + os.sep), f"{module} imported from {path}, not the wheel"
        assert not path.startswith(os.path.realpath(ROOT) + os.sep), path
    assert found["version"] == _project_version()

    quick = run("-m", "feseq_tf.train", "--synthetic-rows", "3000", "--epochs", "1",
                "--batch-size", "256", "--data-dir", "data", "--output-dir", "run",
                "--no-attention-summaries", "--no-export",
                "--set", "model.mlp_units=[16]", "--set", "model.pooling_hidden=16",
                "--set", "model.embedding_dim=4", "--set", "model.transformer_heads=2")
    assert quick.returncode == 0, quick.stderr[-3000:]
    assert "test: AUC" in quick.stdout
    with open(os.path.join(work, "run", "metrics.json")) as fh:
        assert 0.0 < json.load(fh)["test"]["auc"] < 1.0

    plugin = run("-m", "feseq_tf.tensorboard_plugin", "--help", timeout=300)
    assert plugin.returncode == 0, plugin.stderr[-3000:]
    assert "--logdir" in plugin.stdout
