"""The "auto" id dropout: where validation has more unknown ids than training, train the
OOV id on at least 10 % of the samples."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from feseq_tf import cold_start
from feseq_tf.config import ModelConfig
from pipelines import generic
from pipelines.spec import PipelineSpec


@pytest.mark.parametrize("train_oov, rate", [(0.0, 0.1), (0.05, 0.053), (0.1, 0.0), (0.63, 0.0), (1.0, 0.0)])
def test_floor_rate_trains_the_oov_id_on_at_least_the_share(train_oov, rate):
    r = cold_start.floor_rate(train_oov)
    assert r == pytest.approx(rate)
    # dropping the known ids at r gives the OOV id max(a, OOV_SHARE) of the samples
    assert train_oov + (1 - train_oov) * r == pytest.approx(max(train_oov, cold_start.OOV_SHARE), abs=1e-3)


def test_floor_rate_rejects_shares_outside_zero_one():
    with pytest.raises(ValueError, match="train_oov"):
        cold_start.floor_rate(1.5)
    with pytest.raises(ValueError, match="share"):
        cold_start.floor_rate(0.0, share=1.0)


def _burst_log(n_users: int = 60, per_user: int = 20) -> pd.DataFrame:
    """Each user rates in one burst, users one after the other: a split by time puts
    users in valid and test that training never saw."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(n_users):
        for k in range(per_user):
            rows.append({"user": f"u{u}", "city": f"c{u % 3}", "ts": u * 1000 + k,
                         "item": f"i{rng.integers(30)}", "label": int(rng.random() < 0.5)})
    return pd.DataFrame(rows)


def _prepare(tmp_path, df) -> str:
    spec = PipelineSpec(
        name="bursts", user_key="user", timestamp="ts",
        non_sequential_fields=({"name": "user"}, {"name": "city", "role": "context"}),
        sequential_fields=({"name": "item"},), max_len=3, min_count=5,
    )
    out = str(tmp_path / "data")
    generic.build_dataset(df, spec, out, progress=False)
    return out


def test_rates_only_for_fields_with_more_unknown_values_in_validation(tmp_path):
    found = cold_start.id_dropout_rates(_prepare(tmp_path / "bursts", _burst_log()))
    # 48 users train, 6 valid, 6 test: every training user known, every valid user new;
    # every city known everywhere
    assert found["train_oov"] == {"user": 0.0, "city": 0.0}
    assert found["valid_oov"] == {"user": 1.0, "city": 0.0}
    assert found["rates"] == {"user": 0.1, "city": 0.0}
    assert ModelConfig(id_dropout=found["rates"]).id_dropout == found["rates"]
    df = _burst_log()
    early = df.user.isin([f"u{k}" for k in range(7)])
    df.loc[early, "user"] = df.user + "_" + df.ts.astype(str)  # 140 one-off users, in training
    found = cold_start.id_dropout_rates(_prepare(tmp_path / "one_off", df))
    # the OOV user id is already in 140 of 960 training samples: nothing to add
    assert found["train_oov"]["user"] == pytest.approx(140 / 960)
    assert found["valid_oov"]["user"] == 1.0
    assert found["rates"] == {"user": 0.0, "city": 0.0}


@pytest.mark.slow
def test_run_resolves_auto_into_the_models_rates_and_keeps_auto_in_the_config(tmp_path, capsys):
    from feseq_tf import train

    data = _prepare(tmp_path, _burst_log())
    out = str(tmp_path / "run")
    train.main(["--dataset", data, "--output-dir", out, "--epochs", "1", "--no-export",
                "--set", "model.id_dropout=auto", "--set", "model.mlp_units=[8]",
                "--set", "model.embedding_dim=4", "--set", "model.transformer_heads=2"])
    assert "id dropout (auto): user 0.1 (OOV 0.000 of train, 1.000 of valid), city 0 (OOV 0.000" in (
        capsys.readouterr().out
    )
    with open(os.path.join(out, "config.json")) as fh:
        assert json.load(fh)["model"]["id_dropout"] == "auto"
    import keras

    model = keras.models.load_model(os.path.join(out, "model.keras"))
    assert model.config.id_dropout == {"user": 0.1, "city": 0.0}
    assert [layer.name for layer in model.layers if "id_dropout" in layer.name] == ["id_dropout_user"]


def test_building_a_model_with_auto_or_an_unknown_field_says_what_to_do():
    from feseq_tf.models.feseq import FESeq
    from tests.test_model_feseq import tiny_config, tiny_spec

    with pytest.raises(ValueError, match="train.run resolves it"):
        FESeq(tiny_spec(), tiny_config(id_dropout="auto"))
    with pytest.raises(ValueError, match=r"\['item_id'\], which are not non-sequential"):
        FESeq(tiny_spec(), tiny_config(id_dropout={"item_id": 0.1}))
    with pytest.raises(ValueError, match="id_dropout must be"):
        tiny_config(id_dropout="sometimes")
