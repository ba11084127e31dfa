"""Tests of the synthetic Ele.me-layout generator (pipelines/synthetic/)."""

from __future__ import annotations

import csv
import dataclasses
import json
import os

import numpy as np
import pytest

from pipelines import synthetic
from pipelines.synthetic.quality import format_report

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


def test_python_dash_m_writes_the_same_files_as_generate(tmp_path) -> None:
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cli, api = str(tmp_path / "cli"), str(tmp_path / "api")
    subprocess.run([sys.executable, "-m", "pipelines.synthetic", "--out", cli, "--rows", str(TINY),
                    "--seed", "1", "--raw-only", "--set", "history_shop=0"],
                   cwd=root, check=True, capture_output=True)
    synthetic.generate(api, num_rows=TINY, seed=1, history_shop=0.0)
    for day in synthetic.DEFAULT_DAYS:
        for suffix in (".csv", synthetic.ORACLE_SUFFIX):
            with open(os.path.join(cli, day + suffix), "rb") as a, \
                    open(os.path.join(api, day + suffix), "rb") as b:
                assert a.read() == b.read()


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


# ---- knobs and regimes -------------------------------------------------------------------------

# Measured before the knobs existed: simulate(3000, seed=1) and simulate(20000, seed=11).
_DEFAULT_WORLD_3000 = {
    "cities": 4, "districts": 4, "aois": 12, "geohash6_cells": 5, "shops": 99, "items": 748,
    "brands": 5, "categories": 40, "users": 568, "valid_rows": 2994, "unknown_rows": 6,
}
_DEFAULT_WORLD_20000 = {
    "cities": 4, "districts": 16, "aois": 83, "geohash6_cells": 35, "shops": 665, "items": 4990,
    "brands": 13, "categories": 40, "users": 3633, "valid_rows": 19960, "unknown_rows": 40,
}


def _user_counts(sim: synthetic.Simulation) -> np.ndarray:
    """Impressions per user, the last user (who gets the remainder) left out."""
    return np.bincount(sim.user)[:-1]


def _sim_of_regime(name: str, **overrides) -> synthetic.Simulation:
    knobs = synthetic.regime_kwargs(name, **overrides)
    effects = synthetic.Effects.from_kwargs(
        **{k: knobs.pop(k) for k in list(knobs) if k in synthetic.EFFECT_NAMES})
    return synthetic.simulate(knobs.pop("num_rows"), effects=effects, **knobs)


@pytest.mark.parametrize("rows, seed, world, realized_ctr", [
    (3000, 1, _DEFAULT_WORLD_3000, 0.035738142952571814),
    (20_000, 11, _DEFAULT_WORLD_20000, 0.04033066132264529),
])
def test_default_data_is_what_it_was_before_the_knobs(tmp_path, rows, seed, world, realized_ctr) -> None:
    info = synthetic.generate(str(tmp_path), num_rows=rows, seed=seed)
    assert info["world"] == world
    assert info["realized_ctr"] == pytest.approx(realized_ctr, abs=1e-12)
    assert info["impressions_per_user"] == 3.0
    assert info["impressions_sigma"] == 1.0
    assert info["max_impressions_per_user"] == 200
    assert info["catalog_scale"] == 1.0
    assert info["regime"] is None


def test_default_regime_gives_the_same_files_as_no_regime(tmp_path) -> None:
    a, b = str(tmp_path / "plain"), str(tmp_path / "regime")
    synthetic.generate(a, num_rows=SMALL, seed=3)
    info = synthetic.generate(b, regime="default", num_rows=SMALL, seed=3)
    assert info["regime"] == "default"
    for day in synthetic.DEFAULT_DAYS:
        for suffix in (".csv", synthetic.ORACLE_SUFFIX):
            assert (open(os.path.join(a, day + suffix), "rb").read()
                    == open(os.path.join(b, day + suffix), "rb").read())
    # Without num_rows a regime brings its own size; without a regime, the default size.
    assert synthetic.regime_kwargs("default")["num_rows"] == synthetic.DEFAULT_NUM_ROWS
    assert synthetic.regime_kwargs("eleme_scale")["num_rows"] == 1_200_000
    assert synthetic.regime_kwargs()["num_rows"] == synthetic.DEFAULT_NUM_ROWS


