"""Adam that sums the repeated rows of a sparse gradient before its update.

An embedding lookup's gradient is a ``tf.IndexedSlices`` with one slice per lookup, so a
row used ``k`` times in a batch (a popular item, a position shared by every example)
appears ``k`` times; across replicas ``tf.distribute`` concatenates the replicas' slices
(one more repeat per replica). Keras 3's Adam on TensorFlow (checked on 3.15) squares the
slices one by one, so the second moment of such a row gets the sum of squares instead of
the square of the sum, and its step grows up to ``sqrt(k)`` times Adam's: a row looked up
twice moves ``sqrt(2) * learning_rate`` on the first step instead of ``learning_rate``.
Training then depends on how often a row repeats within a batch and on the number of
replicas. :class:`DeduplicatedAdam` sums the repeats first (TensorFlow 1's optimizers did
the same), which makes it Adam on the dense gradient, exactly, for any batch split.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf


def deduplicate(gradient: Any) -> Any:
    """A ``tf.IndexedSlices`` whose repeated indices are summed into one slice each.

    Static shapes (so it compiles under XLA): the result has as many slices as the
    input; after sorting, each run of equal indices is summed into its first slice's
    place and the slices left over point at row 0 with zeros, which adds nothing to any
    sum or sum of squares. Dense gradients pass through unchanged.
    """
    if not isinstance(gradient, tf.IndexedSlices):
        return gradient
    n = tf.shape(gradient.indices)[0]
    order = tf.argsort(gradient.indices, stable=True)
    indices = tf.gather(gradient.indices, order)
    values = tf.gather(gradient.values, order)
    first = tf.concat([tf.ones([1], tf.bool), indices[1:] != indices[:-1]], axis=0)
    segment = tf.cumsum(tf.cast(first, tf.int32)) - 1  # run number of each slice
    summed = tf.math.unsorted_segment_sum(values, segment, n)
    runs = tf.reduce_sum(tf.cast(first, tf.int32))
    unique = tf.where(tf.range(n) < runs,
                      tf.math.unsorted_segment_max(indices, segment, n),
                      tf.zeros_like(indices))
    return tf.IndexedSlices(summed, unique, gradient.dense_shape)


@keras.saving.register_keras_serializable(package="feseq_tf")
class DeduplicatedAdam(keras.optimizers.Adam):
    """``keras.optimizers.Adam`` whose sparse gradients have their repeated rows summed.

    Takes Keras Adam's arguments. See the module docstring for why.
    """

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        super().update_step(deduplicate(gradient), variable, learning_rate)
