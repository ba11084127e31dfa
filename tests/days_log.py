"""A small impression log cut into days, and its days prepared for the daily-loop tests.

Test modules load the fixture with ``pytest_plugins = ("tests.days_log",)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines import extend, generic
from pipelines.generic import PipelineSpec

MAX_LEN = 4


def days_spec(**overrides) -> PipelineSpec:
    """The log's pipeline spec: a user field, a numeric and a hashed field, two
    sequential item fields, the history's labels; ``min_count`` 2."""
    options = dict(
        name="days",
        user_key="user",
        timestamp="ts",
        label="label",
        non_sequential_fields=[{"name": "user"}, {"name": "x", "type": "numeric"},
                               {"name": "h", "hash_buckets": 7}],
        sequential_fields=[{"name": "item"}, {"name": "cat"}],
        max_len=MAX_LEN,
        min_count=2,
        feedback=True,
        shuffle_train=True,
        seed=3,
    )
    options.update(overrides)
    return PipelineSpec(**options)


def day_log(rng: np.random.Generator, start: int, users: int, items: int, rows: int) -> pd.DataFrame:
    """``rows`` impressions with unique timestamps from ``start``: users and items drawn
    from ranges that grow day by day, so each day brings new ones."""
    item = rng.integers(0, items, rows)
    return pd.DataFrame({
        "user": [f"u{u}" for u in rng.integers(0, users, rows)],
        "ts": start + rng.permutation(rows) * 3,  # unique, in no input order
        "item": [f"i{i}" for i in item],
        "cat": [f"c{i % 5}" for i in item],
        "x": rng.normal(size=rows) * (2.0 if start else 1.0),
        "h": rng.integers(0, 50, rows),
        "label": rng.integers(0, 2, rows),
    })


@pytest.fixture(scope="module")
def days_datasets(tmp_path_factory):
    """Day 1, day 2 prepared on top of it, and both prepared at once:
    (``{"day1", "day2", "all"}`` -> directory, (day 1, day 2) frames)."""
    rng = np.random.default_rng(0)
    day1 = day_log(rng, 0, users=30, items=40, rows=600)
    day2 = day_log(rng, 10_000, users=45, items=60, rows=500)
    root = tmp_path_factory.mktemp("days")
    dirs = {k: str(root / k) for k in ("day1", "day2", "all")}
    generic.build_dataset(day1, days_spec(), dirs["day1"], progress=False)
    extend.extend_dataset(day2, days_spec(), dirs["day1"], dirs["day2"], progress=False)
    generic.build_dataset(pd.concat([day1, day2], ignore_index=True), days_spec(), dirs["all"],
                          progress=False)
    return dirs, (day1, day2)
