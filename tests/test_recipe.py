"""The default recipe for data without a preset: sized from the training split."""

from __future__ import annotations

import dataclasses

import pytest

from feseq_tf import recipe, train
from feseq_tf.config import PAPER_ARCHITECTURE, preset
from feseq_tf.schema import DatasetSpec, FieldSpec


def spec_with(train_samples: int) -> DatasetSpec:
    return DatasetSpec(
        name="my_log",
        max_len=5,
        fields=(
            FieldSpec("user_id", "user", "categorical", vocab_size=10),
            FieldSpec("item_id", "item", "categorical", sequential=True, vocab_size=20),
        ),
        split_sizes={"train": train_samples, "valid": 10, "test": 10},
    )


@pytest.mark.parametrize(
    "samples, batch",
    [(1_000, 256), (80_000, 256), (200_000, 512), (400_000, 512), (958_080, 1024),
     (1_200_000, 1024), (5_000_000, 2048), (50_000_000, 4096)],
)
def test_batch_size_grows_with_the_square_root_of_the_data(samples, batch):
    assert recipe.batch_size_for(samples) == batch
    if recipe.MIN_BATCH < batch < recipe.MAX_BATCH:  # within a factor sqrt(2) of the rule
        ideal = recipe.MIN_BATCH * (samples / recipe.REFERENCE_SAMPLES) ** 0.5
        assert ideal / 2**0.5 <= batch <= ideal * 2**0.5


def test_larger_data_gets_more_steps_per_epoch():
    sizes = [80_000, 200_000, 958_080, 5_000_000, 20_000_000]
    steps = [n / recipe.batch_size_for(n) for n in sizes]
    assert steps == sorted(steps) and steps[-1] > 10 * steps[0]


def test_small_data_does_not_get_the_papers_ele_me_hyperparameters():
    cfg = recipe.recipe(spec_with(80_000))
    paper = train.resolve_config("eleme")
    assert cfg.train.batch_size < paper.train.batch_size
    assert cfg.model.embedding_l2 < paper.model.embedding_l2
    assert cfg.model.embedding_stddev > paper.model.embedding_stddev
    assert cfg.train.epochs >= 20 and cfg.train.patience >= 2
    assert cfg.dataset == "my_log" and cfg.model_name == "feseq"


def test_large_data_gets_the_papers_model_size_and_a_smaller_batch():
    cfg = recipe.recipe(spec_with(1_200_000))
    paper = train.resolve_config("eleme")
    assert cfg.model.mlp_units == paper.model.mlp_units
    assert cfg.model.pooling_hidden == paper.model.pooling_hidden
    # The paper's 4096 gives 290 steps per epoch at Ele.me's size; the recipe 4x more.
    assert cfg.train.batch_size == paper.train.batch_size // 4


def test_a_dataset_directory_trains_with_the_recipe_unless_a_preset_is_named():
    spec = spec_with(80_000)
    auto = train.resolve_config("my_log", spec=spec)
    assert auto == recipe.recipe(spec)
    named = train.resolve_config("my_log", preset_name="eleme", spec=spec)
    assert named.train.batch_size == 4096
    with pytest.raises(train.UsageError, match="pass the dataset's spec"):
        train.resolve_config("my_log")


def test_recipe_needs_the_training_split_size():
    with pytest.raises(ValueError, match="no training-split size"):
        recipe.recipe(dataclasses.replace(spec_with(10), split_sizes={}))
    with pytest.raises(ValueError, match="train_samples"):
        recipe.batch_size_for(0)


def test_synthetic_preset_is_the_recipe_at_the_default_synthetic_size():
    spec = dataclasses.replace(spec_with(199_600), name="synthetic")
    # but for re-drawing the embeddings, off so that the quick start stays short, id
    # dropout, 0: what "auto" resolves to on this data (tests/test_cold_start.py), and the
    # three inputs beyond the paper, which the generator plants and the preset keeps on
    quick = recipe.recipe(spec)
    assert quick.train.redraw_embeddings and not preset("synthetic").train.redraw_embeddings
    assert quick.model.id_dropout == "auto" and preset("synthetic").model.id_dropout == 0.0
    extra = {"history_match": True, "wide": True, "target_in_output": True}
    assert preset("synthetic") == quick.override(
        {"train": {"redraw_embeddings": False}, "model": {"id_dropout": 0.0, **extra}}
    )


def test_recipe_is_the_papers_architecture_and_only_the_synthetic_preset_adds_inputs():
    for samples in (80_000, 2_000_000):
        cfg = recipe.recipe(spec_with(samples))
        for name, value in PAPER_ARCHITECTURE.items():
            assert getattr(cfg.model, name) == value, name
        assert cfg.train.redraw_embeddings and cfg.model.id_dropout == "auto"
        # FESeq as the paper specifies it is the same model under the recipe
        assert train.resolve_config(
            "mine", model_name="feseq_paper", spec=spec_with(samples)
        ).model == cfg.model
    for name in ("eleme", "bundle"):
        paper = train.resolve_config(name)
        assert not (paper.model.history_match or paper.model.wide or paper.model.target_in_output)
        assert not paper.train.redraw_embeddings and paper.model.id_dropout == 0.0
    synthetic = preset("synthetic").model
    assert synthetic.history_match and synthetic.wide and synthetic.target_in_output


def test_feseq_paper_takes_the_papers_architecture_and_refuses_options_beyond_it():
    cfg = train.resolve_config("synthetic", model_name="feseq_paper")  # preset has them on
    assert cfg.model_name == "feseq_paper"
    assert not (cfg.model.history_match or cfg.model.wide or cfg.model.target_in_output)
    assert cfg.model.pooling_hidden == preset("synthetic").model.pooling_hidden  # rest kept
    with pytest.raises(train.UsageError, match="model.wide=True"):
        train.resolve_config("synthetic", model_name="feseq_paper",
                             overrides={"model": {"wide": True}, "train": {}})


def test_logistic_regression_trains_at_its_own_rate_and_batch_under_every_preset():
    for dataset, spec in (("mine", spec_with(80_000)), ("mine", spec_with(2_000_000)),
                          ("synthetic", None), ("eleme", None)):
        deep = train.resolve_config(dataset, spec=spec, model_name="din")
        linear = train.resolve_config(dataset, spec=spec, model_name="lr")
        assert (linear.train.learning_rate, linear.train.batch_size) == (1e-2, 2048)
        # nothing else moves: the model settings and the rest of the training recipe
        assert linear.model == deep.model
        assert linear.train == deep.train.__class__(
            **{**dataclasses.asdict(deep.train), "learning_rate": 1e-2, "batch_size": 2048}
        )
    # the user's flags still win
    mine = train.resolve_config("synthetic", model_name="lr",
                                overrides={"model": {}, "train": {"batch_size": 512}})
    assert mine.train.batch_size == 512 and mine.train.learning_rate == 1e-2


def test_named_datasets_keep_their_presets_and_directories_get_the_recipe():
    assert train.preset_for("synthetic") == "synthetic"
    assert train.preset_for("eleme") == "eleme"
    assert train.preset_for("data/regimes/dense") == "auto"  # its spec is named "synthetic"
    assert train.preset_for("data/regimes/dense", "synthetic") == "synthetic"
