"""The plugin's loader: the object the ``tensorboard_plugins`` entry point names.

TensorBoard calls :meth:`AttentionPluginLoader.fix_flags` after parsing its flags, so
the loader can ask the data loaders to keep every logged matrix of the plugin (they
are small and written every few epochs) unless the user set
``--samples_per_plugin feseq_attention=N``; without it TensorBoard keeps only 10 per
run and tag, and the step slider would skip steps.
"""

from __future__ import annotations

from typing import Any

from tensorboard.plugins import base_plugin

from feseq_tf.tensorboard_plugin.metadata import PLUGIN_NAME

KEEP_ALL_SAMPLES = 0  # TensorBoard's "keep all" value of --samples_per_plugin


class AttentionPluginLoader(base_plugin.TBLoader):
    """Loads :class:`~feseq_tf.tensorboard_plugin.plugin.AttentionPlugin`."""

    def fix_flags(self, flags: Any) -> None:
        samples = getattr(flags, "samples_per_plugin", None)
        if isinstance(samples, dict):
            samples.setdefault(PLUGIN_NAME, KEEP_ALL_SAMPLES)

    def load(self, context: base_plugin.TBContext) -> base_plugin.TBPlugin | None:
        if context.data_provider is None:  # only with the removed --generic_data=false
            return None
        from feseq_tf.tensorboard_plugin.plugin import AttentionPlugin

        return AttentionPlugin(context)
