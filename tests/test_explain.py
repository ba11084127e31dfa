"""feseq_tf.explain: labels, masks and the averaged attention matrices, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from feseq_tf.explain import (
    TAG_INPUT_FIELDS,
    TAG_POOLING_MEAN,
    TAG_POOLING_RELATIVE,
    TAG_POOLING_SAMPLES,
    TAG_TARGET_FIELDS,
    attention_matrices,
    input_field_names,
    pair_attention,
    position_labels,
    position_mask,
)
from tests.test_model_feseq import L, tiny_config, tiny_spec

TINY_FIELDS = ["user_id", "avg_price", "item_id", "category", "rank", "hours"]


# ---- labels and masks ------------------------------------------------------------------------
def test_field_labels_follow_the_model_layout():
    spec = tiny_spec()
    assert input_field_names(spec, tiny_config()) == TINY_FIELDS
    assert input_field_names(spec, tiny_config(nonseq_in_interaction=False)) == TINY_FIELDS[2:]


def test_position_labels_count_back_from_the_target():
    assert position_labels(4) == ["-3", "-2", "-1", "target"]
    assert position_labels(1) == ["target"]
    with pytest.raises(ValueError, match="num_positions must be >= 1"):
        position_labels(0)


def test_position_mask_keeps_the_last_hist_len_positions_and_the_target():
    mask = position_mask(np.array([0, 2, 4]), 5)
    np.testing.assert_array_equal(mask, [
        [0, 0, 0, 0, 1],
        [0, 0, 1, 1, 1],
        [1, 1, 1, 1, 1],
    ])


# ---- the averaged matrices, by hand ------------------------------------------------------------
def _hand_outputs() -> dict[str, np.ndarray]:
    """Two samples: hist_len 0 (only the target is real) and L = 4 (all real)."""
    T, F = L + 1, len(TINY_FIELDS)
    uniform = np.full((F, F), 1.0 / F)
    field = np.full((2, T, 1, F, F), 99.0)  # padded positions hold garbage: must be ignored
    field[0, T - 1, 0] = uniform
    field[1, :, 0] = np.eye(F)
    target = np.stack([np.eye(3)[None], np.full((1, 3, 3), 1 / 3)])  # [2, 1, 3, 3]
    pooling = np.array([[0, 0, 0, 0, 1.0], [0.1, 0.1, 0.2, 0.2, 0.4]])
    seq = np.zeros((2, 2, T, T))
    seq[0, :, :, :] = np.eye(T)  # padded query rows of sample 0 see themselves
    seq[0, :, T - 1] = 0.0
    seq[0, :, T - 1, T - 1] = 1.0
    seq[1, 0] = np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None]
    seq[1, 1] = np.eye(T)
    return {
        "input_field_attention": field,
        "target_field_attention": target,
        "pooling_attention": pooling,
        "sequence_attention": seq,
    }


def test_attention_matrices_average_over_real_positions_only():
    spec = tiny_spec()
    mats = {m.tag: m for m in attention_matrices(_hand_outputs(), np.array([0, L]), spec, tiny_config())}
    F = len(TINY_FIELDS)

    # 1 real position of sample 0 (uniform) + 5 of sample 1 (identity).
    field = mats[TAG_INPUT_FIELDS]
    np.testing.assert_allclose(field.values, (np.full((F, F), 1 / F) + 5 * np.eye(F)) / 6)
    assert field.info.row_labels == field.info.col_labels == tuple(TINY_FIELDS)
    assert field.info.kind == "field"

    target = mats[TAG_TARGET_FIELDS]
    np.testing.assert_allclose(target.values, (np.eye(3) + 1 / 3) / 2)
    assert target.info.row_labels == ("item_id", "category", "rank")

    samples = mats[TAG_POOLING_SAMPLES]
    assert samples.info.row_labels == ("#1 (len 4)", "#0 (len 0)")  # longest history first
    assert samples.info.col_labels == ("-4", "-3", "-2", "-1", "target")
    np.testing.assert_allclose(samples.values, _hand_outputs()["pooling_attention"][::-1])
    np.testing.assert_allclose(mats[TAG_POOLING_MEAN].values, [[0.1, 0.1, 0.2, 0.2, 0.7]])
    # weight * n_real: sample 0 has 1 real position, sample 1 has 5.
    np.testing.assert_allclose(mats[TAG_POOLING_RELATIVE].values, [[0.5, 0.5, 1.0, 1.0, 1.5]])

    head0 = mats["attention/sequence_head_0"].values
    expected = np.tril(np.ones((5, 5))) / np.arange(1, 6)[:, None]  # only sample 1 for rows 0-3
    expected[4] = (expected[4] + np.eye(5)[4]) / 2  # the target row: both samples
    np.testing.assert_allclose(head0, expected)
    assert mats["attention/sequence_head_1"].info.kind == "sequence"


def test_attention_matrices_reject_a_field_axis_that_does_not_match_the_spec():
    outputs = _hand_outputs()
    outputs["input_field_attention"] = outputs["input_field_attention"][..., :4, :4]
    with pytest.raises(ValueError, match="input_field_attention has shape"):
        attention_matrices(outputs, np.array([0, L]), tiny_spec(), tiny_config())


def test_attention_matrices_skip_outputs_the_architecture_lacks():
    outputs = {"pooling_attention": _hand_outputs()["pooling_attention"]}
    tags = [m.tag for m in attention_matrices(outputs, np.array([0, L]), tiny_spec(), tiny_config())]
    assert tags == [TAG_POOLING_SAMPLES, TAG_POOLING_MEAN, TAG_POOLING_RELATIVE]


# ---- pairs of fields ---------------------------------------------------------------------------
def test_pair_attention_sums_both_directions_against_the_average_pair():
    values = np.array([
        [0.5, 0.3, 0.2],
        [0.1, 0.8, 0.1],
        [0.6, 0.0, 0.4],
    ])
    weights, average = pair_attention(values, ["a", "b", "c"], [("a", "c"), ("b", "a")])
    assert list(weights) == [("a", "c"), ("b", "a")]
    assert weights[("a", "c")] == pytest.approx(0.2 + 0.6)
    assert weights[("b", "a")] == pytest.approx(0.1 + 0.3)
    # Pairs (a, b) 0.4, (a, c) 0.8, (b, c) 0.1: each counted twice off the diagonal.
    assert average == pytest.approx((0.4 + 0.8 + 0.1) / 3)


def test_pair_attention_rejects_unknown_fields_and_mismatched_shapes():
    values = np.full((3, 3), 1 / 3)
    with pytest.raises(ValueError, match=r"\['z'\]"):
        pair_attention(values, ["a", "b", "c"], [("a", "z")])
    with pytest.raises(ValueError, match=r"shape \(3, 3\) for 2 labels"):
        pair_attention(values, ["a", "b"], [])