def test_impressions_per_user_is_the_median_of_the_draw() -> None:
    for median in (3.0, 20.0):
        counts = _user_counts(synthetic.simulate(20_000, seed=4, impressions_per_user=median))
        # a user has 1 + floor(X) impressions, X log-normal with this (integer) median:
        # half of the users have at least 1 + median
        assert 0.45 <= np.mean(counts >= 1 + median) <= 0.55
        assert np.median(counts) == pytest.approx(median + 0.5, rel=0.15)
    flat = _user_counts(synthetic.simulate(SMALL, seed=4, impressions_per_user=7.5,
                                           impressions_sigma=0.0))
    assert np.all(flat == 8)
    spread = _user_counts(synthetic.simulate(20_000, seed=4, impressions_per_user=7.5,
                                             impressions_sigma=1.5))
    narrow = _user_counts(synthetic.simulate(20_000, seed=4, impressions_per_user=7.5,
                                             impressions_sigma=0.3))
    assert np.std(np.log(spread)) > 2 * np.std(np.log(narrow))


def test_max_impressions_per_user_caps_long_histories() -> None:
    capped = synthetic.simulate(20_000, seed=4, impressions_per_user=150.0,
                                max_impressions_per_user=120)
    assert np.bincount(capped.user).max() == 120
    long = synthetic.simulate(20_000, seed=4, impressions_per_user=150.0,
                              max_impressions_per_user=600)
    counts = _user_counts(long)
    assert counts.max() > 200 and np.median(counts) == pytest.approx(151, rel=0.15)
    # hundreds of impressions a user still get distinct, increasing minutes within each day
    same_user = long.user[1:] == long.user[:-1]
    assert np.all(np.diff(long.times)[same_user] > 0)
    minute = long.times % synthetic.MINUTES_PER_DAY
    assert minute.min() >= 0 and minute.max() < synthetic.MINUTES_PER_DAY


def test_catalog_scale_shrinks_the_catalogue() -> None:
    full = synthetic.simulate(20_000, seed=6)
    small = synthetic.simulate(20_000, seed=6, catalog_scale=0.1)
    assert small.world["items"] <= full.world["items"] / 5
    assert small.world["shops"] <= full.world["shops"] / 5
    distinct_full, distinct_small = len(np.unique(full.item)), len(np.unique(small.item))
    assert distinct_small <= distinct_full / 5
    # the same impressions on fewer items: each item is seen more often
    assert len(small.item) / distinct_small > 5 * len(full.item) / distinct_full
    large = synthetic.simulate(20_000, seed=6, catalog_scale=3.0)
    assert large.world["items"] >= 2.5 * full.world["items"]


@pytest.mark.parametrize("target", [0.55, 0.9])
def test_ctr_is_calibrated_at_a_high_target(target) -> None:
    sim = synthetic.simulate(20_000, seed=11, target_ctr=target)
    assert sim.prob.mean() == pytest.approx(target, rel=1e-3)
    assert sim.label.mean() == pytest.approx(target, abs=0.02)
    # strong click feedback in long histories: the slope of the CTR in the intercept
    # exceeds 1 and the calibration still converges
    strong = synthetic.Effects(history_shop=4.0, history_category=2.0, history_click_boost=5.0,
                               history_cap=8.0)
    sim = synthetic.simulate(20_000, seed=3, target_ctr=target, effects=strong,
                             impressions_per_user=90.0, impressions_sigma=0.6,
                             max_impressions_per_user=600, catalog_scale=0.06)
    assert sim.prob.mean() == pytest.approx(target, rel=1e-3)


@pytest.mark.parametrize("name, value", [
    ("target_ctr", 0.95), ("target_ctr", -0.1), ("target_ctr", float("nan")),
    ("impressions_per_user", 0.0), ("impressions_per_user", float("inf")),
    ("impressions_per_user", "3"), ("impressions_sigma", -0.5), ("impressions_sigma", 4.0),
    ("max_impressions_per_user", 0), ("max_impressions_per_user", 2.5),
    ("max_impressions_per_user", 100_000), ("max_impressions_per_user", True),
    ("catalog_scale", 0.0), ("catalog_scale", 11.0), ("catalog_scale", None),
])
def test_bad_knob_raises_value_error_naming_it(name, value) -> None:
    with pytest.raises(ValueError, match=name):
        synthetic.simulate(TINY, **{name: value})


def test_unknown_regime_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"regime must be one of .*'dense'.*got 'densest'"):
        synthetic.regime_kwargs("densest")
    with pytest.raises(ValueError, match="regime"):
        synthetic.generate(str(tmp_path / "raw"), regime="densest", num_rows=TINY)
    with pytest.raises(ValueError, match="regime"):
        synthetic.make_synthetic_dataset(str(tmp_path / "ds"), regime="densest", num_rows=TINY,
                                         progress=False)
    with pytest.raises(SystemExit):
        synthetic.main(["--out", str(tmp_path / "cli"), "--regime", "densest", "--raw-only"])
    with pytest.raises(ValueError, match="catalog_scal"):
        synthetic.regime_kwargs("dense", catalog_scal=0.5)


