"""HistoryMatch: which fields of each position equal the target's."""

import numpy as np
import pytest
from keras import ops

from feseq_tf import testing
from feseq_tf.layers import HistoryMatch


def _ids():
    # One sample, T = 4 (3 history positions + target), n = 2 fields (shop, category).
    return np.array([[[7, 3], [5, 3], [7, 2], [7, 3]]], "int32")


def test_indicators_mark_fields_equal_to_the_target_and_zero_padding():
    layer = HistoryMatch(4)
    mask = np.array([[False, True, True, True]])
    m = ops.convert_to_numpy(layer.indicators(_ids(), mask))
    # position 0 is padding (it would match both fields); the target matches itself
    np.testing.assert_array_equal(m[0], [[0, 0], [0, 1], [1, 0], [1, 1]])


def test_output_is_the_indicators_times_a_kernel_plus_bias():
    layer = HistoryMatch(3, kernel_initializer="ones")
    out = ops.convert_to_numpy(layer(_ids(), np.ones((1, 4), bool)))
    # bias starts at zero: each output unit is the number of matching fields
    np.testing.assert_allclose(out[0], [[2, 2, 2], [1, 1, 1], [1, 1, 1], [2, 2, 2]])


def test_layer_contract():
    testing.run_layer_test(
        HistoryMatch,
        {"output_dim": 4, "kernel_initializer": "glorot_uniform", "seed": 3},
        {"ids": _ids(), "padding_mask": np.ones((1, 4), bool)},
        expected_output_shape=(1, 4, 4),
    )


def test_rejects_bad_arguments_and_shapes():
    with pytest.raises(ValueError, match="output_dim=0"):
        HistoryMatch(0)
    with pytest.raises(ValueError, match="ids_shape"):
        HistoryMatch(2).build((None, 4))
