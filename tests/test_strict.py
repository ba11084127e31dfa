"""Strict reading of mappings into dataclasses, and the readers that use it."""

from __future__ import annotations

import dataclasses

import pytest

from feseq_tf.config import ExperimentConfig
from feseq_tf.schema import DatasetSpec
from feseq_tf.strict import check_keys, strict_from_dict


@dataclasses.dataclass
class Point:
    x: int
    y: int = 2
    tags: list = dataclasses.field(default_factory=list)


def test_fills_defaults_for_keys_left_out():
    assert strict_from_dict(Point, {"x": 1}, where="point") == Point(1, 2, [])
    assert strict_from_dict(Point, {"x": 1, "y": 5, "tags": ["a"]}, where="point") == Point(
        1, 5, ["a"]
    )


def test_unknown_keys_are_named_with_the_known_ones():
    with pytest.raises(
        ValueError, match=r"Unknown keys in point: \['w', 'z'\]; known keys: \['tags', 'x', 'y'\]"
    ):
        strict_from_dict(Point, {"x": 1, "z": 0, "w": 0}, where="point")


def test_missing_required_keys_and_non_mappings_are_value_errors():
    with pytest.raises(ValueError, match=r"The point is missing required keys \['x'\]"):
        strict_from_dict(Point, {"y": 1}, where="point")
    with pytest.raises(ValueError, match="The point must be a mapping, got list"):
        strict_from_dict(Point, [1, 2], where="point")
    with pytest.raises(ValueError, match="`cls` must be a dataclass type"):
        check_keys(dict, {}, where="point")


def test_experiment_config_names_the_nested_section_of_an_unknown_key():
    with pytest.raises(
        ValueError, match=r"Unknown keys in model config: \['nope'\]; known keys: \["
    ):
        ExperimentConfig.from_dict({"model": {"nope": 1}})
    with pytest.raises(ValueError, match=r"Unknown keys in train config: \['lr'\]"):
        ExperimentConfig.from_dict({"train": {"lr": 1}})
    with pytest.raises(ValueError, match=r"Unknown keys in experiment config: \['modle'\]"):
        ExperimentConfig.from_dict({"modle": {}})
    config = ExperimentConfig.from_dict({"model": {"embedding_dim": 8}})
    assert config.model.embedding_dim == 8 and config == ExperimentConfig.from_dict(
        config.to_dict()
    )
    assert config.dataset == "synthetic" and config.model_name == "feseq"


def test_dataset_spec_rejects_unknown_and_missing_keys():
    field = {
        "name": "item_id",
        "role": "item",
        "type": "categorical",
        "sequential": True,
        "vocab_size": 5,
    }
    spec = DatasetSpec.from_dict({"name": "s", "fields": [field], "max_len": 3})
    assert DatasetSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match=r"Unknown keys in dataset spec: \['maxlen'\]"):
        DatasetSpec.from_dict({"name": "s", "fields": [field], "maxlen": 3})
    with pytest.raises(ValueError, match=r"missing required keys \['max_len'\]"):
        DatasetSpec.from_dict({"name": "s", "fields": [field]})
    with pytest.raises(
        ValueError, match=r"Unknown keys in field #0 of the dataset spec: \['typ'\]"
    ):
        DatasetSpec.from_dict({"name": "s", "fields": [{**field, "typ": "x"}], "max_len": 3})
