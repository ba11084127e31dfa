"""Tests of the synthetic Ele.me-layout generator (pipelines/synthetic.py)."""

from __future__ import annotations

import csv
import dataclasses
import json
import os

import numpy as np
import pytest

from pipelines import synthetic

TINY = 400
SMALL = 3000


def _read_rows(path: str) -> list[list[str]]:
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def _read_oracle(path: str) -> np.ndarray:
    with open(path) as fh:
        return np.array([float(line) for line in fh])


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = str(tmp_path_factory.mktemp("synthetic_raw"))
    synthetic.generate(out, num_rows=TINY, seed=7, unknown_frac=0.02)
    return out


# ---- files -----------------------------------------------------------------------------


def test_generate_is_deterministic_for_a_seed(tmp_path) -> None:
    paths = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        out = str(tmp_path / name)
        synthetic.generate(out, num_rows=TINY, seed=seed)
        paths[name] = out
    for day in synthetic.DEFAULT_DAYS:
        for suffix in (".csv", synthetic.ORACLE_SUFFIX):
            a = open(os.path.join(paths["a"], day + suffix), "rb").read()
            b = open(os.path.join(paths["b"], day + suffix), "rb").read()
            assert a == b
    a = open(os.path.join(paths["a"], "D1_0.csv"), "rb").read()
    c = open(os.path.join(paths["c"], "D1_0.csv"), "rb").read()
    assert a != c


def test_raw_files_have_the_eleme_layout(raw_dir) -> None:
    from pipelines.eleme import RAW_COLUMNS, read_raw_file

    assert len(RAW_COLUMNS) == 39
    info = synthetic.read_generator_info(raw_dir)
    total = dropped = 0
    for day in synthetic.DEFAULT_DAYS:
        rows = _read_rows(os.path.join(raw_dir, day + ".csv"))
        total += len(rows)
        # The Ele.me reader parses every line; it drops only the rows with unknown codes.
        raw = read_raw_file(os.path.join(raw_dir, day + ".csv"))
        assert raw.lines == len(rows)
        assert not [reason for reason in raw.dropped if reason.startswith("malformed")]
        dropped += sum(raw.dropped.values())
        assert rows, day
        assert all(len(r) == 39 for r in rows)
        col = {name: i for i, name in enumerate(RAW_COLUMNS)}
        assert rows[0][col["label"]] in ("0", "1")  # no header line
        weekday = synthetic.parse_day(day)
        for r in rows:
            if "" in r or "-1" in r or r[col["gender"]] == "-99":
                continue  # a row with an unknown code
            t = int(r[col["times"]])
            assert int(r[col["weekdays"]]) == weekday == t // 1440 + 1
            assert int(r[col["hours"]]) == (t % 1440) // 60
            assert r[col["time_type"]] == synthetic.TIME_TYPES[
                synthetic.HOUR_TIME_TYPE[int(r[col["hours"]])]]
            for name in ("shop_id_list", "item_id_list", "price_list", "time_type_list"):
                assert 1 <= len(r[col[name]].split("^")) <= synthetic.RAW_LIST_LEN
    assert total == info["num_rows"] == TINY
    assert sum(info["files"].values()) == TINY
    assert dropped == info["world"]["unknown_rows"] > 0


def test_oracle_file_is_aligned_with_raw_rows(raw_dir) -> None:
    from pipelines.eleme import RAW_COLUMNS

    info = synthetic.read_generator_info(raw_dir)
    sim = synthetic.simulation_from_info(info)
    col = {name: i for i, name in enumerate(RAW_COLUMNS)}
    user_ids = np.asarray(sim.columns["user_id"])[: sim.num_valid]
    key = {(int(u), int(t)): i for i, (u, t) in enumerate(zip(user_ids, sim.times, strict=True))}
    matched = 0
    for day in synthetic.DEFAULT_DAYS:
        rows = _read_rows(os.path.join(raw_dir, day + ".csv"))
        oracle = _read_oracle(os.path.join(raw_dir, day + synthetic.ORACLE_SUFFIX))
        assert len(oracle) == len(rows)
        assert np.all((oracle > 0) & (oracle < 1))
        for r, p in zip(rows, oracle, strict=True):
            i = key.get((int(r[col["user_id"]]), int(r[col["times"]])))
            if i is None:
                continue  # a row with an unknown code, under a user id of its own
            matched += 1
            assert p == pytest.approx(sim.prob[i], rel=1e-6)
            assert int(r[col["label"]]) == sim.label[i]
    assert matched == sim.num_valid


