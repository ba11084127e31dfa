"""The FESeq attention-heatmap TensorBoard plugin.

Three parts, importable separately so that TensorBoard can load the plugin without
TensorFlow and a training job can write summaries without the plugin's web code:

* :mod:`~feseq_tf.tensorboard_plugin.metadata`: the plugin name and the summary
  metadata (matrix kind, axis labels) that travels with every summary;
* :mod:`~feseq_tf.tensorboard_plugin.summary`: ``matrix_summary``, the writer used by
  :class:`feseq_tf.callbacks.AttentionSummaries`;
* :mod:`~feseq_tf.tensorboard_plugin.plugin` and
  :mod:`~feseq_tf.tensorboard_plugin.loader`: the TensorBoard plugin (data routes and
  the ES-module frontend in ``static/``), registered through the
  ``tensorboard_plugins`` entry point;
* :mod:`~feseq_tf.tensorboard_plugin.reader`: the logged matrices read back from event
  files without a TensorBoard server (for notebooks and :mod:`feseq_tf.plots`).
"""

from feseq_tf.tensorboard_plugin.metadata import PLUGIN_NAME, MatrixInfo

__all__ = ["PLUGIN_NAME", "MatrixInfo"]
