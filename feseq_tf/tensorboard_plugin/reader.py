"""The plugin's matrices read back from event files, without a TensorBoard server.

Example:
>>> for m in read_matrices("runs/feseq/logs"):
...     print(m.run, m.tag, m.step, m.values.shape, m.info.col_labels[:3])
>>> last = latest_matrices("runs/feseq/logs")  # {(run, tag): LoggedMatrix}
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from tensorboard.backend.event_processing import event_accumulator, plugin_event_multiplexer
from tensorboard.util import tensor_util

from feseq_tf.tensorboard_plugin.metadata import PLUGIN_NAME, MatrixInfo, parse_plugin_metadata


@dataclasses.dataclass(frozen=True)
class LoggedMatrix:
    """One logged matrix: where and when it was written, its values and labels."""

    run: str
    tag: str
    step: int
    wall_time: float
    values: np.ndarray
    info: MatrixInfo


def read_matrices(logdir: str, run: str | None = None, tag: str | None = None) -> list[LoggedMatrix]:
    """Every matrix of the plugin under ``logdir``, sorted by run, tag and step.

    Args:
        logdir: str. A TensorBoard log directory (searched recursively); run names are
            the event directories relative to it, as in TensorBoard (``"."`` for the
            directory itself).
        run: str. Only this run. Defaults to all runs.
        tag: str. Only this tag. Defaults to all tags.

    Raises:
        FileNotFoundError: if ``logdir`` does not exist.
    """
    if not os.path.isdir(logdir):
        raise FileNotFoundError(f"No log directory {logdir!r}.")
    guidance = dict(event_accumulator.DEFAULT_SIZE_GUIDANCE)
    guidance[event_accumulator.TENSORS] = 0  # keep every step
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        size_guidance=guidance, tensor_size_guidance={PLUGIN_NAME: 0}
    )
    multiplexer.AddRunsFromDirectory(logdir)
    multiplexer.Reload()
    out: list[LoggedMatrix] = []
    for run_name, tags in sorted(multiplexer.PluginRunToTagToContent(PLUGIN_NAME).items()):
        if run is not None and run_name != run:
            continue
        for tag_name, content in sorted(tags.items()):
            if tag is not None and tag_name != tag:
                continue
            info = parse_plugin_metadata(content)
            for event in sorted(multiplexer.Tensors(run_name, tag_name), key=lambda e: e.step):
                out.append(
                    LoggedMatrix(
                        run=run_name,
                        tag=tag_name,
                        step=int(event.step),
                        wall_time=float(event.wall_time),
                        values=np.asarray(tensor_util.make_ndarray(event.tensor_proto), np.float64),
                        info=info,
                    )
                )
    return out


def latest_matrices(logdir: str, run: str | None = None) -> dict[tuple[str, str], LoggedMatrix]:
    """The last-step matrix of every run and tag under ``logdir``."""
    latest: dict[tuple[str, str], LoggedMatrix] = {}
    for m in read_matrices(logdir, run=run):
        latest[(m.run, m.tag)] = m  # sorted by step: the last one wins
    return latest
