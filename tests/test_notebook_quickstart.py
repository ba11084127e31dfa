"""notebooks/quickstart.ipynb runs top to bottom: train, evaluate, export, REST predict."""

from __future__ import annotations

import os

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO_ROOT, "notebooks", "quickstart.ipynb")


@pytest.mark.slow
def test_quickstart_notebook_trains_exports_and_predicts_over_rest(monkeypatch):
    import nbclient
    import nbformat

    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p)
    )
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": REPO_ROOT}}
    ).execute()

    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    results = "".join(
        o.get("data", {}).get("text/plain", "")
        for o in outputs
        if o.get("output_type") == "execute_result"
    )
    assert "AVAILABLE" in results  # the model status over REST
    assert "'predictions': [" in text  # a raw HTTP predict reply
    assert "HTTP 400" in text  # a bad request is refused with a message
    assert "feseq" + os.sep + "1" in text  # the exported version directory
