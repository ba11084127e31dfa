"""AttentionSummaries: when the attention matrices are written, and what they show."""

from __future__ import annotations

import os

import numpy as np
import pytest

from feseq_tf.callbacks import AttentionSummaries
from feseq_tf.explain import (
    TAG_INPUT_FIELDS,
    TAG_POOLING_MEAN,
    TAG_POOLING_SAMPLES,
    TAG_TARGET_FIELDS,
)
from feseq_tf.tensorboard_plugin.reader import latest_matrices, read_matrices
from tests.test_explain import TINY_FIELDS
from tests.test_model_feseq import L, tiny_batch, tiny_config, tiny_spec

pytest_plugins = ("tests.tb_fixtures",)  # fixture: train_main_run_dir


# ---- the callback --------------------------------------------------------------------------
def test_callback_rejects_bad_arguments():
    probe = tiny_batch(tiny_spec())
    with pytest.raises(ValueError, match="every must be a positive integer"):
        AttentionSummaries("logs", probe, every=0)
    with pytest.raises(ValueError, match="unit must be one of"):
        AttentionSummaries("logs", probe, unit="batch")
    with pytest.raises(ValueError, match="hist_len"):
        AttentionSummaries("logs", {"user_id": np.zeros(2)})


def _fit_tiny(callback: AttentionSummaries, epochs: int = 2, batch_size: int = 2) -> None:
    import keras

    from feseq_tf.models.feseq import FESeq

    spec = tiny_spec()
    model = FESeq(spec, tiny_config())
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy")
    x = tiny_batch(spec, batch=6, seed=1)
    y = np.array([0, 1, 0, 1, 1, 0], dtype="float32")
    model.fit(x, y, epochs=epochs, batch_size=batch_size, callbacks=[callback], verbose=0)


def test_callback_writes_labelled_matrices_every_epoch(tmp_path):
    probe = tiny_batch(tiny_spec(), batch=8, seed=3)
    callback = AttentionSummaries(str(tmp_path), probe, pooling_samples=4)
    _fit_tiny(callback, epochs=2)
    assert callback.written_steps == [0, 1, 2]
    logged = read_matrices(str(tmp_path))
    assert sorted({m.step for m in logged}) == [0, 1, 2]
    latest = latest_matrices(str(tmp_path))
    field = latest[(".", TAG_INPUT_FIELDS)]
    assert field.step == 2 and field.values.shape == (6, 6)
    assert field.info.row_labels == tuple(TINY_FIELDS)
    np.testing.assert_allclose(field.values.sum(axis=1), 1.0, atol=1e-5)
    assert latest[(".", TAG_POOLING_SAMPLES)].values.shape == (4, L + 1)
    assert {tag for _, tag in latest} >= {TAG_TARGET_FIELDS, "attention/sequence_head_1"}


@pytest.mark.slow
def test_callback_writes_every_n_steps(tmp_path):
    probe = tiny_batch(tiny_spec(), batch=8, seed=3)
    callback = AttentionSummaries(str(tmp_path), probe, every=2, unit="step", write_at_start=False)
    _fit_tiny(callback, epochs=2, batch_size=2)  # 3 steps per epoch
    assert callback.written_steps == [2, 4, 6]


@pytest.mark.slow
def test_callback_writes_float32_matrices_under_mixed_bfloat16(tmp_path):
    from feseq_tf.testing import dtype_policy

    probe = tiny_batch(tiny_spec(), batch=8, seed=3)
    callback = AttentionSummaries(str(tmp_path), probe, write_at_start=False)
    with dtype_policy("mixed_bfloat16"):
        _fit_tiny(callback, epochs=1)
    field = latest_matrices(str(tmp_path))[(".", TAG_INPUT_FIELDS)]
    assert field.values.dtype == np.float64 and np.all(np.isfinite(field.values))
    np.testing.assert_allclose(field.values.sum(axis=1), 1.0, atol=2e-2)


def test_callback_needs_a_feseq_model(tmp_path):
    import keras

    inputs = keras.Input((1,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    callback = AttentionSummaries(str(tmp_path), tiny_batch(tiny_spec()))
    callback.set_model(model)
    with pytest.raises(TypeError, match="needs a FESeq model"):
        callback.write(0)


# ---- on by default in feseq_tf.train -----------------------------------------------------------
def test_train_main_writes_attention_summaries_by_default(train_main_run_dir):
    latest = latest_matrices(os.path.join(train_main_run_dir, "logs"))
    assert {tag for run, tag in latest if run == "attention"} >= {
        TAG_INPUT_FIELDS, TAG_TARGET_FIELDS, TAG_POOLING_SAMPLES, TAG_POOLING_MEAN,
        "attention/sequence_head_0",
    }
    field = latest[("attention", TAG_INPUT_FIELDS)]
    # The 23 Ele.me-layout fields plus the history-match field of the default recipe.
    assert field.values.shape == (24, 24) and field.step == 1  # after the one epoch
    assert field.info.row_labels[:2] == ("user_id", "gender")
    assert field.info.row_labels[-1] == "history_match"


# ---- what the attention shows on the synthetic data ------------------------------------------
@pytest.mark.slow
def test_attention_findings_measure_distributions_on_planted_crosses(tmp_path):
    """``benchmarks.attention_findings`` on 8,000 rows: the averaged maps it reads are
    distributions and its figures are well formed.

    Which positions and pairs stand out after one epoch is a finding of a run
    (``python -m benchmarks.attention_findings``, 40,000 rows: docs, "What the attention
    shows"), not a property of FESeq, so it is not asserted here.
    """
    from benchmarks import attention_findings

    found = attention_findings.measure(str(tmp_path), rows=8000, seed=1)
    max_len, fields = found["max_len"], found["fields"]
    relative = np.array(list(found["pooling_relative_by_position"].values()))
    assert len(relative) == max_len + 1 and found["full_history_samples"] > 50
    np.testing.assert_allclose(relative.sum(), max_len + 1, rtol=1e-3)
    np.testing.assert_allclose(found["field_row_sums"], 1.0, rtol=1e-4)
    assert 0.0 < found["max_deviation_from_uniform"] < 1.0 - 1.0 / fields
    assert set(found["planted_pair_weight"]) == {
        f"{a} x {b}" for a, b in attention_findings.PLANTED_PAIRS}
    ranks = found[f"planted_rank_in_row_of_{fields}"]
    assert len(ranks) == 6 and all(1 <= r <= fields for r in ranks.values())
