"""Warm-starting a run from an earlier run whose dataset the new one extends.

The daily loop of production CTR (docs, "Guides: the daily loop"): a new day is prepared
on top of the earlier data (``python -m pipelines.generic --extend``), its vocabularies
grown append-only, and the model for the grown spec starts from the earlier run's
weights (``python -m feseq_tf.train --dataset NEW_DIR --warm-start RUN_DIR``):

* every weight of the earlier model is copied bit for bit;
* every embedding table (and the wide term's per-id weights) that gained rows keeps its
  trained rows bit for bit; the new ids' rows are those the new model drew at build
  time, from the table's own initializer;
* the optimizer starts afresh (Adam's moments at zero, its step count at 0): the run
  directory keeps no optimizer state after a finished run;
* a dataset spec that is not an extension of the run's is refused with one line naming
  the field (:func:`check_extension`): a field added, removed or retyped, a vocabulary
  that shrank or whose earlier values changed id.

A warm start changes the recipe (:data:`WARM_START_TRAINING`): one pass over the new day
with the embeddings kept (re-drawing them every epoch would throw the earlier training
away), which is how a new day is usually trained in production; ``--set``/flags still win.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from feseq_tf.schema import SPEC_FILE, DatasetSpec, read_vocab

#: The training settings a warm start applies over the recipe, before the user's own.
WARM_START_TRAINING: dict[str, Any] = {"epochs": 1, "redraw_embeddings": False}


def check_extension(old: DatasetSpec, new: DatasetSpec, old_dir: str, new_dir: str) -> dict[str, int]:
    """The rows each categorical table gains from ``old`` to ``new``.

    Args:
        old, new: DatasetSpec. The earlier run's spec and the new dataset's.
        old_dir, new_dir: str. Where their vocabularies are (``vocab/<field>.txt``).

    Returns:
        field name -> ids gained (0 for a table that did not grow).

    Raises:
        ValueError: ``new`` is not an extension of ``old`` (one line naming the field).
    """
    before = {f.name: f for f in old.fields}
    after = {f.name: f for f in new.fields}
    for name in before:
        if name not in after:
            raise ValueError(f"field {name!r} of the warm-start run's data is not in the new dataset")
    for name in after:
        if name not in before:
            raise ValueError(f"field {name!r} is new: the warm-start run's data has no such field")
    if old.max_len != new.max_len:
        raise ValueError(f"max_len is {new.max_len} but the warm-start run's data has {old.max_len}")
    gained: dict[str, int] = {}
    for name, f in after.items():
        o = before[name]
        shape = ("type", "role", "sequential", "history_only", "hash_buckets")
        if any(getattr(o, k) != getattr(f, k) for k in shape):
            was = ", ".join(f"{k}={getattr(o, k)!r}" for k in shape if getattr(o, k) != getattr(f, k))
            raise ValueError(f"field {name!r} was retyped (the warm-start run's data had {was})")
        if not f.is_categorical:
            continue
        if f.vocab_size < o.vocab_size:
            raise ValueError(
                f"the vocabulary of field {name!r} shrank from {o.vocab_size} to {f.vocab_size} ids"
            )
        if not f.is_hashed and not f.history_only:
            earlier, now = read_vocab(old_dir, name), read_vocab(new_dir, name)
            if now[: len(earlier)] != earlier:
                first = next(i for i, (a, b) in enumerate(zip(earlier, now, strict=False)) if a != b)
                raise ValueError(
                    f"the vocabulary of field {name!r} was reordered: id {first + 2} was "
                    f"{earlier[first]!r} and is {now[first]!r} (prepare the new data with --extend)"
                )
        gained[name] = f.vocab_size - o.vocab_size
    return gained


def load_run(run_dir: str) -> tuple[Any, dict[str, Any], DatasetSpec]:
    """``(model, config dict, dataset spec)`` of a finished run directory."""
    from feseq_tf.evaluate import load_model

    path = os.path.join(run_dir, "model.keras")
    if not os.path.isfile(path):
        raise ValueError(f"{run_dir} holds no finished run to warm-start from (no model.keras)")
    with open(os.path.join(run_dir, "config.json")) as fh:
        config = json.load(fh)
    return load_model(path), config, DatasetSpec.load(os.path.join(run_dir, SPEC_FILE))


def copy_weights(source: Any, target: Any) -> dict[str, int]:
    """Copy ``source``'s weights into ``target`` (the same architecture, tables that may
    have grown): equal shapes whole, a grown first axis into its leading rows.

    Returns:
        variable path -> rows the target has beyond the source's (grown tables only).

    Raises:
        ValueError: the two models' weights do not correspond (one line).
    """
    old, new = source.weights, target.weights
    if len(old) != len(new):
        raise ValueError(
            f"the warm-start run's model has {len(old)} weights, this one {len(new)}: "
            "train the same model with the same settings"
        )
    grown: dict[str, int] = {}
    for a, b in zip(old, new, strict=True):
        sa, sb = tuple(a.shape), tuple(b.shape)
        value = np.asarray(a.numpy())
        if sa == sb:
            b.assign(value)
        elif len(sa) == len(sb) and sa[1:] == sb[1:] and sb[0] > sa[0]:
            rows = np.array(b.numpy())
            rows[: sa[0]] = value
            b.assign(rows)
            grown[b.path] = sb[0] - sa[0]
        else:
            raise ValueError(
                f"weight {b.path} has shape {sb}, the warm-start run's {a.path} {sa}: "
                "train the same model with the same settings"
            )
    return grown


def warm_start(model: Any, dataset_dir: str, spec: DatasetSpec, run_dir: str,
               model_name: str) -> dict[str, Any]:
    """Start ``model`` (built for ``spec``) from the run in ``run_dir``.

    Returns:
        What ``metrics.json`` records under ``warm_start``: the run it started from and
        the ids each table gained.

    Raises:
        ValueError: no finished run there, another model, or a spec that does not
            extend the run's (one line naming the field).
    """
    source, config, old_spec = load_run(run_dir)
    if config.get("model_name") != model_name:
        raise ValueError(
            f"the warm-start run trained {config.get('model_name')!r}, this run {model_name!r}"
        )
    gained = check_extension(old_spec, spec, run_dir, dataset_dir)
    copy_weights(source, model)
    return {"run_dir": os.path.abspath(run_dir), "rows_gained": gained}
