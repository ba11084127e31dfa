"""The attention-heatmap TensorBoard plugin: data routes and the static frontend.

Routes, under ``/data/plugin/feseq_attention/`` (JSON unless noted):

* ``runs``: the runs that hold the plugin's summaries, sorted.
* ``tags?run=R``: ``[{"tag", "kind", "description", "rows", "cols", "max_step"}]``
  for run ``R`` (without ``run``: ``{run: [...]}`` for every run).
* ``steps?run=R&tag=T``: ``[{"step", "wall_time"}]``, sorted by step.
* ``matrix?run=R&tag=T[&step=S]``: the matrix at step ``S`` (default: the last) with
  ``values`` (rows of numbers), ``row_labels``, ``col_labels``, axis titles, ``kind``,
  ``description``, ``min``, ``max``, ``step`` and ``wall_time``.
* ``static/<file>``: the ES-module frontend (``static/index.js`` is the entry point).

Data come from TensorBoard's data provider (either the Rust data server or the
Python multiplexer), so the plugin works with whatever loader TensorBoard picked. The
plugin imports no TensorFlow. Unknown runs, tags or steps are 404 errors, malformed
parameters 400 errors, through TensorBoard's own error types.
"""

from __future__ import annotations

import math
import mimetypes
import os
from typing import Any

import numpy as np
from tensorboard import errors, plugin_util
from tensorboard.backend import http_util
from tensorboard.data import provider
from tensorboard.plugins import base_plugin
from werkzeug import wrappers

from feseq_tf.tensorboard_plugin.metadata import PLUGIN_NAME, MatrixInfo, parse_plugin_metadata

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
ENTRY_MODULE = "/static/index.js"
TAB_NAME = "FESeq attention"
DEFAULT_DOWNSAMPLING = 1000
"""Matrices kept per run and tag unless ``--samples_per_plugin feseq_attention=N``."""

_MIME_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


