"""The attention plugin inside a real TensorBoard on 127.0.0.1, over a tiny run's logs."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys

import numpy as np
import pytest

from feseq_tf.tensorboard_plugin.metadata import PLUGIN_NAME, MatrixInfo, parse_plugin_metadata
from tests.tb_fixtures import REPO_ROOT, TensorBoardServer, get_status

pytest_plugins = ("tests.tb_fixtures",)  # fixtures: tiny_run, tensorboard_server

RUN = "attention"
ROUTE = f"plugin/{PLUGIN_NAME}"
LOADER = "feseq_tf.tensorboard_plugin.loader:AttentionPluginLoader"


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python >= 3.11")
    with open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb") as fh:
        return tomllib.load(fh)


# ---- metadata ------------------------------------------------------------------------------
def test_metadata_round_trips_kind_and_labels():
    from feseq_tf.tensorboard_plugin.metadata import create_summary_metadata

    info = MatrixInfo("field", ["a", "b"], ["a", "b"], "query field", "key field", "d")
    meta = create_summary_metadata(info)
    assert meta.plugin_data.plugin_name == PLUGIN_NAME
    assert parse_plugin_metadata(meta.plugin_data.content) == info


def test_metadata_rejects_unknown_kind_and_newer_versions():
    with pytest.raises(ValueError, match="kind must be one of"):
        MatrixInfo("histogram", ["a"], ["a"])
    with pytest.raises(ValueError, match="version 99 is not supported"):
        parse_plugin_metadata(b'{"version": 99, "kind": "field"}')


def test_matrix_summary_rejects_shape_that_does_not_match_labels(tmp_path):
    import tensorflow as tf

    from feseq_tf.tensorboard_plugin.summary import matrix_summary

    info = MatrixInfo("field", ["a", "b"], ["a", "b"])
    with tf.summary.create_file_writer(str(tmp_path)).as_default():
        with pytest.raises(ValueError, match=r"shape \(3, 2\) does not match"):
            matrix_summary("t", np.zeros((3, 2)), 0, info)
        with pytest.raises(ValueError, match="non-finite"):
            matrix_summary("t", [[np.nan, 0], [0, 0]], 0, info)


# ---- registration ----------------------------------------------------------------------------
def test_pyproject_registers_the_loader_and_ships_the_frontend():
    project = _pyproject()
    entry_points = project["project"]["entry-points"]["tensorboard_plugins"]
    assert entry_points == {PLUGIN_NAME: LOADER}
    module, name = LOADER.split(":")
    assert getattr(importlib.import_module(module), name).__name__ == "AttentionPluginLoader"
    data = project["tool"]["setuptools"]["package-data"]["feseq_tf.tensorboard_plugin"]
    assert "static/*.js" in data


def test_the_installed_package_registers_the_plugin_entry_point():
    # The README's install commands (requirements-dev.txt too) install the package itself,
    # so a plain `tensorboard --logdir ...` shows the attention tab.
    names = {ep.name for ep in importlib.metadata.entry_points(group="tensorboard_plugins")}
    assert PLUGIN_NAME in names, sorted(names)


@pytest.mark.slow
def test_tensorboard_command_loads_the_plugin_from_its_entry_point(tiny_run, tmp_path):
    """The plain `tensorboard` program finds the plugin through the entry point.

    When the package is not pip-installed, a minimal ``.dist-info`` holding the
    entry point declared in pyproject.toml is put on the path (what pip would write).
    """
    installed = [
        ep for ep in importlib.metadata.entry_points(group="tensorboard_plugins")
        if ep.name == PLUGIN_NAME
    ]
    env_path = [REPO_ROOT]
    if not installed:
        dist = tmp_path / "site" / "feseq_tf_entry_point_test-0.0.dist-info"
        dist.mkdir(parents=True)
        (dist / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: feseq-tf-entry-point-test\nVersion: 0.0\n"
        )
        declared = _pyproject()["project"]["entry-points"]["tensorboard_plugins"]
        lines = "".join(f"{k} = {v}\n" for k, v in declared.items())
        (dist / "entry_points.txt").write_text("[tensorboard_plugins]\n" + lines)
        env_path.insert(0, str(tmp_path / "site"))
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(env_path + ([old] if old else []))
    try:
        with TensorBoardServer(tiny_run.logdir, command=[sys.executable, "-m", "tensorboard.main"]) as tb:
            listing = tb.data("plugins_listing")
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = old
    assert PLUGIN_NAME in listing, sorted(listing)


# ---- the running plugin --------------------------------------------------------------------
def test_plugins_listing_lists_the_plugin_enabled_as_an_iframe_tab(tensorboard_server):
    entry = tensorboard_server.data("plugins_listing")[PLUGIN_NAME]
    assert entry["enabled"] is True
    assert entry["tab_name"] == "FESeq attention"
    assert entry["loading_mechanism"] == {
        "type": "IFRAME",
        "module_path": f"/data/plugin/{PLUGIN_NAME}/static/index.js",
    }


def test_plugin_is_inactive_without_its_summaries(tiny_run):
    # The Keras TensorBoard callback's own logs: scalars, no attention summaries.
    with TensorBoardServer(os.path.join(tiny_run.logdir, "train")) as tb:
        listing = tb.data("plugins_listing")
        assert listing[PLUGIN_NAME]["enabled"] is False
        assert tb.data(f"{ROUTE}/runs") == []


def test_runs_route_lists_the_callback_run(tensorboard_server):
    assert tensorboard_server.data(f"{ROUTE}/runs") == [RUN]


def test_tags_route_describes_every_written_tag(tensorboard_server, tiny_run):
    last = tiny_run.written[max(tiny_run.written)]
    tags = {t["tag"]: t for t in tensorboard_server.data(f"{ROUTE}/tags", run=RUN)}
    assert set(tags) == set(last)
    for tag, matrix in last.items():
        assert (tags[tag]["rows"], tags[tag]["cols"]) == matrix.values.shape
        assert tags[tag]["kind"] == matrix.info.kind
        assert tags[tag]["max_step"] == max(tiny_run.written)
    assert set(tensorboard_server.data(f"{ROUTE}/tags")) == {RUN}


def test_steps_route_lists_the_written_steps(tensorboard_server, tiny_run):
    steps = tensorboard_server.data(f"{ROUTE}/steps", run=RUN, tag="attention/input_fields")
    assert [s["step"] for s in steps] == sorted(tiny_run.written) == [0, 1, 2]


def test_matrix_route_returns_the_written_values_and_labels(tensorboard_server, tiny_run):
    for step, matrices in sorted(tiny_run.written.items()):
        for tag, written in matrices.items():
            got = tensorboard_server.data(f"{ROUTE}/matrix", run=RUN, tag=tag, step=step)
            assert got["step"] == step
            assert got["row_labels"] == list(written.info.row_labels)
            assert got["col_labels"] == list(written.info.col_labels)
            assert got["kind"] == written.info.kind
            np.testing.assert_allclose(np.array(got["values"]), written.values, atol=1e-6)
            assert got["min"] == pytest.approx(written.values.min(), abs=1e-6)
            assert got["max"] == pytest.approx(written.values.max(), abs=1e-6)


def test_field_attention_is_labelled_with_the_field_names(tensorboard_server, tiny_run):
    got = tensorboard_server.data(f"{ROUTE}/matrix", run=RUN, tag="attention/input_fields")
    # The 23 Ele.me-layout fields, plus the history-match field of the default recipe.
    assert len(tiny_run.field_names) == 23 + int(tiny_run.field_names[-1] == "history_match")
    assert len(tiny_run.field_names) == len(set(tiny_run.field_names))
    assert got["row_labels"] == got["col_labels"] == tiny_run.field_names
    assert got["row_labels"][:2] == ["user_id", "gender"]
    assert got["step"] == max(tiny_run.written)  # no step: the last one
    # Every row is a softmax over the key fields.
    np.testing.assert_allclose(np.array(got["values"]).sum(axis=1), 1.0, atol=1e-4)


def test_unknown_run_tag_or_step_is_an_error(tensorboard_server):
    url = f"{tensorboard_server.url}/data/{ROUTE}"
    assert get_status(f"{url}/matrix?run=nope&tag=attention/input_fields") == 404
    assert get_status(f"{url}/matrix?run={RUN}&tag=nope") == 404
    assert get_status(f"{url}/matrix?run={RUN}&tag=attention/input_fields&step=12345") == 404
    assert get_status(f"{url}/matrix?run={RUN}&tag=attention/input_fields&step=x") == 400
    assert get_status(f"{url}/matrix?tag=attention/input_fields") == 400
    assert get_status(f"{url}/tags?run=nope") == 404


def test_static_route_serves_the_frontend_and_nothing_else(tensorboard_server):
    import urllib.request

    url = f"{tensorboard_server.url}/data/{ROUTE}/static"
    with urllib.request.urlopen(f"{url}/index.js") as response:
        assert "javascript" in response.headers["Content-Type"]
        assert "export async function render" in response.read().decode()
    assert get_status(f"{url}/heatmap.js") == 200
    assert get_status(f"{url}/missing.js") == 404
    assert get_status(f"{url}/..%2Fplugin.py") == 404
    assert get_status(f"{url}/../plugin.py") == 404


def test_plugin_entry_page_imports_the_es_module(tensorboard_server):
    import urllib.request

    with urllib.request.urlopen(
        f"{tensorboard_server.url}/data/plugin_entry.html?name={PLUGIN_NAME}"
    ) as response:
        html = response.read().decode()
    assert f'<base href="plugin/{PLUGIN_NAME}/" />' in html
    assert "./static/index.js" in html
