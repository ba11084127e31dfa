"""The throughput benchmark's FLOP count and its share of the GEMM peak (no timing)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from benchmarks import train_throughput


def _dense_model(units: tuple[int, ...], width: int) -> keras.Model:
    x = keras.Input((width,), name="x")
    y = x
    for u in units:
        y = keras.layers.Dense(u)(y)
    return keras.Model({"x": x}, y)


def test_forward_flops_count_two_flops_per_multiply_add_of_every_matrix_product():
    model = _dense_model((3, 5), width=4)
    x = {"x": np.zeros((7, 4), "float32")}
    assert train_throughput.forward_flops(model, x) == 2 * (4 * 3 + 3 * 5)


def test_forward_flops_count_batched_products_and_einsums():
    q = keras.Input((6, 8), name="q")  # [B, T, d]: scores T x T, then the weighted sum
    scores = keras.ops.matmul(q, keras.ops.transpose(q, (0, 2, 1)))
    out = keras.layers.EinsumDense("btd,de->bte", output_shape=(6, 2))(
        keras.ops.matmul(scores, q)
    )
    model = keras.Model({"q": q}, out)
    x = {"q": np.zeros((3, 6, 8), "float32")}
    expected = 2 * (6 * 6 * 8) + 2 * (6 * 6 * 8) + 2 * (6 * 8 * 2)
    assert train_throughput.forward_flops(model, x) == expected


def _result(train: float, evaluation: float) -> dict:
    return {"precision": "float32", "gemm_peak_flops": 100e9, "forward_flop_per_sample": 1e6,
            "train_samples_per_s": train, "eval_samples_per_s": evaluation}


def test_peak_shares_count_training_as_three_forward_passes():
    train, evaluation = train_throughput.peak_shares(_result(10_000, 50_000))
    assert train == pytest.approx(0.3) and evaluation == pytest.approx(0.5)


def test_a_share_above_the_peak_is_refused_not_printed():
    with pytest.raises(SystemExit, match="evaluation reaches 120 %"):
        train_throughput.peak_shares(_result(10_000, 120_000))
    with pytest.raises(SystemExit, match="training reaches 150 %"):
        train_throughput.peak_shares(_result(50_000, 10_000))


# ---- benchmarks.linear_yardstick: the plain reference of the linear row -----------------------
def test_linear_yardstick_design_is_one_hot_of_every_target_side_field(tiny_trained_run):
    from benchmarks import linear_yardstick
    from feseq_tf.schema import DatasetSpec

    spec = DatasetSpec.load(tiny_trained_run.dataset_dir)
    x, y, groups = linear_yardstick._design(tiny_trained_run.dataset_dir, spec, "valid")
    widths = [f.vocab_size if f.is_categorical else 1 for f in spec.fields]
    assert x.shape == (len(y), sum(widths))
    starts = np.cumsum([0] + widths[:-1])
    categorical = [i for i, f in enumerate(spec.fields) if f.is_categorical and not f.history_only]
    onehot_cols = np.concatenate([np.arange(starts[i], starts[i] + widths[i]) for i in categorical])
    # every categorical target value is one 1 in its own block
    np.testing.assert_array_equal(x[:, onehot_cols].sum(axis=1).A.ravel(), len(categorical))
    assert len(groups) == len(y) and set(np.unique(y)) <= {0, 1}


def test_linear_yardstick_chooses_l2_on_validation(tiny_trained_run):
    from benchmarks import linear_yardstick

    ref = linear_yardstick.sklearn_reference(tiny_trained_run.dataset_dir)
    assert ref["C"] in linear_yardstick.C_GRID
    assert 0.0 <= ref["test_auc"] <= 1.0 and 0.0 <= ref["valid_auc"] <= 1.0
