"""Writing matrix summaries for the attention plugin.

Example:
>>> writer = tf.summary.create_file_writer("runs/feseq/logs/attention")
>>> info = MatrixInfo("field", ["gender", "category"], ["gender", "category"])
>>> with writer.as_default():
...     matrix_summary("attention/input_fields", [[0.7, 0.3], [0.4, 0.6]], 1, info)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from feseq_tf.tensorboard_plugin.metadata import MatrixInfo, create_summary_metadata


def matrix_summary(tag: str, values: Any, step: int, info: MatrixInfo) -> bool:
    """Writes one labelled matrix to the default summary writer.

    Args:
        tag: str. Summary tag, e.g. ``"attention/input_fields"``.
        values: array-like of shape ``info.shape``. Finite numbers.
        step: int. Step of the summary (the plugin's step slider).
        info: MatrixInfo. Kind and labels of the matrix.

    Returns:
        True if a default writer was set and the summary written, else False
        (as ``tf.summary.write``).

    Raises:
        ValueError: if ``values`` is not a finite rank-2 array of ``info.shape``.
    """
    array = np.asarray(values, dtype=np.float32)
    if array.ndim != 2 or array.shape != info.shape:
        raise ValueError(
            f"{tag}: matrix shape {array.shape} does not match its labels "
            f"({len(info.row_labels)} rows x {len(info.col_labels)} columns)."
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{tag}: matrix has non-finite values.")
    return tf.summary.write(
        tag, tf.constant(array), step=step, metadata=create_summary_metadata(info)
    )