class AttentionPlugin(base_plugin.TBPlugin):
    """Labelled attention heatmaps (FESeq paper section 4.5) per run, tag and step.

    Args:
        context: base_plugin.TBContext. TensorBoard's context; its ``data_provider``
            must be set (TensorBoard's default since 2.x).
    """

    plugin_name = PLUGIN_NAME

    def __init__(self, context: base_plugin.TBContext):
        self._data_provider = context.data_provider
        hints = context.sampling_hints or {}
        self._downsample = hints.get(PLUGIN_NAME) or DEFAULT_DOWNSAMPLING

    # ---- TBPlugin interface ----------------------------------------------------------
    def get_plugin_apps(self) -> dict[str, Any]:
        return {
            "/runs": self._serve_runs,
            "/tags": self._serve_tags,
            "/steps": self._serve_steps,
            "/matrix": self._serve_matrix,
            "/static/*": self._serve_static,
        }

    def is_active(self) -> bool:
        # TensorBoard marks the plugin active when the data provider lists summaries
        # whose plugin_name is ours (data_plugin_names); nothing else makes it active.
        return False

    def frontend_metadata(self) -> base_plugin.FrontendMetadata:
        return base_plugin.FrontendMetadata(es_module_path=ENTRY_MODULE, tab_name=TAB_NAME)

    # ---- data access -----------------------------------------------------------------
    def _list(self, request, runs=None, tags=None) -> dict[str, dict[str, Any]]:
        ctx = plugin_util.context(request.environ)
        eid = plugin_util.experiment_id(request.environ)
        run_tag_filter = provider.RunTagFilter(runs=runs, tags=tags) if runs or tags else None
        return self._data_provider.list_tensors(
            ctx, experiment_id=eid, plugin_name=PLUGIN_NAME, run_tag_filter=run_tag_filter
        )

    def _series(self, request, run: str, tag: str) -> tuple[MatrixInfo, list[Any]]:
        """The :class:`MatrixInfo` and the data (``TensorDatum``, by step) of one series."""
        listing = self._list(request, runs=[run], tags=[tag])
        if tag not in listing.get(run, {}):
            raise errors.NotFoundError(f"No {PLUGIN_NAME} data for run {run!r}, tag {tag!r}.")
        info = _parse_info(listing[run][tag].plugin_content, run, tag)
        ctx = plugin_util.context(request.environ)
        eid = plugin_util.experiment_id(request.environ)
        data = self._data_provider.read_tensors(
            ctx,
            experiment_id=eid,
            plugin_name=PLUGIN_NAME,
            downsample=self._downsample,
            run_tag_filter=provider.RunTagFilter(runs=[run], tags=[tag]),
        )
        return info, sorted(data.get(run, {}).get(tag, []), key=lambda d: d.step)

    # ---- routes ------------------------------------------------------------------------
    @wrappers.Request.application
    def _serve_runs(self, request):
        runs = sorted(run for run, tags in self._list(request).items() if tags)
        return http_util.Respond(request, runs, "application/json")

    @wrappers.Request.application
    def _serve_tags(self, request):
        run = request.args.get("run")
        listing = self._list(request, runs=[run] if run else None)
        result = {r: _tag_entries(r, tags) for r, tags in sorted(listing.items()) if tags}
        if run is None:
            return http_util.Respond(request, result, "application/json")
        if run not in result:
            raise errors.NotFoundError(f"No {PLUGIN_NAME} data for run {run!r}.")
        return http_util.Respond(request, result[run], "application/json")

    @wrappers.Request.application
    def _serve_steps(self, request):
        run, tag = _required(request, "run"), _required(request, "tag")
        _, data = self._series(request, run, tag)
        body = [{"step": int(d.step), "wall_time": float(d.wall_time)} for d in data]
        return http_util.Respond(request, body, "application/json")

    @wrappers.Request.application
    def _serve_matrix(self, request):
        run, tag = _required(request, "run"), _required(request, "tag")
        step_arg = request.args.get("step")
        info, data = self._series(request, run, tag)
        if not data:
            raise errors.NotFoundError(f"No matrices for run {run!r}, tag {tag!r}.")
        if step_arg is None:
            datum = data[-1]
        else:
            try:
                step = int(step_arg)
            except ValueError as err:
                raise errors.InvalidArgumentError(
                    f"step must be an integer, got {step_arg!r}."
                ) from err
            matches = [d for d in data if d.step == step]
            if not matches:
                raise errors.NotFoundError(
                    f"No matrix at step {step} for run {run!r}, tag {tag!r}; "
                    f"steps: {[int(d.step) for d in data]}."
                )
            datum = matches[-1]
        values = np.asarray(datum.numpy, dtype=np.float64)
        if values.ndim != 2 or values.shape != info.shape:
            raise errors.InvalidArgumentError(
                f"Matrix of run {run!r}, tag {tag!r} has shape {values.shape}, "
                f"its labels say {info.shape}."
            )
        body = {
            "run": run,
            "tag": tag,
            "step": int(datum.step),
            "wall_time": float(datum.wall_time),
            **info.to_json(),
            "values": [[_finite(v) for v in row] for row in values.tolist()],
            "min": _finite(float(np.min(values))),
            "max": _finite(float(np.max(values))),
        }
        return http_util.Respond(request, body, "application/json")

    @wrappers.Request.application
    def _serve_static(self, request):
        name = request.path.rsplit("/static/", 1)[-1]
        # Only plain file names that exist in static/: no sub-paths, no traversal.
        if not name or "/" in name or "\\" in name or name.startswith(".") or name not in _static_files():
            raise errors.NotFoundError(f"No static file {name!r}.")
        path = os.path.join(STATIC_DIR, name)
        ext = os.path.splitext(name)[1]
        mimetype = _MIME_TYPES.get(ext) or mimetypes.guess_type(name)[0] or "application/octet-stream"
        with open(path, "rb") as fh:
            return http_util.Respond(request, fh.read(), mimetype)


def _static_files() -> frozenset[str]:
    return frozenset(
        f for f in os.listdir(STATIC_DIR) if os.path.isfile(os.path.join(STATIC_DIR, f))
    )


def _required(request, name: str) -> str:
    value = request.args.get(name)
    if not value:
        raise errors.InvalidArgumentError(f"Missing query parameter {name!r}.")
    return value


def _parse_info(content: bytes, run: str, tag: str) -> MatrixInfo:
    try:
        return parse_plugin_metadata(content)
    except ValueError as err:
        raise errors.InvalidArgumentError(f"run {run!r}, tag {tag!r}: {err}") from err


def _tag_entries(run: str, tags: dict[str, Any]) -> list[dict[str, Any]]:
    entries = []
    for tag, series in sorted(tags.items()):
        info = _parse_info(series.plugin_content, run, tag)
        entries.append({
            "tag": tag,
            "kind": info.kind,
            "description": info.description,
            "rows": len(info.row_labels),
            "cols": len(info.col_labels),
            "max_step": int(series.max_step),
        })
    return entries


def _finite(value: float) -> float | None:
    """JSON has no NaN/Infinity: non-finite values travel as null."""
    return value if math.isfinite(value) else None
