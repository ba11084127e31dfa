"""Summary metadata of the attention plugin: what a logged matrix is and how to label it.

Every summary of the plugin is a float32 rank-2 tensor (``rows x cols``) whose
``SummaryMetadata.plugin_data`` names :data:`PLUGIN_NAME` and carries a JSON
:class:`MatrixInfo`: the matrix kind, the row and column labels and axis titles.
TensorBoard keeps the metadata of the first summary of each run and tag, so labels are
constant per tag. This module imports neither TensorFlow nor the web server.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from tensorboard.compat.proto import summary_pb2

PLUGIN_NAME = "feseq_attention"
"""The plugin's name: the TensorBoard route prefix and the summaries' ``plugin_name``."""

PROTOCOL_VERSION = 1
"""Version of the JSON content in ``plugin_data``; readers reject newer versions."""

MATRIX_KINDS = ("field", "pooling", "sequence")
"""``field``: field x field attention of an interacting layer (paper Figs. 5-6);
``pooling``: sequence-pooling attention over positions (Figs. 7-8);
``sequence``: self-attention of one Transformer head over positions."""


@dataclasses.dataclass(frozen=True)
class MatrixInfo:
    """Labels and meaning of one logged matrix.

    Args:
        kind: str. One of :data:`MATRIX_KINDS`.
        row_labels: tuple of str. One label per row.
        col_labels: tuple of str. One label per column.
        row_title: str. What the rows are (e.g. ``"query field"``). Defaults to "".
        col_title: str. What the columns are (e.g. ``"key field"``). Defaults to "".
        description: str. One sentence for the frontend and plots. Defaults to "".
    """

    kind: str
    row_labels: tuple[str, ...]
    col_labels: tuple[str, ...]
    row_title: str = ""
    col_title: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in MATRIX_KINDS:
            raise ValueError(f"kind must be one of {MATRIX_KINDS}, got {self.kind!r}.")
        object.__setattr__(self, "row_labels", tuple(str(x) for x in self.row_labels))
        object.__setattr__(self, "col_labels", tuple(str(x) for x in self.col_labels))
        if not self.row_labels or not self.col_labels:
            raise ValueError(
                f"row_labels and col_labels must be non-empty, got {len(self.row_labels)} "
                f"and {len(self.col_labels)} labels."
            )

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.row_labels), len(self.col_labels)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["row_labels"] = list(self.row_labels)
        d["col_labels"] = list(self.col_labels)
        return d


def create_summary_metadata(info: MatrixInfo) -> summary_pb2.SummaryMetadata:
    """The ``SummaryMetadata`` of a matrix summary (a tensor of the plugin's own kind)."""
    content = json.dumps({"version": PROTOCOL_VERSION, **info.to_json()}).encode("utf-8")
    return summary_pb2.SummaryMetadata(
        summary_description=info.description,
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=PLUGIN_NAME, content=content
        ),
        data_class=summary_pb2.DATA_CLASS_TENSOR,
    )


def parse_plugin_metadata(content: bytes) -> MatrixInfo:
    """The :class:`MatrixInfo` stored in a summary's ``plugin_data.content``.

    Raises:
        ValueError: if the content is not this plugin's JSON or has a newer version.
    """
    try:
        data = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{PLUGIN_NAME} summary metadata is not JSON: {err}") from err
    version = data.pop("version", None)
    if not isinstance(version, int) or version > PROTOCOL_VERSION:
        raise ValueError(
            f"{PLUGIN_NAME} summary metadata version {version!r} is not supported "
            f"(this reader knows versions up to {PROTOCOL_VERSION})."
        )
    known = {f.name for f in dataclasses.fields(MatrixInfo)}
    return MatrixInfo(**{k: v for k, v in data.items() if k in known})
