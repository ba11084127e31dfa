"""``import feseq_tf``: the public names, their lazy import and the version."""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys

import pytest

import feseq_tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_import_is_cheap_and_loads_neither_tensorflow_nor_numpy():
    code = ("import sys, feseq_tf; feseq_tf.__version__; feseq_tf.ModelConfig; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'numpy', 'export', 'pipelines') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_every_public_name_is_the_object_of_its_module():
    assert set(feseq_tf.__all__) == {*feseq_tf._LAZY, "__version__"}
    for name in feseq_tf.__all__:
        if name == "__version__":
            continue
        module = importlib.import_module(feseq_tf._LAZY[name])
        assert getattr(feseq_tf, name) is getattr(module, feseq_tf._RENAMED.get(name, name))
    assert set(feseq_tf.__all__) <= set(dir(feseq_tf))


def test_the_layers_a_user_builds_with_are_public():
    from feseq_tf import layers

    for name in ("AutoIntLayer", "TimeAwareTransformer", "BilinearAttentionPooling",
                 "FieldEmbedding", "NumericEmbedding", "MeanPooling", "TargetPooling"):
        assert getattr(feseq_tf, name) is getattr(layers, name)


def test_no_public_name_hides_a_submodule():
    # `from feseq_tf import evaluate` must keep meaning the module.
    submodules = {m.name for m in pkgutil.iter_modules(feseq_tf.__path__)}
    assert not submodules & set(feseq_tf.__all__)
    from feseq_tf import evaluate, recipe

    assert evaluate.__name__ == "feseq_tf.evaluate" and recipe.__name__ == "feseq_tf.recipe"


def test_unknown_name_raises_attribute_error():
    try:
        feseq_tf.no_such_name  # noqa: B018
    except AttributeError as err:
        assert "no_such_name" in str(err)
    else:
        raise AssertionError("feseq_tf.no_such_name did not raise")


def test_version_is_the_one_in_pyproject():
    tomllib = pytest.importorskip("tomllib")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        expected = tomllib.load(fh)["project"]["version"]
    assert feseq_tf.__version__ == expected
