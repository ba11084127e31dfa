"""A new day prepared on top of an earlier prepared dataset (pipelines.extend)."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from feseq_tf import schema
from pipelines import extend, generic
from pipelines.generic import PipelineSpec
from tests.days_log import MAX_LEN, day_log, days_spec

pytest_plugins = ("tests.days_log",)  # fixture: days_datasets

PAD, OOV = schema.PAD_ID, schema.OOV_ID


def _spec(**overrides) -> PipelineSpec:
    return days_spec(**overrides)


@pytest.fixture(scope="module")
def days(days_datasets):
    """Day 1, day 2 prepared on top of it, and both prepared at once: (dirs, frames)."""
    return days_datasets


def _records(dataset_dir: str) -> dict[str, np.ndarray]:
    from feseq_tf.data import read_columns

    spec = schema.DatasetSpec.load(dataset_dir)
    names = [n for n in spec.tfrecord_features() if n != schema.ORACLE_KEY]
    parts = [read_columns(dataset_dir, s, names, spec=spec) for s in schema.SPLITS]
    return {n: np.concatenate([p[n] for p in parts]) for n in names}


def _decoder(dataset_dir: str, field: str):
    words = np.array(["<pad>", "<oov>"] + schema.read_vocab(dataset_dir, field), dtype=object)
    return lambda ids: words[ids]


def test_the_new_days_records_are_those_of_preparing_every_day_at_once(days):
    dirs, (_, day2) = days
    new, together = _records(dirs["day2"]), _records(dirs["all"])
    assert len(new["ts"]) == len(day2)
    where = {t: i for i, t in enumerate(together["ts"])}  # timestamps are unique
    at = np.array([where[t] for t in new["ts"]])
    same = {n: v[at] for n, v in together.items()}
    # what no vocabulary numbers: exactly equal
    for name in ("ts", "ts_list", schema.HIST_LEN, "label", "feedback", "feedback_list", "h"):
        np.testing.assert_array_equal(new[name], same[name], err_msg=name)
    assert (new[schema.HIST_LEN] == MAX_LEN).mean() > 0.5  # histories reach into day 1
    # numbers scaled with each dataset's own training range: the same raw values
    spec_new, spec_all = (schema.DatasetSpec.load(dirs[k]) for k in ("day2", "all"))
    raw = {}
    for key, spec, rec in (("new", spec_new, new), ("all", spec_all, same)):
        f = spec.field("x")
        raw[key] = rec["x"].astype(np.float64) * (f.max - f.min) + f.min
    np.testing.assert_allclose(raw["new"], raw["all"], rtol=0, atol=1e-4)
    # vocabulary fields: the same raw value wherever both vocabularies know it; where
    # one says OOV the value is one that vocabulary does not have
    agree = total = 0
    for field in ("user", "item", "cat"):
        for name in (field, field + schema.HIST_SUFFIX) if field != "user" else (field,):
            a = _decoder(dirs["day2"], field)(new[name])
            b = _decoder(dirs["all"], field)(same[name])
            np.testing.assert_array_equal(a == "<pad>", b == "<pad>", err_msg=name)
            known_a = set(schema.read_vocab(dirs["day2"], field))
            known_b = set(schema.read_vocab(dirs["all"], field))
            for x, y in zip(a.ravel(), b.ravel(), strict=True):
                if x == y:
                    agree += x not in ("<pad>", "<oov>")
                elif x == "<oov>":
                    assert y not in known_a, (name, y)
                elif y == "<oov>":
                    assert x not in known_b, (name, x)
                else:
                    raise AssertionError(f"{name}: {x} against {y}")
                total += x != "<pad>"
    assert agree / total > 0.8, (agree, total)  # the comparison is not vacuous


def test_vocabularies_grow_append_only_and_the_new_values_follow_count_then_string(days):
    dirs, (day1, day2) = days
    for field in ("user", "item", "cat"):
        old, grown = (schema.read_vocab(dirs[k], field) for k in ("day1", "day2"))
        assert grown[: len(old)] == old, field  # every value keeps its id
    old = schema.read_vocab(dirs["day1"], "item")
    grown = schema.read_vocab(dirs["day2"], "item")
    assert len(grown) > len(old)  # day 2 brings items
    with open(os.path.join(dirs["day2"], extend.STATE_DIR, extend.COUNTS_FILE)) as fh:
        counts = json.load(fh)["item"]
    added = grown[len(old):]
    assert all(counts[v] >= 2 for v in added)
    assert added == sorted(added, key=lambda v: (-counts[v], v))
    # nothing under min_count got an id, and every value that reached it did
    assert {v for v, n in counts.items() if n >= 2} == set(grown)
    spec = schema.DatasetSpec.load(dirs["day2"])
    assert spec.field("item").vocab_size == len(grown) + schema.NUM_RESERVED_IDS
    assert spec.extra["extends"]["new_ids"]["item"] == len(added)
    # the counts are those of the training rows of both days
    assert sum(counts.values()) == (schema.DatasetSpec.load(dirs["day1"]).split_sizes["train"]
                                    + spec.split_sizes["train"])


def test_scaling_constants_stay_unless_refitted(days, tmp_path):
    dirs, (_, day2) = days
    first = schema.DatasetSpec.load(dirs["day1"]).field("x")
    kept = schema.DatasetSpec.load(dirs["day2"]).field("x")
    assert (kept.min, kept.max) == (first.min, first.max)
    refit = extend.extend_dataset(day2, _spec(), dirs["day1"], None, refit_scaling=True,
                                  progress=False)
    wide = refit.spec.field("x")
    assert wide.min <= first.min and wide.max >= first.max
    assert (wide.min, wide.max) != (first.min, first.max)  # day 2's numbers are wider
    assert refit.spec.extra["extends"]["refit_scaling"] is True


def test_state_carries_each_users_last_impressions_and_extensions_chain(days, tmp_path):
    dirs, (day1, day2) = days
    tail, _, meta = extend.load_state(dirs["day2"])
    both = pd.concat([day1, day2], ignore_index=True)
    expected = both.sort_values("ts", kind="stable").groupby("user").tail(MAX_LEN)
    assert sorted(tail["ts"]) == sorted(expected["ts"])
    assert meta["extensions"] == 1 and meta["max_len"] == MAX_LEN
    rng = np.random.default_rng(1)
    day3 = day_log(rng, 20_000, users=50, items=70, rows=300)
    third = extend.extend_dataset(day3, _spec(), dirs["day2"], str(tmp_path / "day3"),
                                  progress=False)
    assert third.spec.extra["extends"]["extensions"] == 2
    grown = schema.read_vocab(str(tmp_path / "day3"), "item")
    assert grown[: len(schema.read_vocab(dirs["day2"], "item"))] == schema.read_vocab(
        dirs["day2"], "item")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sequential_fields": [{"name": "item"}]}, "field 'cat' of the dataset being extended"),
        ({"non_sequential_fields": [{"name": "user"}, {"name": "x"}, {"name": "h", "hash_buckets": 7}]},
         "field 'x' changed"),
        ({"max_len": 3}, "max_len is 3"),
        ({"feedback": False}, "feedback is False"),
    ],
)
def test_a_spec_that_does_not_describe_the_dataset_is_refused(days, change, message):
    dirs, (_, day2) = days
    with pytest.raises(ValueError, match=message):
        extend.extend_dataset(day2, _spec(**change), dirs["day1"], None, progress=False)


def test_extending_needs_the_state_and_a_new_directory(days, tmp_path):
    dirs, (_, day2) = days
    bare = tmp_path / "bare"
    generic.build_dataset(day2, _spec(), str(bare), progress=False)
    import shutil

    shutil.rmtree(bare / extend.STATE_DIR)
    with pytest.raises(ValueError, match="has no extend_state/"):
        extend.extend_dataset(day2, _spec(), str(bare), None, progress=False)
    with pytest.raises(ValueError, match="new directory"):
        extend.extend_dataset(day2, _spec(), dirs["day1"], dirs["day1"], progress=False)


def test_cli_extends_a_prepared_dataset(days, tmp_path, capsys):
    dirs, (_, day2) = days
    path = tmp_path / "day2.csv"
    day2.to_csv(path, index=False)
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(_spec().to_dict()))
    out = tmp_path / "out"
    assert generic.main(["--input", str(path), "--spec", str(spec_path), "--extend", dirs["day1"],
                         "--out", str(out), "--quiet"]) == 0
    np.testing.assert_array_equal(_records(str(out))["item_list"], _records(dirs["day2"])["item_list"])
    report = json.loads((out / "report.json").read_text())
    assert report["extends"]["earlier_than_carried"] == 0
    assert report["rows_kept"] == len(day2) and report["users"] == day2["user"].nunique()
    assert report["samples"] == schema.DatasetSpec.load(str(out)).split_sizes


def test_ele_me_day_files_extend_like_the_generic_pipeline(tmp_path):
    """The Ele.me pipeline's --extend: a third day file on top of the first two gives the
    records of preparing the three at once (times, labels, histories' times and lengths)."""
    from feseq_tf.data import read_columns
    from pipelines import eleme
    from pipelines.synthetic.raw import generate

    raw = str(tmp_path / "raw")
    generate(raw, num_rows=1500, seed=5, days=("D1_0", "D3_1", "D5_0"))
    options = dict(sample_frac=1.0, min_count=2, progress=False)
    eleme.prepare(raw, str(tmp_path / "two"), days=("D1_0", "D3_1"), **options)
    assert eleme.main(["--raw-dir", raw, "--out", str(tmp_path / "three"), "--days", "D5_0",
                       "--extend", str(tmp_path / "two"), "--sample-frac", "1", "--min-count",
                       "2", "--quiet"]) == 0
    eleme.prepare(raw, str(tmp_path / "all"), days=("D1_0", "D3_1", "D5_0"), **options)
    spec = schema.DatasetSpec.load(str(tmp_path / "three"))
    names = ["times", "times_list", schema.HIST_LEN, "label", "item_id"]

    def records(path):
        parts = [read_columns(path, s, names) for s in schema.SPLITS]
        return {n: np.concatenate([p[n] for p in parts]) for n in names}

    new, together = records(str(tmp_path / "three")), records(str(tmp_path / "all"))
    key = lambda r, i: (int(r["times"][i]), tuple(r["times_list"][i]), float(r["label"][i]))  # noqa: E731
    pool = {}
    for i in range(len(together["times"])):
        pool.setdefault(key(together, i), []).append(i)
    matched = [pool[key(new, i)].pop() for i in range(len(new["times"]))]  # KeyError: no twin
    np.testing.assert_array_equal(new[schema.HIST_LEN], together[schema.HIST_LEN][matched])
    assert (new[schema.HIST_LEN] > 0).mean() > 0.3  # day 5's histories reach days 1 and 3
    old_items = schema.read_vocab(str(tmp_path / "two"), "item_id")
    assert schema.read_vocab(str(tmp_path / "three"), "item_id")[: len(old_items)] == old_items
    assert spec.extra["extends"]["extensions"] == 1


def test_new_impressions_earlier_than_carried_ones_are_counted(days):
    dirs, (day1, day2) = days
    late = day2.copy()
    late.loc[:9, "ts"] = -1 - np.arange(10)  # before every day-1 impression
    late.loc[:9, "user"] = day1["user"].iloc[:10].to_numpy()  # of users day 1 has
    result = extend.extend_dataset(late, _spec(), dirs["day1"], None, progress=False)
    assert result.report["extends"]["earlier_than_carried"] == 10
    assert result.report["rows_kept"] == len(late)  # counted, not dropped