@pytest.mark.parametrize("name", sorted(synthetic.REGIMES))
def test_every_regime_generates_at_a_tiny_size(name) -> None:
    regime = synthetic.REGIMES[name]
    assert set(regime) <= set(synthetic.REGIME_KEYS)
    sim = _sim_of_regime(name, num_rows=SMALL)
    assert sim.prob.mean() == pytest.approx(regime.get("target_ctr", 0.04), rel=1e-3)
    for knob in ("impressions_per_user", "impressions_sigma", "max_impressions_per_user",
                 "catalog_scale"):
        assert sim.params[knob] == regime.get(knob, synthetic.KNOB_DEFAULTS[knob])


def test_dense_regime_is_ratings_like() -> None:
    from sklearn.metrics import roc_auc_score

    sim = _sim_of_regime("dense")  # its own size: 100k rows, well under a second
    counts = _user_counts(sim)
    assert 600 <= len(counts) <= 1500
    assert 80 <= np.median(counts) <= 100
    assert 1000 <= sim.world["items"] <= 2000
    assert sim.prob.mean() == pytest.approx(0.55, rel=1e-3)
    oracle = roc_auc_score(sim.label, sim.logit)
    assert 0.70 <= oracle <= 0.85
    # the per-user and per-item biases carry more than the crosses and the history
    without = {c: roc_auc_score(sim.label, sim.logit - v) for c, v in sim.components.items()}
    for main in ("user_activity", "item_quality"):
        for other in ("gender_category", "price_match", "meal_category", "history"):
            assert oracle - without[main] > 3 * (oracle - without[other]), (main, other)


def test_sparse_long_tail_regime_is_cold_and_cross_driven() -> None:
    from sklearn.metrics import roc_auc_score

    sparse, default = _sim_of_regime("sparse_long_tail"), _sim_of_regime("default")
    assert sparse.prob.mean() == pytest.approx(0.02, rel=1e-3)

    def cold_item_share(sim: synthetic.Simulation) -> float:
        return float((np.bincount(sim.item)[sim.item] < 10).mean())

    assert cold_item_share(sparse) > cold_item_share(default) + 0.1
    assert (sparse.pos == 0).mean() > (default.pos == 0).mean()  # more samples without history
    oracle = roc_auc_score(sparse.label, sparse.logit)
    assert 0.70 <= oracle <= 0.85
    drop = {c: oracle - roc_auc_score(sparse.label, sparse.logit - v)
            for c, v in sparse.components.items()}
    for weak in ("item_quality", "shop_quality", "user_activity"):
        assert drop["history"] > 5 * drop[weak]
        assert drop["price_match"] > 2 * drop[weak]


def test_main_regime_flags_override_the_regime(tmp_path) -> None:
    out = str(tmp_path / "raw")
    info = synthetic.main(["--out", out, "--regime", "dense", "--rows", str(SMALL), "--raw-only",
                           "--target-ctr", "0.5", "--catalog-scale", "0.2",
                           "--set", "user_activity=0.5"])
    assert info["regime"] == "dense"
    assert info["num_rows"] == SMALL
    assert info["target_ctr"] == 0.5
    assert info["catalog_scale"] == 0.2
    assert info["impressions_per_user"] == synthetic.REGIMES["dense"]["impressions_per_user"]
    assert info["effects"]["user_activity"] == 0.5
    assert info["effects"]["item_quality"] == synthetic.REGIMES["dense"]["item_quality"]
    assert info["effects"]["weekday"] == synthetic.REGIMES["dense"]["weekday"]
    with pytest.raises(SystemExit, match="catalog_scale"):
        synthetic.main(["--out", str(tmp_path / "bad"), "--rows", str(TINY), "--raw-only",
                        "--catalog-scale", "0"])


def test_prepared_regime_records_its_knobs_and_reproduces_its_oracle(tmp_path) -> None:
    out = str(tmp_path / "dense")
    result = synthetic.make_synthetic_dataset(out, regime="dense", num_rows=SMALL, seed=2,
                                              progress=False)
    made = result.spec.extra["generator"]
    assert made["regime"] == "dense"
    for knob in ("target_ctr", "impressions_per_user", "impressions_sigma",
                 "max_impressions_per_user", "catalog_scale"):
        assert made[knob] == synthetic.REGIMES["dense"][knob]
    assert made["num_rows"] == SMALL
    info = synthetic.read_generator_info(os.path.join(out, synthetic.RAW_SUBDIR))
    sim = synthetic.simulation_from_info(info)
    oracle = np.concatenate([result.tables[s]["oracle_prob"] for s in ("train", "valid", "test")])
    np.testing.assert_allclose(np.sort(oracle), np.sort(sim.prob), rtol=1e-5)