def test_rows_with_unknown_codes_are_dropped_by_the_pipeline(raw_dir) -> None:
    info = synthetic.read_generator_info(raw_dir)
    result = synthetic.prepare(raw_dir, None, progress=False)
    kept = sum(len(result.tables[s]["label"]) for s in ("train", "valid", "test"))
    assert kept == info["world"]["valid_rows"] == TINY - info["world"]["unknown_rows"]
    assert info["world"]["unknown_rows"] == round(0.02 * TINY)
    assert result.spec.name == "synthetic"
    assert result.spec.has_oracle
    assert result.spec.time_unit == 60.0  # raw times are minutes; intervals reach the model in hours


def test_pipeline_histories_match_the_generator(raw_dir) -> None:
    info = synthetic.read_generator_info(raw_dir)
    result = synthetic.prepare(raw_dir, None, progress=False)
    hist = np.concatenate([result.tables[s]["hist_len"] for s in ("train", "valid", "test")])
    expected = info["history_length_distribution"]
    assert np.bincount(hist, minlength=len(expected)).tolist() == expected
    oracle = np.concatenate([result.tables[s]["oracle_prob"] for s in ("train", "valid", "test")])
    sim = synthetic.simulation_from_info(info)
    np.testing.assert_allclose(np.sort(oracle), np.sort(sim.prob), rtol=1e-5)


# ---- the generative model --------------------------------------------------------------------


def test_ctr_is_calibrated_at_a_modest_size() -> None:
    sim = synthetic.simulate(20_000, seed=11)
    assert sim.prob.mean() == pytest.approx(synthetic.DEFAULT_TARGET_CTR, rel=1e-3)
    assert 0.03 <= sim.label.mean() <= 0.05
    sim = synthetic.simulate(20_000, seed=11, target_ctr=0.1)
    assert sim.prob.mean() == pytest.approx(0.1, rel=1e-3)


def test_impressions_of_a_user_are_strictly_ordered_in_time() -> None:
    sim = synthetic.simulate(SMALL, seed=5)
    same_user = sim.user[1:] == sim.user[:-1]
    assert np.all(np.diff(sim.times)[same_user] > 0)
    assert np.all(sim.pos[1:][same_user] == sim.pos[:-1][same_user] + 1)
    dist = np.asarray(sim.params["history_length_distribution"])
    assert len(dist) == synthetic.DEFAULT_MAX_LEN + 1
    assert np.all(dist > 0)  # every history length 0..max_len occurs


def test_random_draws_do_not_depend_on_the_strengths() -> None:
    a = synthetic.simulate(SMALL, seed=5)
    b = synthetic.simulate(SMALL, seed=5, effects=synthetic.Effects(item_quality=0.0, noise=0.0))
    np.testing.assert_array_equal(a.item, b.item)
    np.testing.assert_array_equal(a.times, b.times)
    np.testing.assert_array_equal(a.user, b.user)


def test_history_strength_zero_makes_history_irrelevant() -> None:
    on = synthetic.simulate(SMALL, seed=5)
    off = synthetic.simulate(
        SMALL, seed=5, effects=synthetic.Effects(history_shop=0.0, history_category=0.0))
    assert np.any(on.components["history"] != 0)
    assert np.all(off.components["history"] == 0)
    # Without the history term the logit is the same function of the impression itself,
    # whatever its history: it equals the history-on logit minus its history term.
    np.testing.assert_allclose(
        off.logit - off.intercept,
        on.logit - on.intercept - on.components["history"], atol=1e-9)
    # With history on, a previous impression of the same shop raises the probability.
    shop = on.item  # same item implies same shop: a conservative check
    same_item_before = np.zeros(len(shop), bool)
    same_item_before[1:] = (shop[1:] == shop[:-1]) & (on.pos[1:] > 0)
    assert on.components["history"][same_item_before].mean() > 0.5


@pytest.mark.parametrize("strength, component", [
    ("item_quality", "item_quality"), ("shop_quality", "shop_quality"),
    ("user_activity", "user_activity"), ("super_vip", "super_vip"), ("hour", "hour"),
    ("weekday", "weekday"), ("gender_category", "gender_category"),
    ("price_match", "price_match"), ("meal_category", "meal_category"), ("noise", "noise"),
])
def test_each_strength_zero_removes_its_term(strength, component) -> None:
    on = synthetic.simulate(TINY, seed=2)
    off = synthetic.simulate(TINY, seed=2, effects=synthetic.Effects(**{strength: 0.0}))
    assert np.any(on.components[component] != 0)
    assert np.all(off.components[component] == 0)


