"""IdDropout: known ids become the OOV id in training only; padding and OOV stay."""

import numpy as np
import pytest
from keras import ops

from feseq_tf import testing
from feseq_tf.layers import IdDropout


def _ids(n=20_000):
    rng = np.random.default_rng(0)
    return rng.integers(0, 50, size=(n,)).astype("int32")  # 0 = padding, 1 = OOV, 2.. known


def test_training_replaces_about_rate_of_known_ids_by_oov_and_nothing_else():
    ids = _ids()
    out = ops.convert_to_numpy(IdDropout(0.3, seed=1)(ids, training=True))
    known = ids > 1
    changed = out != ids
    assert not changed[~known].any()  # padding and OOV untouched
    np.testing.assert_array_equal(out[changed], 1)  # a changed id is the OOV id
    share = changed[known].mean()
    assert 0.28 < share < 0.32, share  # 19k known ids: std of the share ~0.003


def test_inference_is_the_identity_and_rate_zero_never_drops():
    ids = _ids(1000)
    np.testing.assert_array_equal(ops.convert_to_numpy(IdDropout(0.9)(ids, training=False)), ids)
    np.testing.assert_array_equal(ops.convert_to_numpy(IdDropout(0.0)(ids, training=True)), ids)


def test_same_seed_same_draws_other_seed_other_draws():
    ids = _ids(5000)
    a = ops.convert_to_numpy(IdDropout(0.5, seed=7)(ids, training=True))
    b = ops.convert_to_numpy(IdDropout(0.5, seed=7)(ids, training=True))
    c = ops.convert_to_numpy(IdDropout(0.5, seed=8)(ids, training=True))
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


def test_layer_contract():
    testing.run_layer_test(
        IdDropout, {"rate": 0.25, "seed": 3}, {"inputs": _ids(8).reshape(2, 4)}, expected_output_shape=(2, 4)
    )


@pytest.mark.parametrize("rate", [-0.1, 1.0, True, "0.1"])
def test_rejects_bad_rate(rate):
    with pytest.raises(ValueError, match="rate"):
        IdDropout(rate)
