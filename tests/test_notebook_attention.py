"""notebooks/attention.ipynb runs top to bottom on a tiny synthetic run and draws Figs. 5-8."""

from __future__ import annotations

import os

import pytest

from tests.tb_fixtures import REPO_ROOT

pytest_plugins = ("tests.tb_fixtures",)  # fixture: tiny_run

NOTEBOOK = os.path.join(REPO_ROOT, "notebooks", "attention.ipynb")
EXPECTED_FIGURES = {
    "fig5_input_field_attention.png",
    "fig6_target_field_attention.png",
    "fig7_pooling_attention_samples.png",
    "fig8_pooling_attention_mean.png",
    "fig8_pooling_attention_relative.png",
    "sequence_head_0.png",
    "sequence_head_1.png",
}


@pytest.mark.slow
def test_attention_notebook_draws_the_paper_style_figures(tiny_run, monkeypatch):
    import nbclient
    import nbformat

    monkeypatch.setenv("FESEQ_RUN_DIR", tiny_run.run_dir)
    monkeypatch.setenv("FESEQ_DATASET_DIR", tiny_run.dataset_dir)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p
    ))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": REPO_ROOT}}
    ).execute()

    figures = os.path.join(tiny_run.run_dir, "figures")
    assert EXPECTED_FIGURES <= set(os.listdir(figures))
    for name in EXPECTED_FIGURES:
        assert os.path.getsize(os.path.join(figures, name)) > 5_000
    # The training-time summaries were found and plotted too.
    logged = os.listdir(os.path.join(figures, "logged"))
    assert any("input_fields" in name for name in logged)

    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= len(EXPECTED_FIGURES)
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "gender <-> category_1_id" in text