def test_history_term_counts_previous_impressions_of_the_same_shop() -> None:
    base = dict(history_category=0.0, history_click_boost=0.0, history_cap=1e6)
    flat = synthetic.simulate(SMALL, seed=5, effects=synthetic.Effects(
        history_position_decay=0.0, history_time_decay=0.0, **base))
    shop = np.asarray(flat.columns["shop_id"])[: flat.num_valid]
    max_len = synthetic.DEFAULT_MAX_LEN
    expected = np.zeros(flat.num_valid)
    for i in range(flat.num_valid):
        for j in range(1, min(flat.pos[i], max_len) + 1):
            expected[i] += shop[i - j] == shop[i]
    # tanh(r / cap) * cap == r for a huge cap
    np.testing.assert_allclose(flat.components["history"], 1.5 * expected, rtol=1e-6)
    assert expected.max() > 1
    # Decay by position and time only ever lowers the weight of a match.
    decayed = synthetic.simulate(SMALL, seed=5, effects=synthetic.Effects(**base))
    rows = expected > 0
    assert np.all(decayed.components["history"][rows] < flat.components["history"][rows])
    assert np.all(decayed.components["history"][~rows] == 0)


def _explained_share(term: np.ndarray, key: np.ndarray) -> float:
    """Share of the variance of ``term`` explained by the mean of ``term`` per ``key``."""
    _, inverse = np.unique(key, return_inverse=True)
    means = np.bincount(inverse, weights=term) / np.bincount(inverse)
    return float(means[inverse].var() / term.var())


def test_crosses_carry_no_single_field_signal() -> None:
    sim = synthetic.simulate(20_000, seed=9)
    col = {name: np.asarray(sim.columns[name])[: sim.num_valid] for name in (
        "gender", "category_1_id", "rank_7", "avg_price", "time_type")}
    price_decile = np.searchsorted(np.quantile(col["avg_price"], np.linspace(0.1, 0.9, 9)),
                                   col["avg_price"])
    crosses = {
        "gender_category": (col["gender"], col["category_1_id"]),
        "price_match": (col["rank_7"], price_decile),
        "meal_category": (col["time_type"], col["category_1_id"]),
    }
    for component, keys in crosses.items():
        term = sim.components[component]
        for key in keys:  # each side alone explains (almost) nothing of the cross...
            assert _explained_share(term, key) < 0.1, component
        # ...while both sides together explain much of it
        pair = np.char.add(np.asarray(keys[0]).astype(str), np.asarray(keys[1]).astype(str))
        assert _explained_share(term, pair) > 0.3, component


# ---- arguments ---------------------------------------------------------------------------------


def test_bad_arguments_raise_value_error(tmp_path) -> None:
    out = str(tmp_path)
    with pytest.raises(ValueError, match="num_rows"):
        synthetic.generate(out, num_rows=10)
    with pytest.raises(ValueError, match="history_shopp"):
        synthetic.generate(out, num_rows=TINY, history_shopp=1.0)
    with pytest.raises(ValueError, match="noise"):
        synthetic.generate(out, num_rows=TINY, noise=-1.0)
    with pytest.raises(ValueError, match="days"):
        synthetic.generate(out, num_rows=TINY, days=("D3_1", "D1_0"))
    with pytest.raises(ValueError, match="target_ctr"):
        synthetic.simulate(TINY, target_ctr=0.0)
    with pytest.raises(ValueError, match="num_rows"):
        synthetic.default_min_count(0)


def test_default_min_count_is_the_papers_from_100k_rows() -> None:
    assert synthetic.default_min_count(1_000_000) == 10
    assert synthetic.default_min_count(100_000) == 10
    assert synthetic.default_min_count(50_000) == 5
    assert synthetic.default_min_count(400) == 1


def test_main_writes_raw_files(tmp_path) -> None:
    out = str(tmp_path / "raw")
    info = synthetic.main(["--out", out, "--rows", str(TINY), "--seed", "1", "--raw-only",
                           "--set", "history_shop=0"])
    assert info["effects"]["history_shop"] == 0.0
    with open(os.path.join(out, synthetic.GENERATOR_FILE)) as fh:
        assert json.load(fh)["num_rows"] == TINY
    assert dataclasses.asdict(synthetic.Effects(history_shop=0.0)) == info["effects"]


def test_main_records_the_time_unit_in_the_spec(tmp_path) -> None:
    out = str(tmp_path / "minutes")
    result = synthetic.main(["--out", out, "--rows", str(TINY), "--seed", "1", "--time-unit", "1"])
    assert result["spec"]["time_unit"] == 1.0
    with pytest.raises(SystemExit, match="time-unit"):
        synthetic.main(["--out", str(tmp_path / "bad"), "--rows", str(TINY), "--time-unit", "0"])


# ---- quality -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_single_field_lr_captures_at_most_60_percent_of_the_oracle_lift(tmp_path) -> None:
    out = str(tmp_path / "synthetic")
    result = synthetic.make_synthetic_dataset(out, num_rows=60_000, seed=3, progress=False)
    rep = synthetic.report(out, result=result)
    assert 0.70 <= rep["oracle_auc"] <= 0.87
    assert rep["lr_auc"] > 0.55
    assert rep["captured_lift"] <= 0.60
    assert rep["test_rows_matched"]
    assert rep["oracle_auc_without"]["history"] < rep["oracle_auc"] - 0.01
