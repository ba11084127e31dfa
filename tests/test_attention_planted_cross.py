"""The input interacting layer's attention follows a planted field cross.

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
"""

from __future__ import annotations

import numpy as np
import pytest

ROWS = 20_000
DATA_SEED = 7
TRAIN_SEED = 1
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
        "train": {"epochs": 3, "patience": 3, "batch_size": 256, "eval_batch_size": 4096,
                  "learning_rate": 3e-3, "seed": TRAIN_SEED},
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
    row = att[:, -1, :, names.index(QUERY), :].mean(axis=1)  # [B, F]: target position, heads
    corrs = np.array([np.corrcoef(row[:, j], cross)[0, 1] for j in range(len(names))])
    best_auc = max(h["val_auc"] for h in result["history"])
    return corrs[names.index(KEY)], corrs, names, best_auc, cross


@pytest.mark.slow
def test_last_interacting_layer_attention_tracks_the_planted_cross(tmp_path):
    planted = _dataset(str(tmp_path / "planted"), STRENGTH)
    control = _dataset(str(tmp_path / "control"), 0.0)

    pair, corrs, names, auc, cross = _train_and_correlate(
        planted, str(tmp_path / "run_planted"), None, planted
    )
    control_pair, _, _, control_auc, _ = _train_and_correlate(
        control, str(tmp_path / "run_control"), cross, planted
    )
    found = {"planted": float(pair), "control": float(control_pair),
             "planted_auc": auc, "control_auc": control_auc}

    assert auc > 0.85 and control_auc < 0.6, found  # the planted cross is learnt, nothing else
    # Among the key fields of the query's row, the planted partner tracks the cross most.
    others = [j for j, n in enumerate(names) if n not in (QUERY, KEY)]
    assert abs(pair) > np.abs(corrs[others]).max(), found
    # The same cell of the control model (same seed, same rows, no cross to learn) tracks
    # it only by chance; measured over seeds 1-3: planted 0.37-0.64, control 0.13-0.25.
    assert abs(pair) > 1.5 * abs(control_pair) and abs(pair) - abs(control_pair) > 0.1, found
