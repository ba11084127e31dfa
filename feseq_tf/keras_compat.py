"""Workarounds for Keras' TensorFlow trainer under ``tf.distribute`` strategies.

Keras 3 (checked up to 3.16) fails to ``fit`` a model with dict inputs across several
workers (keras-team/keras#20585, tensorflow/tensorflow#72388), in two places of
``keras/src/backend/tensorflow/trainer.py``:

1. ``TensorFlowTrainer._maybe_symbolic_build`` reduces the whole nested first batch
   with ``strategy.reduce("MEAN", batch)``, which takes one per-replica value, not a
   dict of them ("Attempt to convert a value ({'...': PerReplica...").
   It also takes that batch from the epoch iterator, which fit keeps across epochs when
   ``steps_per_epoch`` is set, so the run loses one batch and every later batch moves
   by one (resumed runs would not line up). The build only needs shapes and dtypes:
   zeros shaped like the first replica's element spec serve and consume nothing.
2. ``reduce_per_replica`` averages each step's scalars across workers with
   ``strategy.reduce("MEAN", v, axis=0)``, which fails on a scalar ("Invalid reduction
   dimension 0"). ``axis=None`` averages them across replicas, which is what is meant.

:func:`apply` patches exactly these two spots, only for Keras versions up to
:data:`CHECKED_UP_TO`: the build fix under any distribution strategy (the same reduce
fails for ``MirroredStrategy`` over several devices), the scalar fix only under several
workers; without a strategy Keras' own code runs unchanged.
``tests/test_distribute.py::test_keras_still_needs_the_multi_worker_workarounds`` runs two
workers on loopback *without* the patch and fails once Keras fits there on its own, so
the workaround gets removed rather than forgotten.
"""

from __future__ import annotations

import functools
import warnings

import keras
import tensorflow as tf

# The newest Keras release the workarounds were checked against.
CHECKED_UP_TO = (3, 16)

_applied = False


def _version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def needed(version: str | None = None) -> bool:
    """Whether this Keras version is one the workarounds are for (3.x up to CHECKED_UP_TO)."""
    v = _version(version or keras.__version__)
    return (3, 0) <= v <= CHECKED_UP_TO


def apply() -> bool:
    """Patch Keras' TensorFlow trainer for multi-worker ``fit``; returns whether it did.

    Idempotent. On a Keras newer than :data:`CHECKED_UP_TO` it patches nothing and warns
    once, so a run on a fixed Keras uses Keras' own code (and a run on a Keras that still
    needs the patch fails loudly in the trainer, not silently).
    """
    global _applied
    if _applied:
        return True
    if not needed():
        warnings.warn(
            f"Keras {keras.__version__} is newer than the multi-worker workarounds were "
            f"checked for (up to {'.'.join(map(str, CHECKED_UP_TO))}); using Keras as it is.",
            stacklevel=2,
        )
        return False
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original_reduce = tf_trainer.reduce_per_replica

    @functools.wraps(original_reduce)
    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(strategy):
            return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original_reduce(values, strategy, reduction)

    original_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build

    @functools.wraps(original_build)
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if strategy is None or iterator is None:
            return original_build(self, iterator=iterator, data_batch=data_batch)
        data_batch = _zeros_like_spec(iterator._get_iterator().element_spec)
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    tf_trainer.reduce_per_replica = reduce_per_replica
    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    _applied = True
    return True


def _zeros_like_spec(element_spec):
    """A batch of zeros (batch size 1) shaped like one replica's share of ``element_spec``."""

    def leaf(spec):
        spec = getattr(spec, "_value_specs", (spec,))[0]  # PerReplicaSpec -> one replica
        return tf.zeros([1 if d is None else d for d in spec.shape], spec.dtype)

    return tf.nest.map_structure(leaf, element_spec)
