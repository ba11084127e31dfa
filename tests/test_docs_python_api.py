"""docs/guides/python_api.md: its Python code blocks run, in order, on the tiny data the
page prepares itself."""

from __future__ import annotations

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(ROOT, "docs", "guides", "python_api.md")


def python_blocks(path: str) -> list[str]:
    """The ```python blocks of a Markdown page, in order."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    return re.findall(r"^```python\n(.*?)^```", text, re.M | re.S)


def test_the_page_has_the_whole_loop():
    code = "\n".join(python_blocks(PAGE))
    for call in ("make_synthetic_dataset(", "build_model(", "feseq_tf.run(",
                 "evaluate_model(", "export_run(", "load_model(", "saved_model.load("):
        assert call in code, call


@pytest.mark.slow
def test_python_api_guide_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "python_api_guide"}
    for i, block in enumerate(python_blocks(PAGE)):
        try:
            exec(compile(block, f"{PAGE}:block{i}", "exec"), namespace)
        except Exception as err:  # name the block that failed
            raise AssertionError(f"block {i} of {PAGE} failed:\n{block}") from err
    out = capsys.readouterr().out
    assert namespace["path"].replace(os.sep, "/").endswith("exported/feseq/1")
    assert set(namespace["test"]) >= {"auc", "gauc", "logloss"}
    assert "serving_default" in out
    probabilities = namespace["loaded"].signatures["serving_default"](
        **namespace["inputs"])["probability"].numpy()
    assert probabilities.shape == (3,) and ((probabilities > 0) & (probabilities < 1)).all()
