"""TensorBoard with the attention plugin, from a source checkout.

``python -m feseq_tf.tensorboard_plugin --logdir runs/feseq/logs [tensorboard flags]``
runs ``tensorboard`` with the plugin added, for when the package is not pip-installed
(after ``pip install .`` or ``pip install -e .`` the plain ``tensorboard`` command loads
the plugin through its ``tensorboard_plugins`` entry point).
"""

from __future__ import annotations

import sys

from tensorboard import default, program

from feseq_tf import cli
from feseq_tf.tensorboard_plugin.loader import AttentionPluginLoader


@cli.command
def main(argv: list[str] | None = None) -> int:
    """Runs TensorBoard with ``argv`` (TensorBoard's own flags) and the plugin."""
    plugins = default.get_plugins()  # static plugins and those of entry points
    if AttentionPluginLoader not in plugins:  # not installed through the entry point
        plugins.append(AttentionPluginLoader)
    tensorboard = program.TensorBoard(plugins=plugins)
    tensorboard.configure(argv=[sys.argv[0]] + list(sys.argv[1:] if argv is None else argv))
    try:
        return tensorboard.main()
    except OverflowError as err:  # e.g. --port out of range: a bad argument, not a bug
        raise ValueError(str(err)) from None


if __name__ == "__main__":
    sys.exit(main())