def test_report_splits_the_oracle_into_what_a_linear_model_can_and_cannot_fit(tmp_path) -> None:
    # Crosses and history off: the main effects are the whole observable click model.
    flat = str(tmp_path / "flat")
    result = synthetic.make_synthetic_dataset(
        flat, num_rows=SMALL, seed=2, progress=False, gender_category=0, price_match=0,
        meal_category=0, history_shop=0, history_category=0)
    rep = synthetic.report(flat, result=result)
    assert rep["oracle_auc_main_effects"] == pytest.approx(rep["oracle_auc_observable"], abs=1e-9)
    assert rep["beyond_main_effects"] == pytest.approx(0.0, abs=1e-9)
    # Noise off as well: the observable oracle is the oracle.
    clean = str(tmp_path / "clean")
    result = synthetic.make_synthetic_dataset(clean, num_rows=SMALL, seed=2, progress=False, noise=0)
    rep = synthetic.report(clean, result=result)
    assert rep["oracle_auc_observable"] == pytest.approx(rep["oracle_auc"], abs=1e-9)
    # The default's history and crosses carry far more than the dense regime's.
    dense = str(tmp_path / "dense")
    dense_rep = synthetic.report(dense, result=synthetic.make_synthetic_dataset(
        dense, regime="dense", num_rows=SMALL, seed=2, progress=False))
    assert rep["beyond_main_effects"] > 0.05
    assert dense_rep["beyond_main_effects"] < rep["beyond_main_effects"] / 2
    assert "the most any model gains over a perfect linear one" in format_report(dense_rep)


DRIFT_DAYS = tuple(f"D{k}_0" for k in range(1, 7))


def test_drift_users_arrive_on_later_days():
    from pipelines.synthetic.simulation import simulate

    def first_days(sim):
        first = np.full(sim.user.max() + 1, 99)
        np.minimum.at(first, sim.user, sim.row_day[: sim.num_valid])
        return first

    still = first_days(simulate(6000, seed=3, days=DRIFT_DAYS))
    late = first_days(simulate(6000, seed=3, days=DRIFT_DAYS, user_arrival=0.6))
    assert (late > 0).mean() > (still > 0).mean() + 0.1  # most users are seen late anyway
    assert late.mean() > still.mean() + 0.5
    # every day after the first brings users
    assert all((late == d).sum() > 0 for d in range(1, len(DRIFT_DAYS)))


def test_drift_relisted_items_get_new_ids_from_their_day_on():
    from pipelines.synthetic.simulation import RELIST_ID_STEP, simulate

    sim = simulate(6000, seed=3, days=DRIFT_DAYS, item_relist=0.3, unknown_frac=0.0)
    ids = np.asarray(sim.columns["item_id"], dtype=np.int64)
    version = ids // RELIST_ID_STEP
    assert (version[sim.row_day == 0] == 0).all()
    shares = [float((version[sim.row_day == d] > 0).mean()) for d in range(len(DRIFT_DAYS))]
    assert shares == sorted(shares) and shares[-1] > 0.6  # 1 - 0.7^5 of the items by day 6
    # a relisted id stands for the same item: one item index per id
    base = simulate(6000, seed=3, days=DRIFT_DAYS, unknown_frac=0.0)
    np.testing.assert_array_equal(ids % RELIST_ID_STEP, np.asarray(base.columns["item_id"]))


def test_drift_item_appeal_walks_over_the_days():
    from pipelines.synthetic.simulation import simulate

    base = simulate(6000, seed=3, days=DRIFT_DAYS)
    walked = simulate(6000, seed=3, days=DRIFT_DAYS, appeal_drift=0.5)
    np.testing.assert_array_equal(base.item, walked.item)  # the same impressions
    delta = walked.components["item_quality"] - base.components["item_quality"]
    day = walked.row_day[: walked.num_valid]
    assert np.all(delta[day == 0] == 0)
    assert delta[day == len(DRIFT_DAYS) - 1].std() > 0.5  # about 0.5 * sqrt(5)
    for d in range(1, len(DRIFT_DAYS)):  # one value per item and day
        rows = day == d
        pairs = {}
        for i, v in zip(walked.item[rows], delta[rows], strict=True):
            assert pairs.setdefault(int(i), v) == v
    with pytest.raises(ValueError, match="appeal_drift must be a number in"):
        simulate(100, days=DRIFT_DAYS, appeal_drift=-1.0)
