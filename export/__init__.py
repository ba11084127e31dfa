"""Export and serving of trained FESeq models.

* :mod:`export.savedmodel`: ``python -m export.savedmodel`` writes a versioned SavedModel
  whose signatures take raw feature values (:func:`export.savedmodel.export_run`), composing
  :mod:`export.raw_encoder` (raw values -> model inputs, in the graph),
  :mod:`export.archive` (the SavedModel and its versions) and :mod:`export.contract`
  (the signatures and requests);
* :mod:`export.client`: ``python -m export.client``, a TF Serving REST client;
* :mod:`export.devserver`: ``python -m export.devserver`` (or ``python -m export.serve``),
  a development server for TF Serving's REST API (production uses TensorFlow Serving);
* ``export/serving/``: the TF Serving model config, batching parameters and commands.

Importing this package is cheap: the client needs neither TensorFlow nor the data stack.
"""

from __future__ import annotations

from typing import Any

import feseq_tf  # noqa: F401  (`python -m export.X`: TensorFlow's start-up noise dropped, feseq_tf.cli)

__all__ = ["export_run"]


def __getattr__(name: str) -> Any:
    if name == "export_run":  # imports TensorFlow: only on use
        from export.savedmodel import export_run

        return export_run
    raise AttributeError(f"module 'export' has no attribute {name!r}")
