"""FESeq learns a planted field cross, and its field attention is well formed there.

Synthetic data with one strong cross and nothing else: the click logit is
``3 * (2 * gender - 1) * affinity(category_1_id)`` plus an intercept (every other
effect of ``pipelines.synthetic.Effects`` is 0). A control dataset is the same world,
the same rows and the same features with the cross switched off (the generator's
draws do not depend on the effect strengths), so only the labels differ. Both get
the same FESeq (one interaction head, as in the paper) from the same seed.

What the cross changes is how the attention varies from sample to sample, not its
average: the cross is zero-mean, so attention that realises it raises the weight of
the pair for half of the (gender, category) combinations and lowers it for the other
half, and the heatmap averaged over samples need not single the pair out (it does
not; see README, "Attention heatmaps in TensorBoard"). The test therefore measures,
at the target position of the validation samples, the correlation between the
planted cross and the weight that the category field (query) puts on the gender
field (key) in the last input interacting layer.

That correlation is not asserted: it depends on the machine's floating-point details.
For training seed 1 one 2-core AVX-512 machine measured 0.64 (control 0.25) and another
of the same class 0.068 (control 0.016), with the cross learnt equally well on both
(planted AUC 0.93): the MLP also sees gender and the pooled category and can realise the
cross without the interacting layer, so which route a run takes is not a property of the
model (docs, "What the attention shows"). The test asserts what holds on any machine:
the cross is learnt where it is planted and nothing is learnt where it is not, and the
interacting layer's attention at the target position is a distribution over the fields
for every query. The correlations are returned for the docs' table.

Seeds tried on one machine (planted / control validation AUC, oracle): training seeds 1,
2 and 3 on data seed 7: 0.926 / 0.510, 0.923 / 0.513, 0.930 / 0.504 (oracle 0.944);
training seed 1 on data seed 8: 0.819 / 0.498 (oracle 0.925). Hence the threshold is a
share of the oracle's lift (at least half), not a fixed AUC. Less data does not learn the
cross in 3 epochs (8,000-12,000 rows: 0.64-0.70 with data seed 7), so the rows stay.
"""

from __future__ import annotations

import numpy as np
import pytest

from feseq_tf.metrics import captured_lift

ROWS = 20_000
DATA_SEED = 7
TRAIN_SEED = 1
EPOCHS = 3
LEARNING_RATE = 3e-3
STRENGTH = 3.0
QUERY, KEY = "category_1_id", "gender"
PROBE_SIZE = 2048
# Every effect of the generator off except, where planted, gender x category_1_id.
EFFECTS_OFF = {
    "item_quality": 0.0, "shop_quality": 0.0, "user_activity": 0.0, "super_vip": 0.0,
    "hour": 0.0, "weekday": 0.0, "gender_category": 0.0, "price_match": 0.0,
    "meal_category": 0.0, "history_shop": 0.0, "history_category": 0.0,
    "history_click_boost": 0.0, "noise": 0.0,
}


def _dataset(path: str, strength: float) -> str:
    from pipelines import synthetic

    synthetic.make_synthetic_dataset(
        path, num_rows=ROWS, seed=DATA_SEED, progress=False, target_ctr=0.3,
        **{**EFFECTS_OFF, "gender_category": strength},
    )
    return path


def _planted_cross(planted_dir: str, probe: dict[str, np.ndarray]) -> np.ndarray:
    """The planted logit of the probe rows (the oracle's logit: intercept + cross)."""
    from feseq_tf.data import read_columns

    n = len(probe["hist_len"])
    cols = read_columns(planted_dir, "valid", ["oracle_prob", QUERY, KEY])
    for name in (QUERY, KEY):  # the control's probe must be the same rows
        np.testing.assert_array_equal(cols[name][:n], probe[name])
    p = cols["oracle_prob"][:n].astype(np.float64)
    return np.log(p / (1.0 - p))


def _oracle_valid_auc(planted_dir: str) -> float:
    """The AUC of the true click probabilities on the planted validation split."""
    from feseq_tf.data import read_columns
    from feseq_tf.metrics import auc
    from feseq_tf.schema import DatasetSpec

    label = DatasetSpec.load(planted_dir).label
    cols = read_columns(planted_dir, "valid", ["oracle_prob", label])
    return auc(cols[label], cols["oracle_prob"])


def _train_and_correlate(data: str, run_dir: str, cross: np.ndarray | None, planted_dir: str):
    """Trains FESeq on ``data``; correlations of the query row's weights with the cross.

    Returns (corr of the pair, corr of every key field of the query row, field names,
    best validation AUC, the planted cross of the probe rows).
    """
    from feseq_tf import training
    from feseq_tf.config import preset
    from feseq_tf.explain import input_field_names, probe_batch
    from feseq_tf.models.feseq import FESeq
    from feseq_tf.schema import DatasetSpec

    spec = DatasetSpec.load(data)
    config = preset("synthetic").override({
        "model": {"embedding_dim": 8, "interaction_heads": 1, "mlp_units": [32], "dropout": 0.0,
                  "pooling_hidden": 16, "transformer_heads": 2},
        "train": {"epochs": EPOCHS, "patience": EPOCHS, "batch_size": 256, "eval_batch_size": 4096,
                  "learning_rate": LEARNING_RATE, "seed": TRAIN_SEED},
    })
    training.set_seed(TRAIN_SEED)
    model = FESeq(spec, config.model, name="feseq")
    result = training.fit(model, data, run_dir, config, jit=False, verbose=0)

    probe = probe_batch(data, "valid", probe_size=PROBE_SIZE, spec=spec)
    if cross is None:
        cross = _planted_cross(planted_dir, probe)
    inputs = {n: probe[n] for n in model.spec.model_input_names()}
    att = np.asarray(model.attention_model()(inputs, training=False)["input_field_attention"])
    names = input_field_names(model.spec, model.config)
    # [B, T, H, F, F]: every query row of every position and head sums to 1 over the keys
    np.testing.assert_allclose(att.sum(axis=-1), 1.0, rtol=1e-4, atol=1e-4)
    assert att.shape[-1] == att.shape[-2] == len(names)
    row = att[:, -1, :, names.index(QUERY), :].mean(axis=1)  # [B, F]: target position, heads
    corrs = np.array([np.corrcoef(row[:, j], cross)[0, 1] for j in range(len(names))])
    best_auc = max(h["val_auc"] for h in result["history"])
    return corrs[names.index(KEY)], corrs, names, best_auc, cross


@pytest.mark.slow
def test_feseq_learns_a_planted_cross_that_the_control_data_lacks(tmp_path):
    planted = _dataset(str(tmp_path / "planted"), STRENGTH)
    control = _dataset(str(tmp_path / "control"), 0.0)

    pair, _, _, auc, cross = _train_and_correlate(
        planted, str(tmp_path / "run_planted"), None, planted
    )
    control_pair, _, _, control_auc, _ = _train_and_correlate(
        control, str(tmp_path / "run_control"), cross, planted
    )
    found = {"planted": float(pair), "control": float(control_pair),
             "planted_auc": auc, "control_auc": control_auc,
             "oracle_auc": _oracle_valid_auc(planted)}
    # The cross is learnt where it is planted (at least half of the oracle's lift over
    # chance; the oracle's validation AUC is 0.94 for data seed 7), and nothing is learnt
    # from the same rows without it.
    assert captured_lift(auc, found["oracle_auc"]) > 0.5 and control_auc < 0.6, found
