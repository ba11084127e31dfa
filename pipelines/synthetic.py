"""Synthetic Ele.me-layout click logs with a known click probability.

The generator writes day files (``D1_0.csv``, ``D3_1.csv``, ``D5_0.csv``) in exactly
the raw Ele.me layout (comma separated, no header, the 39 columns of
:data:`pipelines.eleme.RAW_COLUMNS`) plus, next to every ``X.csv``, an oracle side
file ``X.oracle.csv`` holding the true click probability of each raw line. The real
Ele.me pipeline (:func:`pipelines.eleme.prepare`) then turns them into a prepared
dataset, so the synthetic default exercises the whole data path end to end.

The world
---------
Cities hold districts, districts hold areas of interest (``shop_aoi_id``) and geohash-6
cells; shops sit in one area of a district; items belong to one shop and one
``category_1_id`` (mostly the shop's main category) and one ``merge_standard_food_id``
inside that category; some shops share a ``brand_id`` (chains). Shop popularity is
Zipf-like, item popularity within a shop is Zipf-like, so item and shop frequencies are
long-tailed. Users live in a city (``visit_city``) and a district (``geohash12`` is
their location); their number of impressions is log-normal (by default many users with
one or two impressions, some with dozens), so history lengths 0..``max_len`` all occur.
The knobs ``impressions_per_user`` (median), ``impressions_sigma`` and
``max_impressions_per_user`` shape that draw; ``catalog_scale`` multiplies the size of
the world (cities, shops, items), which is otherwise sized for the number of rows.
Impressions come in sessions at meal-time-peaked hours of the three days; ``times`` is
an integer in minutes, ``(weekday - 1) * 1440 + minute of the day``, and ``hours``,
``time_type`` and ``weekdays`` are derived from it. No user has two impressions at the
same minute, so the pipeline's history order is unambiguous.

Which item a user is shown at impression ``k`` depends on the earlier impressions:
with probability ``REVISIT_PROB`` a shop of one of the previous ``max_len``
impressions again, with probability ``SAME_CATEGORY_PROB`` an item of the category of
one of them in that city, otherwise a popularity draw among the shops of the user's city
(a small share in another city).

The rank columns: ``rank_7``, ``rank_30`` and ``rank_90`` are, in this generator,
the item's *price rank* within its category over the last 7 / 30 / 90 days, an integer
1 (cheapest) .. 20; the longer windows are noisier copies of the same quantity, so the
three are strongly correlated.

The click model
---------------
``logit P(click) = intercept + sum of the terms below``; every strength is a field of
:class:`Effects` (a value of 0 switches the term off) and the intercept is calibrated
so that the mean probability equals ``target_ctr``. The terms are stored separately
(:class:`Simulation.components`) so that a report can switch each off.

* main effects: item quality (``item_quality``), shop quality (``shop_quality``),
  user click propensity (``user_activity``, observed only through the noisy
  ``ctr_30``/``ord_30`` and the user id), super-VIP status (``super_vip``), hour of
  the day (``hour``) and weekday (``weekday``);
* crosses that a single-field model cannot see: gender x ``category_1_id``
  (``gender_category``: every category has a gender affinity, zero on average),
  ``avg_price`` x item price rank (``price_match``: big spenders like expensive items,
  thrifty users cheap ones; a product of two centred variables), and ``time_type`` x
  ``category_1_id`` (``meal_category``: breakfast food in the morning...);
* history relevance: every previous impression ``j`` (1 = the most recent, up to
  ``max_len``, exactly the pipeline's history) that shows the *same shop* adds
  ``history_shop`` and the *same category* adds ``history_category``, weighted by
  ``exp(-history_position_decay * (j - 1) - history_time_decay * dt / 1000)`` with
  ``dt`` the time interval in minutes, and multiplied by ``1 + history_click_boost``
  when that previous impression was clicked (its click is not in the model's inputs:
  that part can only be guessed). The sum ``r`` enters as ``history_cap * tanh(r /
  history_cap)``, so ten matching impressions do not add up without bound. A history
  impression is an *impression*, clicked or not, as in the paper's Ele.me histories;
* noise: a per-impression Gaussian logit term (``noise``) that no model can see; it is
  part of the true probability (the oracle knows it), so it is the share of the oracle's
  lift that no model can reach.

Rows with unknown codes: a fraction ``unknown_frac`` of the raw rows are copies of
real rows, under user ids of their own, with one field set to an unknown code (``-99``
gender, ``-1`` id/rank/geohash) or left empty, so that the pipeline's filtering is
exercised. They are not part of any user's history, their label and oracle value are
those of the copied row, and the pipeline must drop them all.

Regimes: :data:`REGIMES` names generator settings that make a family of datasets
(today's default, the same at Ele.me's size, a dense ratings-like log, a sparse
long-tail log); its docstring says what each mimics and why each value.

Command line::

    python -m pipelines.synthetic --out DIR [--regime NAME] [--rows N] [--seed S] [--report]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import ndtr

from pipelines.eleme import DEFAULT_DAYS, ORACLE_SUFFIX, RAW_COLUMNS

DEFAULT_NUM_ROWS = 250_000
"""Size of the default synthetic dataset: trains a few epochs in minutes on 2 CPU cores."""

DEFAULT_SEED = 2024
DEFAULT_MAX_LEN = 10
DEFAULT_TARGET_CTR = 0.04
MAX_TARGET_CTR = 0.9
DEFAULT_UNKNOWN_FRAC = 0.002
# Users: 1 + floor(X) impressions each, X log-normal with this median and log-sd, capped.
DEFAULT_IMPRESSIONS_PER_USER = 3.0
DEFAULT_IMPRESSIONS_SIGMA = 1.0
# A user's impressions of one day must fit into its 1,440 minutes (one a minute at most);
# sessions fall on random days, so allow at most this many per day of the window.
MAX_IMPRESSIONS_PER_USER_PER_DAY = 300
DEFAULT_CATALOG_SCALE = 1.0
MAX_CATALOG_SCALE = 10.0
# Intercept refinements under click feedback (each re-runs the click model).
_PLAIN_STEPS = 8
_CALIBRATION_STEPS = 20
MIN_ROWS = 50
# Time intervals reach the model in hours (``times`` is in minutes): the refiner's time
# embedding has one row per whole unit, and at minute resolution its up to 4,000 rows
# are each seen too rarely in 200k samples to learn the generator's smooth decay; FESeq
# then does better without the time embedding at all (README, "Ablations").
TIME_UNIT_MINUTES = 60.0
MAX_ROWS = 10_000_000

GENERATOR_FILE = "generator.json"
REPORT_FILE = "synthetic_report.json"
DATASET_NAME = "synthetic"
RAW_SUBDIR = "raw"

MINUTES_PER_DAY = 1440
TIME_TYPES = ("breakfast", "lunch", "afternoon", "dinner", "night")

# Share of impressions drawn from the history: a shop seen before, a category seen before.
REVISIT_PROB = 0.3
SAME_CATEGORY_PROB = 0.2
# Share of "explore" impressions in a city other than the user's own.
TRAVEL_PROB = 0.02
NUM_CATEGORIES = 40
NUM_PRICE_RANKS = 20
RAW_LIST_LEN = 10
FOODS_PER_CATEGORY = 25
MAX_IMPRESSIONS_PER_USER = 200
"""Default cap of the impressions of one user (the ``max_impressions_per_user`` knob)."""
# Relative traffic per hour of the day (lunch and dinner peaks).
HOUR_TRAFFIC = np.array(
    [0.5, 0.3, 0.2, 0.1, 0.1, 0.2, 0.6, 1.5, 2.0, 2.2, 4.0, 7.0,
     5.5, 2.5, 1.8, 2.0, 3.5, 6.0, 5.5, 3.0, 2.2, 2.0, 1.5, 1.0]
)
# time_type index of each hour: breakfast 5-9, lunch 10-13, afternoon 14-16, dinner 17-20, night 21-4.
HOUR_TIME_TYPE = np.array([4] * 5 + [0] * 5 + [1] * 4 + [2] * 3 + [3] * 4 + [4] * 3)

# Fields whose unknown code the pipeline filters ("" = a missing value of the column).
_UNKNOWN_CODES = (
    ("gender", -99), ("city_id", -1), ("district_id", -1), ("shop_aoi_id", -1),
    ("shop_geohash_6", "-1"), ("shop_geohash_12", "-1"), ("rank_7", -1), ("rank_30", -1),
    ("rank_90", -1), ("geohash12", "-1"), ("item_id", ""), ("avg_price", ""),
    ("category_1_id", ""), ("hours", ""),
)
_GEOHASH_ALPHABET = np.array(list("0123456789bcdefghjkmnpqrstuvwxyz"))
_DAY_RE = re.compile(r"^D(\d+)_(\d+)$")


@dataclasses.dataclass(frozen=True)
class Effects:
    """Strengths of the planted effects, in logit units (0 switches an effect off).

    Standardised terms (``item_quality``, ``shop_quality``, ``user_activity``,
    ``hour``, ``weekday``, the crosses) have unit standard deviation before scaling,
    so a strength is the standard deviation of the term's contribution to the logit.

    Args:
        item_quality: float. Item attractiveness (half popularity, half idiosyncratic).
            Defaults to 0.4.
        shop_quality: float. Shop attractiveness. Defaults to 0.25.
        user_activity: float. User click propensity, seen only through the noisy
            ``ctr_30`` / ``ord_30`` and the user id. Defaults to 0.4.
        super_vip: float. Logit difference of super-VIP users (centred). Defaults to 0.2.
        hour: float. Hour-of-day pattern (meal times click more). Defaults to 0.25.
        weekday: float. Weekday pattern. Defaults to 0.1.
        gender_category: float. Gender x ``category_1_id`` cross. Defaults to 0.45.
        price_match: float. ``avg_price`` x item price rank cross. Defaults to 0.45.
        meal_category: float. ``time_type`` x ``category_1_id`` cross. Defaults to 0.35.
        history_shop: float. Weight of a previous impression of the same shop.
            Defaults to 1.5.
        history_category: float. Weight of a previous impression of the same
            category. Defaults to 0.6.
        history_click_boost: float. Extra relative weight of a previous impression
            that was clicked. Defaults to 1.0.
        history_position_decay: float. Decay per position of the history weights
            (0 = no recency decay by position). Defaults to 0.25.
        history_time_decay: float. Decay per 1000 minutes of time interval
            (0 = no decay by time). Defaults to 0.7.
        history_cap: float. Saturation of the history term, ``cap * tanh(r / cap)``.
            Defaults to 2.5.
        noise: float. Standard deviation of unobservable per-impression logit noise.
            Defaults to 0.25.
    """

    item_quality: float = 0.4
    shop_quality: float = 0.25
    user_activity: float = 0.4
    super_vip: float = 0.2
    hour: float = 0.25
    weekday: float = 0.1
    gender_category: float = 0.45
    price_match: float = 0.45
    meal_category: float = 0.35
    history_shop: float = 1.5
    history_category: float = 0.6
    history_click_boost: float = 1.0
    history_position_decay: float = 0.25
    history_time_decay: float = 0.7
    history_cap: float = 2.5
    noise: float = 0.25

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ValueError(f"{f.name} must be a number, got {value!r}.")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{f.name} must be a finite number >= 0, got {value!r}.")
            object.__setattr__(self, f.name, float(value))
        if self.history_cap <= 0:
            raise ValueError(f"history_cap must be > 0, got {self.history_cap!r}.")

    @classmethod
    def from_kwargs(cls, **strengths: float) -> Effects:
        """Build from keyword strengths, rejecting unknown names."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(strengths) - known)
        if unknown:
            raise ValueError(f"Unknown effect strength(s) {unknown}; known: {sorted(known)}.")
        return cls(**strengths)


# Names of the logit terms in Simulation.components (each one switched by its Effects strength).
COMPONENTS = (
    "item_quality", "shop_quality", "user_activity", "super_vip", "hour", "weekday",
    "gender_category", "price_match", "meal_category", "history", "noise",
)


_EFFECT_NAMES = tuple(f.name for f in dataclasses.fields(Effects))

# Knobs of the world and the users that simulate() takes, with their defaults.
_WORLD_KNOBS: dict[str, Any] = {
    "impressions_per_user": DEFAULT_IMPRESSIONS_PER_USER,
    "impressions_sigma": DEFAULT_IMPRESSIONS_SIGMA,
    "max_impressions_per_user": MAX_IMPRESSIONS_PER_USER,
    "catalog_scale": DEFAULT_CATALOG_SCALE,
}
_KNOB_DEFAULTS: dict[str, Any] = {
    "num_rows": DEFAULT_NUM_ROWS,
    "target_ctr": DEFAULT_TARGET_CTR,
    "unknown_frac": DEFAULT_UNKNOWN_FRAC,
    **_WORLD_KNOBS,
}
REGIME_KEYS = tuple(_KNOB_DEFAULTS) + _EFFECT_NAMES
"""Keys a regime may set: the generator knobs and the effect strengths."""

REGIMES: dict[str, dict[str, Any]] = {
    "default": dict(_KNOB_DEFAULTS),
    "eleme_scale": {**_KNOB_DEFAULTS, "num_rows": 1_200_000},
    "dense": {
        "num_rows": 100_000,
        "target_ctr": 0.55,
        "impressions_per_user": 90.0,
        "impressions_sigma": 0.6,
        "max_impressions_per_user": 600,
        "catalog_scale": 0.06,
        "item_quality": 0.8,
        "shop_quality": 0.3,
        "user_activity": 1.0,
        "super_vip": 0.1,
        "hour": 0.1,
        "weekday": 0.05,
        "gender_category": 0.2,
        "price_match": 0.2,
        "meal_category": 0.15,
        "history_shop": 0.3,
        "history_category": 0.2,
        "history_click_boost": 1.0,
        "history_cap": 1.0,
        "noise": 0.3,
    },
    "sparse_long_tail": {
        "num_rows": 250_000,
        "target_ctr": 0.02,
        "impressions_per_user": 1.5,
        "impressions_sigma": 1.3,
        "max_impressions_per_user": 300,
        "catalog_scale": 3.0,
        "item_quality": 0.15,
        "shop_quality": 0.1,
        "user_activity": 0.15,
        "super_vip": 0.05,
        "hour": 0.15,
        "weekday": 0.05,
        "gender_category": 0.5,
        "price_match": 0.5,
        "meal_category": 0.4,
        "history_shop": 2.0,
        "history_category": 0.8,
        "history_click_boost": 1.0,
        "history_cap": 2.5,
        "noise": 0.3,
    },
}
"""Named generator settings: a family of datasets to choose defaults on, not one.

Each regime maps :data:`REGIME_KEYS` to values (the generator's knobs and the
:class:`Effects` strengths it changes; an effect it does not name keeps its default).
Pass one as ``generate(..., regime=NAME)``, ``make_synthetic_dataset(out,
regime=NAME)`` or ``python -m pipelines.synthetic --regime NAME``; any explicit
argument overrides the regime's value. ``python -m pipelines.synthetic --regime NAME
--out DIR --report`` prints its oracle and single-field logistic regression AUCs.

``"default"``: today's defaults, an Ele.me-like food-delivery log at 250,000 rows
(CTR 0.04): many users with one to a few impressions (median of the draw 3, log-sd
1), a catalogue sized for the rows (``catalog_scale`` 1: about 8k shops, 62k
items), main effects, crosses and history of similar weight.

``"eleme_scale"``: the default at the Ele.me dataset's size, 1,200,000 rows; the
world grows with the rows (50 cities, 40k shops, 300k items), so what changes is
the amount of data per parameter, not the click model.

``"dense"``: a ratings-like log (a public movie-ratings log with a high rating as
the label has about 100k impressions, 1k users, 1.7k items, CTR 0.55):

* ``num_rows`` 100,000 and ``target_ctr`` 0.55: that log's size and positive rate;
* ``impressions_per_user`` 90, ``impressions_sigma`` 0.6, ``max_impressions_per_user``
  600: about 900 users with long histories (median about 90, a tail to a few hundred);
  nearly every sample has a full history;
* ``catalog_scale`` 0.06: about 200 shops and 1,500 items, each item seen about 65
  times, so an id's own bias is learnable;
* ``user_activity`` 1.0 and ``item_quality`` 0.8 (``shop_quality`` 0.3): strong
  per-user and per-item biases, the bulk of the oracle's lift, which a linear model
  on one-hot ids captures;
* crosses weak (``gender_category`` 0.2, ``price_match`` 0.2, ``meal_category``
  0.15), time effects weak (``hour`` 0.1, ``weekday`` 0.05, ``super_vip`` 0.1):
  little beyond the main effects for a deep model to find;
* history present but modest (``history_shop`` 0.3, ``history_category`` 0.2,
  ``history_cap`` 1.0, clicked history impressions counting double): with a small
  catalogue most histories hold the same shop or category, so a strong history term
  would be a near-constant; ``noise`` 0.3.

``"sparse_long_tail"``: a sparse log dominated by cold entities, where what is left
to learn lies in the crosses and the history:

* ``num_rows`` 250,000, ``target_ctr`` 0.02: the default's size, a rarer click;
* ``impressions_per_user`` 1.5, ``impressions_sigma`` 1.3, ``max_impressions_per_user``
  300: most users are seen once or twice (a quarter of the samples have no history)
  while a heavy tail still gives a fifth of the samples a full history;
* ``catalog_scale`` 3.0: a long tail of 187k items over 25k shops, over half of the
  impressions on items seen fewer than ten times (out of the vocabulary at the
  default min count);
* main effects weak (``item_quality`` 0.15, ``shop_quality`` 0.1, ``user_activity``
  0.15, ``super_vip`` 0.05, ``hour`` 0.15, ``weekday`` 0.05): ids carry little;
* crosses strong (``gender_category`` 0.5, ``price_match`` 0.5, ``meal_category``
  0.4) and history strong (``history_shop`` 2.0, ``history_category`` 0.8,
  ``history_cap`` 2.5): the terms a single-field model cannot see; ``noise`` 0.3.

Every regime keeps the oracle test AUC within 0.70-0.85 (measured with ``--report``).
"""


def regime_kwargs(regime: str | None = None, **overrides: Any) -> dict[str, Any]:
    """The generator knobs and effect strengths of a regime, with overrides on top.

    Args:
        regime: str. A name of :data:`REGIMES`. Defaults to None: today's defaults
            (the ``"default"`` regime).
        **overrides: Values of :data:`REGIME_KEYS` that replace the regime's.

    Returns:
        dict with every generator knob (``num_rows``, ``target_ctr``, ``unknown_frac``,
        ``impressions_per_user``, ``impressions_sigma``, ``max_impressions_per_user``,
        ``catalog_scale``) and the effect strengths the regime or the overrides set
        (the others are :class:`Effects` defaults).

    Example:
        >>> regime_kwargs("dense", num_rows=5000)["target_ctr"]
        0.55
    """
    if regime is not None and (not isinstance(regime, str) or regime not in REGIMES):
        raise ValueError(f"regime must be one of {sorted(REGIMES)}, got {regime!r}.")
    unknown = sorted(set(overrides) - set(REGIME_KEYS))
    if unknown:
        raise ValueError(f"Unknown effect strength(s) or generator argument(s) {unknown}; "
                         f"known: {sorted(REGIME_KEYS)}.")
    return {**_KNOB_DEFAULTS, **(REGIMES[regime] if regime else {}), **overrides}


@dataclasses.dataclass
class Simulation:
    """Everything one generator run produced (arrays over the valid impressions).

    Valid impressions are in user-major order, sorted by time within a user; ``pos`` is
    the index of an impression within its user, so impression ``i`` has history
    ``i - 1, ..., i - min(pos[i], max_len)``.

    Attributes:
        params: dict. The generator's parameters (as written to ``generator.json``).
        intercept: float. The calibrated intercept.
        user: array. Dense user index of every valid impression.
        pos: array. Index of the impression within its user.
        times: array. Timestamp in minutes.
        item: array. Dense item index.
        logit: array. The full logit (intercept included).
        prob: array. The true click probability.
        label: array. The sampled click (0/1).
        components: dict. Name -> the term's contribution to the logit.
        columns: dict. Raw column name -> values of every raw row (valid rows first,
            then the rows with unknown codes); the ``*_list`` columns are held once per
            user (:class:`_PerUser`).
        row_day: array. Index into ``params["days"]`` of every raw row.
        row_prob: array. Oracle probability of every raw row.
        row_label: array. Label of every raw row.
        num_valid: int. Number of valid raw rows.
        world: dict. Sizes of the world (cities, districts, shops, items, users...).
        missing: dict. Raw column name -> raw rows where the value is left empty.
    """

    params: dict[str, Any]
    intercept: float
    user: np.ndarray
    pos: np.ndarray
    times: np.ndarray
    item: np.ndarray
    logit: np.ndarray
    prob: np.ndarray
    label: np.ndarray
    components: dict[str, np.ndarray]
    columns: dict[str, Any]
    row_day: np.ndarray
    row_prob: np.ndarray
    row_label: np.ndarray
    num_valid: int
    world: dict[str, int]
    missing: dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class _PerUser:
    """A raw column stored once per user: ``values[user[row]]`` is the value of a row."""

    values: Any
    user: np.ndarray


# ---------------------------------------------------------------------------------
# helpers


def _is_number(x: Any) -> bool:
    """A finite real number (not a bool)."""
    return (not isinstance(x, bool) and isinstance(x, (int, float, np.integer, np.floating))
            and math.isfinite(x))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _standardize(x: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    mean = np.average(x, weights=weights)
    std = math.sqrt(np.average((x - mean) ** 2, weights=weights))
    return (x - mean) / std if std > 0 else x - mean


def _zipf_weights(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Weights ``rank ** -exponent`` over a random permutation of ``n`` entities."""
    return (rng.permutation(n) + 1.0) ** -exponent


def _group_rank(group: np.ndarray) -> np.ndarray:
    """Index of every element within its run of equal ``group`` values (sorted input)."""
    n = len(group)
    if n == 0:
        return np.zeros(0, np.int64)
    new = np.ones(n, bool)
    new[1:] = group[1:] != group[:-1]
    starts = np.flatnonzero(new)
    run_start = np.repeat(starts, np.diff(np.append(starts, n)))
    return np.arange(n) - run_start


class _GroupedSampler:
    """Draw a member of a group with probability proportional to its weight, vectorized."""

    def __init__(self, group: np.ndarray, weight: np.ndarray, num_groups: int) -> None:
        order = np.argsort(group, kind="stable")
        g = group[order]
        w = weight[order].astype(np.float64)
        totals = np.bincount(g, weights=w, minlength=num_groups)
        counts = np.bincount(g, minlength=num_groups)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        cs = np.cumsum(w)
        before = cs[starts[g]] - w[starts[g]]
        frac = (cs - before) / totals[g]
        last = (starts + counts - 1)[counts > 0]
        frac[last] = 1.0
        self._key = g + frac
        self._group = g
        self._members = order
        self.counts = counts

    def sample(self, groups: np.ndarray, u: np.ndarray) -> np.ndarray:
        """One member per entry of ``groups``, from uniforms ``u`` in [0, 1)."""
        value = groups + np.clip(u, 1e-6, 1.0 - 1e-9)
        idx = np.searchsorted(self._key, value, side="left")
        idx = np.minimum(idx, len(self._key) - 1)
        bad = self._group[idx] != groups
        if bad.any():
            raise RuntimeError("Internal error: sampled from an empty group.")
        return self._members[idx]


def _geohash_codes(n: int, length: int, rng: np.random.Generator,
                   prefix: np.ndarray | None = None, distinct: bool = False) -> np.ndarray:
    """Random base-32 geohash-like strings (object array), optionally under prefixes.

    With ``distinct`` no two codes share the same random part.
    """
    if distinct:
        values = rng.choice(32**length, size=n, replace=False)
    else:
        values = rng.integers(0, 32**length, size=n)
    digits = (values[:, None] // 32 ** np.arange(length - 1, -1, -1)) % 32
    chars = _GEOHASH_ALPHABET[digits]
    tails = np.array(["".join(row) for row in chars], dtype=object)
    if prefix is None:
        return tails
    return np.array([p + t for p, t in zip(prefix, tails, strict=True)], dtype=object)


def _distinct_ids(n: int, low: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct positive integer ids that look arbitrary (sparse in [low, low + 10n))."""
    picks = np.sort(rng.choice(10 * n, size=n, replace=False))
    return low + rng.permutation(picks)


def parse_day(name: str) -> int:
    """Weekday (1..7) of a raw day file name ``D<weekday>_<k>``."""
    m = _DAY_RE.match(name)
    if not m or not 1 <= int(m.group(1)) <= 7:
        raise ValueError(f"days: a day name must look like 'D<weekday 1-7>_<k>', got {name!r}.")
    return int(m.group(1))


def _check_days(days: Sequence[str]) -> tuple[str, ...]:
    if isinstance(days, str) or not days:
        raise ValueError(f"days must be a non-empty sequence of day names, got {days!r}.")
    days = tuple(days)
    weekdays = [parse_day(d) for d in days]
    if any(b <= a for a, b in zip(weekdays[:-1], weekdays[1:], strict=True)):
        raise ValueError(f"days must have strictly increasing weekdays, got {days!r}.")
    return days


# ---------------------------------------------------------------------------------
# the simulation


@dataclasses.dataclass
class _World:
    """Cities, districts, areas, shops, items and categories (dense indices)."""

    n_cities: int
    n_districts: int
    n_aois: int
    n_cells: int
    n_shops: int
    n_items: int
    n_brands: int
    city_w: np.ndarray
    district_city: np.ndarray
    district_w: np.ndarray
    shop_district: np.ndarray
    shop_aoi: np.ndarray
    shop_city: np.ndarray
    shop_w: np.ndarray
    shop_q: np.ndarray
    shop_brand: np.ndarray
    shop_cell: np.ndarray
    shop_hash12: np.ndarray
    cell_district: np.ndarray
    cell_hash: np.ndarray
    item_shop: np.ndarray
    item_q: np.ndarray
    item_cat: np.ndarray
    item_food: np.ndarray
    item_z: np.ndarray
    item_price: np.ndarray
    item_rank: np.ndarray
    cat_gender: np.ndarray
    meal: np.ndarray
    hour_p: np.ndarray
    hour_eff: np.ndarray
    weekday_eff: np.ndarray
    shop_in_city: _GroupedSampler
    item_in_shop: _GroupedSampler
    item_in_citycat: _GroupedSampler


@dataclasses.dataclass
class _Users:
    """Users (dense indices) and their profile columns."""

    counts: np.ndarray
    city: np.ndarray
    gender: np.ndarray
    propensity: np.ndarray
    price_z: np.ndarray
    avg_price: np.ndarray
    ord_30: np.ndarray
    ctr_30: np.ndarray
    total_amt_30: np.ndarray
    vip: np.ndarray
    hash12: np.ndarray


def _build_world(n: int, weekdays: np.ndarray, rng: np.random.Generator,
                 catalog_scale: float = DEFAULT_CATALOG_SCALE) -> _World:
    """Cities > districts > areas (aoi) > shops > items, sized for ``n * catalog_scale`` impressions."""
    size = int(n * catalog_scale)
    n_cities = int(np.clip(size // 5000, 4, 50))
    n_shops = max(20, size // 30)
    n_items = max(3 * n_shops, size // 4)
    n_districts = int(np.clip(n_shops // 40, n_cities, n_shops))
    n_aois = max(n_districts, n_shops // 8)
    city_w = _zipf_weights(n_cities, 1.0, rng)
    city_w /= city_w.sum()
    district_city = np.concatenate([np.arange(n_cities),
                                    rng.choice(n_cities, n_districts - n_cities, p=city_w)])
    district_w = city_w[district_city] * rng.lognormal(0.0, 0.5, n_districts)
    district_p = district_w / district_w.sum()
    aoi_district = np.concatenate([np.arange(n_districts),
                                   rng.choice(n_districts, n_aois - n_districts, p=district_p)])
    # geohash-6 cells: up to three areas of a district share a cell.
    aoi_order = np.argsort(aoi_district, kind="stable")
    aoi_cell_local = np.empty(n_aois, np.int64)
    aoi_cell_local[aoi_order] = _group_rank(aoi_district[aoi_order]) // 3
    cell_values, aoi_cell = np.unique(aoi_district * n_aois + aoi_cell_local, return_inverse=True)
    cell_district = cell_values // n_aois
    city_hash = _geohash_codes(n_cities, 3, rng, distinct=True)
    cell_hash = _geohash_codes(len(cell_values), 3, rng, distinct=True,
                               prefix=city_hash[district_city[cell_district]])
    # shops: one per district first (so every city has shops), then by district weight.
    shop_district = np.concatenate([np.arange(n_districts),
                                    rng.choice(n_districts, n_shops - n_districts, p=district_p)])
    district_aois = _GroupedSampler(aoi_district, np.ones(n_aois), n_districts)
    shop_aoi = district_aois.sample(shop_district, rng.random(n_shops))
    shop_city = district_city[shop_district]
    shop_w = _zipf_weights(n_shops, 1.0, rng)
    shop_q = _standardize(0.5 * _standardize(np.log(shop_w)) + rng.standard_normal(n_shops))
    shop_cell = aoi_cell[shop_aoi]
    shop_hash12 = _geohash_codes(n_shops, 6, rng, distinct=True, prefix=cell_hash[shop_cell])
    cat_w = _zipf_weights(NUM_CATEGORIES, 0.8, rng)
    cat_w /= cat_w.sum()
    shop_main_cat = rng.choice(NUM_CATEGORIES, n_shops, p=cat_w)
    n_brands = max(5, n_shops // 50)
    brand_w = _zipf_weights(n_brands, 1.0, rng)
    shop_brand = np.where(rng.random(n_shops) < 0.3,
                          rng.choice(n_brands, n_shops, p=brand_w / brand_w.sum()),
                          n_brands + np.arange(n_shops))
    # items: one per shop first, the rest favouring popular shops; Zipf within a shop.
    item_shop_p = np.sqrt(shop_w) / np.sqrt(shop_w).sum()
    item_shop = np.concatenate([np.arange(n_shops),
                                rng.choice(n_shops, n_items - n_shops, p=item_shop_p)])
    item_shop.sort()
    item_w_local = (_group_rank(item_shop) + 1.0) ** -1.1
    item_w = shop_w[item_shop] * item_w_local / np.bincount(item_shop, weights=item_w_local)[item_shop]
    item_q = _standardize(0.5 * _standardize(np.log(item_w_local)) + rng.standard_normal(n_items))
    item_cat = np.where(rng.random(n_items) < 0.7, shop_main_cat[item_shop],
                        rng.choice(NUM_CATEGORIES, n_items, p=cat_w))
    item_food = item_cat * FOODS_PER_CATEGORY + rng.integers(0, FOODS_PER_CATEGORY, n_items)
    item_z = rng.standard_normal(n_items)  # log-price deviation within the category
    cat_base_price = rng.lognormal(math.log(22.0), 0.35, NUM_CATEGORIES)
    item_price = np.round(cat_base_price[item_cat] * np.exp(0.35 * item_z), 1)

    def price_rank(noise_sd: float) -> np.ndarray:
        noisy = (item_z + noise_sd * rng.standard_normal(n_items)) / math.sqrt(1 + noise_sd**2)
        return 1 + np.minimum((ndtr(noisy) * NUM_PRICE_RANKS).astype(np.int64), NUM_PRICE_RANKS - 1)

    item_rank = np.stack([price_rank(0.3), price_rank(0.5), price_rank(0.8)], axis=1)
    # cross tables, centred so that neither side has a main effect
    cat_gender = _standardize(rng.standard_normal(NUM_CATEGORIES), cat_w)
    tt_w = np.bincount(HOUR_TIME_TYPE, weights=HOUR_TRAFFIC, minlength=len(TIME_TYPES))
    tt_w /= tt_w.sum()
    meal = rng.standard_normal((NUM_CATEGORIES, len(TIME_TYPES)))
    meal -= (meal * tt_w).sum(1, keepdims=True)
    meal -= (meal * cat_w[:, None]).sum(0, keepdims=True)
    meal /= math.sqrt((meal**2 * cat_w[:, None] * tt_w).sum())
    hour_p = HOUR_TRAFFIC / HOUR_TRAFFIC.sum()
    hour_eff = _standardize(np.log(HOUR_TRAFFIC) + 0.5 * rng.standard_normal(24), hour_p)
    weekday_eff = rng.standard_normal(8)
    weekday_eff = (weekday_eff - weekday_eff[weekdays].mean()) / (weekday_eff[weekdays].std() or 1.0)
    item_city = shop_city[item_shop]
    return _World(
        n_cities=n_cities, n_districts=n_districts, n_aois=n_aois, n_cells=len(cell_values),
        n_shops=n_shops, n_items=n_items, n_brands=n_brands, city_w=city_w,
        district_city=district_city, district_w=district_w, shop_district=shop_district,
        shop_aoi=shop_aoi, shop_city=shop_city, shop_w=shop_w, shop_q=shop_q,
        shop_brand=shop_brand, shop_cell=shop_cell, shop_hash12=shop_hash12,
        cell_district=cell_district, cell_hash=cell_hash, item_shop=item_shop, item_q=item_q,
        item_cat=item_cat, item_food=item_food, item_z=item_z, item_price=item_price,
        item_rank=item_rank, cat_gender=cat_gender, meal=meal, hour_p=hour_p,
        hour_eff=hour_eff, weekday_eff=weekday_eff,
        shop_in_city=_GroupedSampler(shop_city, shop_w, n_cities),
        item_in_shop=_GroupedSampler(item_shop, item_w_local, n_shops),
        item_in_citycat=_GroupedSampler(item_city * NUM_CATEGORIES + item_cat, item_w,
                                        n_cities * NUM_CATEGORIES),
    )


def _build_users(n: int, world: _World, target_ctr: float, rng: np.random.Generator, *,
                 impressions_per_user: float = DEFAULT_IMPRESSIONS_PER_USER,
                 impressions_sigma: float = DEFAULT_IMPRESSIONS_SIGMA,
                 max_impressions_per_user: int = MAX_IMPRESSIONS_PER_USER) -> _Users:
    """Users with log-normal impression counts summing to ``n``, and their profiles.

    A user has ``min(max_impressions_per_user, 1 + floor(X))`` impressions, ``X``
    log-normal with median ``impressions_per_user`` and log-sd ``impressions_sigma``
    (the last user gets the remainder).
    """
    est = int(n / 4.0) + 16
    draws = rng.lognormal(math.log(impressions_per_user), impressions_sigma, est)
    counts = np.minimum(max_impressions_per_user, 1 + np.floor(draws)).astype(np.int64)
    while counts.sum() < n:
        counts = np.concatenate([counts, counts])
    csum = np.cumsum(counts)
    n_users = int(np.searchsorted(csum, n) + 1)
    counts = counts[:n_users].copy()
    counts[-1] -= csum[n_users - 1] - n
    district = rng.choice(world.n_districts, n_users, p=world.district_w / world.district_w.sum())
    gender = (rng.random(n_users) < 0.5).astype(np.int64)
    propensity = rng.standard_normal(n_users)
    price_z = rng.standard_normal(n_users)  # standardised log avg_price
    avg_price = np.round(np.exp(math.log(28.0) + 0.4 * price_z), 2)
    ord_30 = rng.poisson(np.exp(1.5 + 0.5 * propensity + 0.5 * rng.standard_normal(n_users)))
    ctr_30 = np.round(_sigmoid(_logit(target_ctr) + 0.7 * propensity
                               + 0.7 * rng.standard_normal(n_users)), 4)
    total_amt_30 = np.round(ord_30 * avg_price * rng.lognormal(0.0, 0.2, n_users), 2)
    vip = (rng.random(n_users) < _sigmoid(-2.5 + 0.6 * np.log1p(ord_30))).astype(np.int64)
    district_cells = _GroupedSampler(world.cell_district, np.ones(world.n_cells), world.n_districts)
    cell = district_cells.sample(district, rng.random(n_users))
    return _Users(
        counts=counts, city=world.district_city[district], gender=gender, propensity=propensity,
        price_z=price_z, avg_price=avg_price, ord_30=ord_30, ctr_30=ctr_30,
        total_amt_30=total_amt_30, vip=vip,
        hash12=_geohash_codes(n_users, 6, rng, prefix=world.cell_hash[cell]),
    )


def _impression_times(counts: np.ndarray, num_days: int,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sessions at meal-peaked hours; no two impressions of a user at the same minute.

    Returns:
        (user, day index, minute of the day) of every impression, in user-major order
        sorted by time within a user.
    """
    n, n_users = int(counts.sum()), len(counts)
    row_user = np.repeat(np.arange(n_users), counts)
    n_sess = 1 + rng.binomial(counts - 1, 0.3)
    sess_offset = np.concatenate([[0], np.cumsum(n_sess)[:-1]])
    row_sess = sess_offset[row_user] + (rng.random(n) * n_sess[row_user]).astype(np.int64)
    total_sess = int(n_sess.sum())
    sess_day = rng.integers(0, num_days, total_sess)
    hour_p = HOUR_TRAFFIC / HOUR_TRAFFIC.sum()
    sess_minute = rng.choice(24, total_sess, p=hour_p) * 60 + rng.integers(0, 60, total_sess)
    tiebreak = rng.random(n)
    order = np.lexsort((tiebreak, row_sess))
    row_sess = row_sess[order]
    # minutes between consecutive impressions of a session: 1, 2, 3... (geometric, mean 2)
    sess_first = np.r_[True, row_sess[1:] != row_sess[:-1]]
    gaps = np.where(sess_first, 0, rng.geometric(0.5, n))
    within = np.cumsum(gaps)
    within = within - np.maximum.accumulate(np.where(sess_first, within, 0))
    minute = sess_minute[row_sess] + within
    row_day = sess_day[row_sess]
    row_user = row_user[order]
    order = np.lexsort((tiebreak[order], minute, row_day, row_user))
    row_user, row_day, minute = row_user[order], row_day[order], minute[order]
    # Resolve equal minutes of a user's day by pushing later impressions forward, then
    # shift a day's impressions back if the last one ran past midnight.
    group = row_user * num_days + row_day
    rank = _group_rank(group)
    big = 10 * MINUTES_PER_DAY
    fixed = np.maximum.accumulate(group * big + minute - rank) - group * big + rank
    overflow = np.zeros(n_users * num_days, np.int64)
    np.maximum.at(overflow, group, fixed - (MINUTES_PER_DAY - 1))
    # A very busy day (hundreds of impressions) may then start before midnight: its
    # earliest impressions move to minutes 0, 1, 2... (a no-op on every other day, whose
    # strictly increasing minutes from >= 0 are >= their rank).
    minute = np.maximum(fixed - overflow[group], rank)
    if len(minute) and minute.max() >= MINUTES_PER_DAY:
        raise RuntimeError("Internal error: a user's impressions of one day do not fit into the day.")
    return row_user, row_day, minute


def _by_position(pos: np.ndarray) -> list[np.ndarray]:
    """Impressions grouped by their index within the user: ``[rows with pos == k]``."""
    order = np.argsort(pos, kind="stable")
    bounds = np.searchsorted(pos[order], np.arange(int(pos.max()) + 2))
    return [order[bounds[k]:bounds[k + 1]] for k in range(int(pos.max()) + 1)]


def _expose(world: _World, user_city: np.ndarray, row_user: np.ndarray,
            steps: list[np.ndarray], max_len: int, rng: np.random.Generator) -> np.ndarray:
    """The item of every impression, drawn in time order (it depends on the earlier ones)."""
    n = len(row_user)
    u1, u2, u3, u4 = rng.random((4, n))
    travel_city = rng.choice(world.n_cities, n, p=world.city_w)
    item_city = world.shop_city[world.item_shop]
    item = np.empty(n, np.int64)
    for k, rows in enumerate(steps):
        explore = np.ones(len(rows), bool)
        if k > 0:
            prev = rows - 1 - (u2[rows] * min(k, max_len)).astype(np.int64)
            revisit = u1[rows] < REVISIT_PROB
            same_cat = ~revisit & (u1[rows] < REVISIT_PROB + SAME_CATEGORY_PROB)
            explore = ~(revisit | same_cat)
            r = rows[revisit]
            item[r] = world.item_in_shop.sample(world.item_shop[item[prev[revisit]]], u3[r])
            r, p_items = rows[same_cat], item[prev[same_cat]]
            group = item_city[p_items] * NUM_CATEGORIES + world.item_cat[p_items]
            item[r] = world.item_in_citycat.sample(group, u3[r])
        r = rows[explore]
        city = np.where(u4[r] < TRAVEL_PROB, travel_city[r], user_city[row_user[r]])
        shops = world.shop_in_city.sample(city, u2[r])
        item[r] = world.item_in_shop.sample(shops, u3[r])
    return item


def _history_weights(shop: np.ndarray, cat: np.ndarray, times: np.ndarray, pos: np.ndarray,
                     max_len: int, e: Effects) -> np.ndarray:
    """``W[i, j - 1]``: weight of the j-th most recent previous impression of ``i``."""
    n = len(shop)
    hist_w = np.zeros((n, max_len), np.float64)
    idx = np.arange(n)
    for j in range(1, max_len + 1):
        r = idx[pos >= j]
        p = r - j
        match = e.history_shop * (shop[p] == shop[r]) + e.history_category * (cat[p] == cat[r])
        decay = np.exp(-e.history_position_decay * (j - 1)
                       - e.history_time_decay * (times[r] - times[p]) / 1000.0)
        hist_w[r, j - 1] = match * decay
    return hist_w


def _clicks(static: np.ndarray, hist_w: np.ndarray, steps: list[np.ndarray], e: Effects,
            target_ctr: float, u_label: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Calibrated intercept, history term, probabilities and clicks (in time order).

    The clicks of earlier impressions feed the history term of later ones, so the
    intercept is found exactly without click feedback, then by fixed-point steps.
    """
    n, max_len = hist_w.shape
    seen = hist_w.sum(axis=1)
    cap = e.history_cap

    def run(b: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        y = np.zeros(n, bool)
        rel = seen.copy()
        for k, rows in enumerate(steps):
            jmax = min(k, max_len)
            if jmax:
                prev = rows[:, None] - np.arange(1, jmax + 1)
                rel[rows] += e.history_click_boost * (hist_w[rows, :jmax] * y[prev]).sum(1)
            prob = _sigmoid(b + static[rows] + cap * np.tanh(rel[rows] / cap))
            y[rows] = u_label[rows] < prob
        hist = cap * np.tanh(rel / cap)
        return hist, _sigmoid(b + static + hist), y

    offset = static + cap * np.tanh(seen * (1 + e.history_click_boost * target_ctr) / cap)
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if _sigmoid(mid + offset).mean() < target_ctr:
            lo = mid
        else:
            hi = mid
    b = 0.5 * (lo + hi)
    hist, prob, y = run(b)
    if e.history_click_boost > 0 and seen.any():
        # Steps in logit space: move b by the logit gap; where that has not converged
        # after _PLAIN_STEPS (strong click feedback at a high CTR makes the slope exceed
        # 1, so plain steps overshoot), by the gap over the measured slope (secant).
        goal, last = _logit(target_ctr), None
        for step in range(_CALIBRATION_STEPS):
            mean = float(prob.mean())
            if abs(mean - target_ctr) < 1e-4 * target_ctr:
                break
            slope = 1.0
            if step >= _PLAIN_STEPS and b != last[0]:
                slope = float(np.clip((_logit(mean) - last[1]) / (b - last[0]), 0.5, 4.0))
            last = (b, _logit(mean))
            b += (goal - _logit(mean)) / slope
            hist, prob, y = run(b)
    return b, hist, prob, y


def simulate(
    num_rows: int,
    *,
    seed: int = DEFAULT_SEED,
    target_ctr: float = DEFAULT_TARGET_CTR,
    unknown_frac: float = DEFAULT_UNKNOWN_FRAC,
    days: Sequence[str] = DEFAULT_DAYS,
    max_len: int = DEFAULT_MAX_LEN,
    effects: Effects | None = None,
    impressions_per_user: float = DEFAULT_IMPRESSIONS_PER_USER,
    impressions_sigma: float = DEFAULT_IMPRESSIONS_SIGMA,
    max_impressions_per_user: int = MAX_IMPRESSIONS_PER_USER,
    catalog_scale: float = DEFAULT_CATALOG_SCALE,
) -> Simulation:
    """Run the generative model in memory (no files); see the module docstring.

    The random draws do not depend on the effect strengths: two runs with the same
    seed and size see the same world, users, times and impressions, and differ only in
    their click probabilities and labels.

    Args:
        num_rows: int. Raw rows to produce (valid rows plus rows with unknown codes).
        seed: int. Random seed. Defaults to 2024.
        target_ctr: float. Mean click probability the intercept is calibrated to, in
            (0, 0.9]. Defaults to 0.04.
        unknown_frac: float. Share of raw rows with an unknown code or a missing value.
            Defaults to 0.002.
        days: sequence of str. Day files ``D<weekday>_<k>``, increasing weekdays.
            Defaults to ``("D1_0", "D3_1", "D5_0")``.
        max_len: int. History length the click model looks back (use the pipeline's
            ``max_len``). Defaults to 10.
        effects: Effects. Effect strengths. Defaults to ``Effects()``.
        impressions_per_user: float. Median of the log-normal draw ``X`` of a user's
            impressions (a user has ``1 + floor(X)``, capped). Defaults to 3.0.
        impressions_sigma: float. Log-sd of that draw (0: every user has the same
            number). Defaults to 1.0.
        max_impressions_per_user: int. Cap of a user's impressions, at most
            ``MAX_IMPRESSIONS_PER_USER_PER_DAY`` (300) per day of ``days``. Defaults to 200.
        catalog_scale: float. Multiplies the world's size (cities, shops, items, brands),
            which is otherwise sized for the number of impressions: below 1 a small
            catalogue whose items are each seen often, above 1 a long tail of rarely
            seen items. In (0, 10]. Defaults to 1.0.

    Returns:
        A :class:`Simulation`.
    """
    if (isinstance(num_rows, bool) or not isinstance(num_rows, (int, np.integer))
            or not MIN_ROWS <= num_rows <= MAX_ROWS):
        raise ValueError(f"num_rows must be an integer in [{MIN_ROWS}, {MAX_ROWS}], got {num_rows!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    if not _is_number(target_ctr) or not 0.0 < target_ctr <= MAX_TARGET_CTR:
        raise ValueError(f"target_ctr must be a number in (0, {MAX_TARGET_CTR}], got {target_ctr!r}.")
    if not 0.0 <= unknown_frac <= 0.2:
        raise ValueError(f"unknown_frac must be in [0, 0.2], got {unknown_frac!r}.")
    if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or max_len < 1:
        raise ValueError(f"max_len must be an integer >= 1, got {max_len!r}.")
    days = _check_days(days)
    cap = MAX_IMPRESSIONS_PER_USER_PER_DAY * len(days)
    if not _is_number(impressions_per_user) or not 0.0 < impressions_per_user <= cap:
        raise ValueError(f"impressions_per_user must be a number in (0, {cap}], "
                         f"got {impressions_per_user!r}.")
    if not _is_number(impressions_sigma) or not 0.0 <= impressions_sigma <= 3.0:
        raise ValueError(f"impressions_sigma must be a number in [0, 3], got {impressions_sigma!r}.")
    if (isinstance(max_impressions_per_user, bool)
            or not isinstance(max_impressions_per_user, (int, np.integer))
            or not 1 <= max_impressions_per_user <= cap):
        raise ValueError(f"max_impressions_per_user must be an integer in [1, {cap}] "
                         f"({MAX_IMPRESSIONS_PER_USER_PER_DAY} per day of days), "
                         f"got {max_impressions_per_user!r}.")
    if not _is_number(catalog_scale) or not 0.0 < catalog_scale <= MAX_CATALOG_SCALE:
        raise ValueError(f"catalog_scale must be a number in (0, {MAX_CATALOG_SCALE:g}], got {catalog_scale!r}.")
    impressions_per_user, impressions_sigma = float(impressions_per_user), float(impressions_sigma)
    max_impressions_per_user, catalog_scale = int(max_impressions_per_user), float(catalog_scale)
    effects = effects if effects is not None else Effects()
    if not isinstance(effects, Effects):
        raise ValueError(f"effects must be an Effects instance, got {effects!r}.")
    num_rows, seed, max_len = int(num_rows), int(seed), int(max_len)

    (r_world, r_users, r_times, r_expo, r_noise, r_label, r_junk, r_raw) = [
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(8)
    ]
    num_junk = int(round(unknown_frac * num_rows))
    n = num_rows - num_junk
    weekdays = np.array([parse_day(d) for d in days])

    world = _build_world(n, weekdays, r_world, catalog_scale)
    users = _build_users(n, world, target_ctr, r_users, impressions_per_user=impressions_per_user,
                         impressions_sigma=impressions_sigma,
                         max_impressions_per_user=max_impressions_per_user)
    row_user, row_day, minute = _impression_times(users.counts, len(days), r_times)
    times = (weekdays[row_day] - 1) * MINUTES_PER_DAY + minute
    hours = minute // 60
    time_type = HOUR_TIME_TYPE[hours]
    pos = np.arange(n) - np.concatenate([[0], np.cumsum(users.counts)[:-1]])[row_user]
    steps = _by_position(pos)
    item = _expose(world, users.city, row_user, steps, max_len, r_expo)
    shop = world.item_shop[item]
    cat = world.item_cat[item]

    # ---- click model ---------------------------------------------------------------------
    e, w, u = effects, world, users
    comp: dict[str, np.ndarray] = {
        "item_quality": e.item_quality * w.item_q[item],
        "shop_quality": e.shop_quality * w.shop_q[shop],
        "user_activity": e.user_activity * u.propensity[row_user],
        "super_vip": e.super_vip * (u.vip[row_user] - u.vip[row_user].mean()),
        "hour": e.hour * w.hour_eff[hours],
        "weekday": e.weekday * w.weekday_eff[weekdays[row_day]],
        "gender_category": e.gender_category * (2 * u.gender[row_user] - 1) * w.cat_gender[cat],
        "price_match": e.price_match * u.price_z[row_user] * w.item_z[item],
        "meal_category": e.meal_category * w.meal[cat, time_type],
        "noise": e.noise * r_noise.standard_normal(n),
    }
    static = np.sum(list(comp.values()), axis=0)
    hist_w = _history_weights(shop, cat, times, pos, max_len, e)
    b, hist, prob, y = _clicks(static, hist_w, steps, e, target_ctr, r_label.random(n))
    comp["history"] = hist
    comp = {c: comp[c] for c in COMPONENTS}

    # ---- raw rows: the valid impressions, then copies carrying unknown codes ---------------
    junk_src = np.sort(r_junk.choice(n, num_junk, replace=False)) if num_junk else np.zeros(0, np.int64)
    src = np.concatenate([np.arange(n), junk_src])
    junk_label = (r_junk.random(num_junk) < prob[junk_src]).astype(np.int64)
    row_label = np.concatenate([y.astype(np.int64), junk_label])
    cols = _raw_columns(world, users, row_user, src, item, times, hours, time_type,
                        weekdays[row_day], r_raw)
    missing = _set_unknown_codes(cols, n, r_junk.integers(0, len(_UNKNOWN_CODES), num_junk))
    cols["label"] = row_label

    sizes = {
        "cities": w.n_cities, "districts": w.n_districts, "aois": w.n_aois,
        "geohash6_cells": w.n_cells, "shops": w.n_shops, "items": w.n_items,
        "brands": w.n_brands, "categories": NUM_CATEGORIES, "users": len(u.counts),
        "valid_rows": n, "unknown_rows": num_junk,
    }
    params = {
        "num_rows": num_rows, "seed": seed, "target_ctr": target_ctr,
        "unknown_frac": unknown_frac, "days": list(days), "max_len": max_len,
        "effects": dataclasses.asdict(effects),
        "impressions_per_user": impressions_per_user, "impressions_sigma": impressions_sigma,
        "max_impressions_per_user": max_impressions_per_user, "catalog_scale": catalog_scale,
        "revisit_prob": REVISIT_PROB, "same_category_prob": SAME_CATEGORY_PROB,
        "travel_prob": TRAVEL_PROB, "time_unit": "minute",
        "history_length_distribution":
            np.bincount(np.minimum(pos, max_len), minlength=max_len + 1).tolist(),
    }
    return Simulation(
        params=params, intercept=float(b), user=row_user, pos=pos, times=times, item=item,
        logit=b + static + hist, prob=prob, label=y.astype(np.int64), components=comp,
        columns=cols, row_day=row_day[src], row_prob=prob[src], row_label=row_label,
        num_valid=n, world=sizes, missing=missing,
    )


def _raw_columns(world: _World, users: _Users, row_user: np.ndarray, src: np.ndarray,
                 item: np.ndarray, times: np.ndarray, hours: np.ndarray, time_type: np.ndarray,
                 weekday: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    """Raw column values (but ``label``) of the raw rows, row ``r`` copying impression ``src[r]``.

    Raw rows past the valid impressions get user ids of their own. The ``*_list``
    columns (not used by the pipeline) hold the user's activity before the window,
    1..``RAW_LIST_LEN`` entries, one '^'-joined string per user.
    """
    w, u = world, users
    n_users, num_junk = len(users.counts), len(src) - len(row_user)
    user_ids = _distinct_ids(n_users + num_junk, 10_000_000, rng)
    shop_ids = _distinct_ids(w.n_shops, 100_000, rng)
    item_ids = _distinct_ids(w.n_items, 1_000_000, rng)
    city_ids = _distinct_ids(w.n_cities, 1, rng)
    district_ids = _distinct_ids(w.n_districts, 1_000, rng)
    aoi_ids = _distinct_ids(w.n_aois, 10_000, rng)
    brand_ids = _distinct_ids(w.n_brands + w.n_shops, 100_000, rng)
    cat_ids = _distinct_ids(NUM_CATEGORIES, 100, rng)
    food_ids = _distinct_ids(NUM_CATEGORIES * FOODS_PER_CATEGORY, 10_000, rng)
    ru, it = row_user[src], item[src]
    sh = w.item_shop[it]
    time_types = np.array(TIME_TYPES, dtype=object)
    cols: dict[str, Any] = {
        "user_id": np.concatenate([user_ids[row_user], user_ids[n_users:]]),
        "gender": u.gender[ru],
        "visit_city": city_ids[u.city[ru]],
        "avg_price": u.avg_price[ru],
        "is_super_vip": u.vip[ru],
        "ctr_30": u.ctr_30[ru],
        "ord_30": u.ord_30[ru],
        "total_amt_30": u.total_amt_30[ru],
        "shop_id": shop_ids[sh],
        "item_id": item_ids[it],
        "city_id": city_ids[w.shop_city[sh]],
        "district_id": district_ids[w.shop_district[sh]],
        "shop_aoi_id": aoi_ids[w.shop_aoi[sh]],
        "shop_geohash_6": w.cell_hash[w.shop_cell[sh]],
        "shop_geohash_12": w.shop_hash12[sh],
        "brand_id": brand_ids[w.shop_brand[sh]],
        "category_1_id": cat_ids[w.item_cat[it]],
        "merge_standard_food_id": food_ids[w.item_food[it]],
        "rank_7": w.item_rank[it, 0],
        "rank_30": w.item_rank[it, 1],
        "rank_90": w.item_rank[it, 2],
        "times": times[src],
        "hours": hours[src],
        "time_type": time_types[time_type[src]],
        "weekdays": weekday[src],
        "geohash12": u.hash12[ru],
    }
    list_len = rng.integers(1, RAW_LIST_LEN + 1, n_users)
    pre_city = np.repeat(u.city, RAW_LIST_LEN)
    pre_shop = w.shop_in_city.sample(pre_city, rng.random(len(pre_city)))
    pre_item = w.item_in_shop.sample(pre_shop, rng.random(len(pre_city))).reshape(n_users, RAW_LIST_LEN)
    pre_shop = pre_shop.reshape(n_users, RAW_LIST_LEN)
    pre_hours = rng.choice(24, (n_users, RAW_LIST_LEN), p=w.hour_p)
    pre_diff = np.cumsum(rng.integers(30, 5000, (n_users, RAW_LIST_LEN)), axis=1)
    pre_cols = {
        "shop_id_list": shop_ids[pre_shop],
        "item_id_list": item_ids[pre_item],
        "category_1_id_list": cat_ids[w.item_cat[pre_item]],
        "merge_standard_food_id_list": food_ids[w.item_food[pre_item]],
        "brand_id_list": brand_ids[w.shop_brand[pre_shop]],
        "price_list": w.item_price[pre_item],
        "shop_aoi_id_list": aoi_ids[w.shop_aoi[pre_shop]],
        "shop_geohash_6_list": w.cell_hash[w.shop_cell[pre_shop]],
        "timediff_list": pre_diff,
        "hours_list": pre_hours,
        "time_type_list": time_types[HOUR_TIME_TYPE[pre_hours]],
        "weekdays_list": rng.integers(1, 8, (n_users, RAW_LIST_LEN)),
    }
    valid_slot = np.arange(RAW_LIST_LEN) < list_len[:, None]
    for name, values in pre_cols.items():
        cols[name] = _PerUser(_join_lists(values, valid_slot), ru)
    return cols


def _set_unknown_codes(cols: dict[str, Any], num_valid: int, codes: np.ndarray) -> dict[str, np.ndarray]:
    """Put ``_UNKNOWN_CODES[codes[i]]`` into raw row ``num_valid + i``; returns the missing cells."""
    missing: dict[str, np.ndarray] = {}
    for c, (field, code) in enumerate(_UNKNOWN_CODES):
        rows = num_valid + np.flatnonzero(codes == c)
        if not len(rows):
            continue
        if code == "":
            missing[field] = rows
        elif cols[field].dtype == object:
            cols[field][rows] = str(code)
        else:
            cols[field][rows] = code
    return missing


def _join_lists(values: np.ndarray, valid: np.ndarray) -> Any:
    """One '^'-joined string per row of ``values`` (only the ``valid`` slots)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    slots = []
    for j in range(values.shape[1]):
        col = pa.array(values[:, j], mask=~valid[:, j])
        if not pa.types.is_string(col.type):
            col = pc.cast(col, pa.string())
        slots.append(col)
    return pc.binary_join_element_wise(*slots, "^", null_handling="skip")


# ---------------------------------------------------------------------------------
# files


def _write_raw_files(sim: Simulation, raw_dir: str, *, chunk_rows: int = 200_000) -> dict[str, int]:
    """Write ``<day>.csv`` and ``<day>.oracle.csv`` for every day; rows shuffled within a day."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    columns = RAW_COLUMNS
    missing_cols = sorted(set(columns) - set(sim.columns))
    if missing_cols or len(columns) != len(sim.columns):
        raise RuntimeError(f"Internal error: raw columns mismatch {missing_cols}.")
    os.makedirs(raw_dir, exist_ok=True)
    rng = np.random.default_rng([sim.params["seed"], 7])
    options = pacsv.WriteOptions(include_header=False, quoting_style="none", delimiter=",")
    types = {}
    for name in columns:
        v = sim.columns[name]
        if isinstance(v, _PerUser) or v.dtype == object:
            types[name] = pa.string()
        elif np.issubdtype(v.dtype, np.integer):
            types[name] = pa.int64()
        else:
            types[name] = pa.float64()
    schema = pa.schema([(name, types[name]) for name in columns])
    missing_mask = {}
    n_raw = len(sim.row_prob)
    for name, rows in sim.missing.items():
        mask = np.zeros(n_raw, bool)
        mask[rows] = True
        missing_mask[name] = mask
    written = {}
    for d, day in enumerate(sim.params["days"]):
        rows = np.flatnonzero(sim.row_day == d)
        rows = rows[rng.permutation(len(rows))]
        path = os.path.join(raw_dir, day + ".csv")
        with pacsv.CSVWriter(path, schema, write_options=options) as writer:
            for start in range(0, len(rows), chunk_rows):
                chunk = rows[start:start + chunk_rows]
                arrays = []
                for name in columns:
                    v = sim.columns[name]
                    if isinstance(v, _PerUser):
                        arr = v.values.take(pa.array(v.user[chunk]))
                    else:
                        mask = missing_mask[name][chunk] if name in missing_mask else None
                        arr = pa.array(v[chunk], type=types[name], mask=mask)
                    arrays.append(arr)
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
        oracle = pa.table({"p": pa.array(np.round(sim.row_prob[rows], 10))})
        pacsv.write_csv(oracle, os.path.join(raw_dir, day + ORACLE_SUFFIX),
                        write_options=pacsv.WriteOptions(include_header=False))
        written[day] = int(len(rows))
    return written


def generate(
    out_dir: str,
    *,
    num_rows: int | None = None,
    regime: str | None = None,
    seed: int = DEFAULT_SEED,
    target_ctr: float | None = None,
    unknown_frac: float | None = None,
    days: Sequence[str] = DEFAULT_DAYS,
    max_len: int = DEFAULT_MAX_LEN,
    impressions_per_user: float | None = None,
    impressions_sigma: float | None = None,
    max_impressions_per_user: int | None = None,
    catalog_scale: float | None = None,
    **strengths: float,
) -> dict[str, Any]:
    """Write synthetic raw day files in the Ele.me layout, their oracle files and ``generator.json``.

    Every generator knob left at None takes the value of ``regime`` (a name of
    :data:`REGIMES`), or without a regime today's default (the ``"default"`` regime);
    an argument given overrides the regime.

    Args:
        out_dir: str. Directory for ``<day>.csv``, ``<day>.oracle.csv`` and
            ``generator.json`` (created if missing).
        num_rows: int. Raw rows to write over all days (50 to 10 M); 1.2 M is Ele.me's
            size. Defaults to the regime's, else 250,000.
        regime: str. A name of :data:`REGIMES`. Defaults to None (today's defaults).
        seed: int. Random seed; the files are a deterministic function of the arguments.
            Defaults to 2024.
        target_ctr: float. Mean click probability, in (0, 0.9]. Defaults to 0.04.
        unknown_frac: float. Share of rows carrying an unknown code or a missing value
            (the pipeline drops them). Defaults to 0.002.
        days: sequence of str. Day file names ``D<weekday>_<k>``. Defaults to
            ``("D1_0", "D3_1", "D5_0")``.
        max_len: int. History length of the click model (the pipeline's ``max_len``).
            Defaults to 10.
        impressions_per_user: float. Median of the log-normal impressions-per-user draw
            (see :func:`simulate`). Defaults to 3.0.
        impressions_sigma: float. Its log-sd. Defaults to 1.0.
        max_impressions_per_user: int. Cap of a user's impressions. Defaults to 200.
        catalog_scale: float. World-size multiplier (shops, items...). Defaults to 1.0.
        **strengths: float. Effect strengths, the fields of :class:`Effects` (on top of
            the regime's).

    Returns:
        The content of ``generator.json``: parameters (``regime`` included), calibrated
        intercept, realised CTR, world sizes, rows per file, history-length
        distribution, standard deviation of every logit term and the generation time.

    Example:
        >>> info = generate("raw", num_rows=1000, seed=1, history_shop=0.0)
        >>> info = generate("dense", regime="dense", num_rows=5000)
    """
    given = {"num_rows": num_rows, "target_ctr": target_ctr, "unknown_frac": unknown_frac,
             "impressions_per_user": impressions_per_user, "impressions_sigma": impressions_sigma,
             "max_impressions_per_user": max_impressions_per_user, "catalog_scale": catalog_scale}
    knobs = regime_kwargs(regime, **{k: v for k, v in given.items() if v is not None}, **strengths)
    effects = Effects.from_kwargs(**{k: knobs.pop(k) for k in _EFFECT_NAMES if k in knobs})
    t0 = time.perf_counter()
    sim = simulate(knobs.pop("num_rows"), seed=seed, days=days, max_len=max_len,
                   effects=effects, **knobs)
    t_sim = time.perf_counter() - t0
    files = _write_raw_files(sim, out_dir)
    info = dict(sim.params)
    info.update(
        regime=regime,
        generator="pipelines.synthetic",
        intercept=sim.intercept,
        realized_ctr=float(sim.label.mean()),
        mean_probability=float(sim.prob.mean()),
        world=sim.world,
        files=files,
        component_std={c: float(v.std()) for c, v in sim.components.items()},
        simulate_seconds=round(t_sim, 3),
        total_seconds=round(time.perf_counter() - t0, 3),
    )
    with open(os.path.join(out_dir, GENERATOR_FILE), "w") as fh:
        json.dump(info, fh, indent=2)
    return info


def read_generator_info(raw_dir: str) -> dict[str, Any]:
    """The ``generator.json`` of a raw directory written by :func:`generate`."""
    path = os.path.join(raw_dir, GENERATOR_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No {GENERATOR_FILE} in {raw_dir}: run generate() first.")
    with open(path) as fh:
        return json.load(fh)


def simulation_from_info(info: dict[str, Any]) -> Simulation:
    """Re-run the simulation that wrote a raw directory (deterministic) from its info."""
    # Raw directories written before a knob existed were made with its default.
    knobs = {k: info.get(k, v) for k, v in _WORLD_KNOBS.items()}
    return simulate(info["num_rows"], seed=info["seed"], target_ctr=info["target_ctr"],
                    unknown_frac=info["unknown_frac"], days=info["days"],
                    max_len=info["max_len"], effects=Effects(**info["effects"]), **knobs)


def default_min_count(num_rows: int) -> int:
    """Vocabulary min count for a synthetic size: the paper's 10 from 100k rows up.

    Smaller datasets use ``max(1, num_rows // 10_000)`` so that a few hundred rows
    still give vocabularies with more than the OOV id.
    """
    if isinstance(num_rows, bool) or not isinstance(num_rows, (int, np.integer)) or num_rows < 1:
        raise ValueError(f"num_rows must be a positive integer, got {num_rows!r}.")
    return int(min(10, max(1, num_rows // 10_000)))


def prepare(
    raw_dir: str,
    out_dir: str | None,
    *,
    max_len: int | None = None,
    min_count: int | None = None,
    num_shards: int | None = None,
    progress: bool = True,
    time_unit: float = TIME_UNIT_MINUTES,
    feedback: bool = False,
) -> Any:
    """Run the Ele.me pipeline on synthetic raw files (all rows kept: ``sample_frac=1``).

    Args:
        raw_dir: str. Directory written by :func:`generate`.
        out_dir: str or None. Prepared dataset directory (None: only the tables).
        max_len: int. History length. Defaults to the generator's ``max_len``.
        min_count: int. Vocabulary min count. Defaults to :func:`default_min_count`
            of the generator's ``num_rows``.
        num_shards: int. TFRecord shards per split. Defaults to the pipeline's choice.
        progress: bool. Print progress. Defaults to True.
        time_unit: float. Minutes per time-interval unit recorded in the spec.
            Defaults to ``TIME_UNIT_MINUTES`` (60: intervals in hours).
        feedback: bool. Add the labels of the history (the field ``feedback``, see
            ``docs/data_format.md``). Defaults to False.

    Returns:
        The pipeline's ``PrepareResult``; its spec is named ``"synthetic"`` and its
        ``extra["generator"]`` holds the generator's parameters.
    """
    from pipelines import eleme

    info = read_generator_info(raw_dir)
    max_len = info["max_len"] if max_len is None else max_len
    min_count = default_min_count(info["num_rows"]) if min_count is None else min_count
    result = eleme.prepare(
        raw_dir, out_dir, days=tuple(info["days"]), sample_frac=1.0, max_len=max_len,
        min_count=min_count, seed=info["seed"], time_unit=time_unit, time_clip=4000,
        num_shards=num_shards, progress=progress, name=DATASET_NAME, feedback=feedback,
    )
    # Record the generator in the spec (provenance; the oracle ceiling's parameters).
    extra = dict(result.spec.extra)
    extra["generator"] = {k: info[k] for k in (
        "num_rows", "seed", "target_ctr", "unknown_frac", "days", "max_len", "effects",
        "intercept", "realized_ctr")}
    extra["generator"].update({k: info.get(k, v) for k, v in _WORLD_KNOBS.items()})
    extra["generator"]["regime"] = info.get("regime")
    result.spec = dataclasses.replace(result.spec, extra=extra)
    if out_dir is not None:
        result.spec.save(out_dir)
    return result


def make_synthetic_dataset(
    out_dir: str,
    *,
    regime: str | None = None,
    num_rows: int | None = None,
    seed: int = DEFAULT_SEED,
    max_len: int = DEFAULT_MAX_LEN,
    min_count: int | None = None,
    num_shards: int | None = None,
    progress: bool = True,
    time_unit: float = TIME_UNIT_MINUTES,
    feedback: bool = False,
    **generate_kwargs: Any,
) -> Any:
    """Generate raw files into ``<out_dir>/raw`` and prepare them into ``out_dir``.

    Args:
        out_dir: str. Prepared dataset directory (``dataset_spec.json`` at its root).
        regime: str. A name of :data:`REGIMES`; the other arguments override its values.
            Defaults to None (today's defaults).
        num_rows: int. Raw rows. Defaults to the regime's, else ``DEFAULT_NUM_ROWS``
            (250,000).
        seed: int. Random seed of the generator and the pipeline. Defaults to 2024.
        max_len: int. History length of both the click model and the pipeline.
            Defaults to 10.
        min_count: int. Vocabulary min count. Defaults to :func:`default_min_count`.
        num_shards: int. TFRecord shards per split. Defaults to the pipeline's choice.
        progress: bool. Print progress. Defaults to True.
        time_unit: float. Minutes per time-interval unit (see :func:`prepare`).
        feedback: bool. Add the labels of the history (see :func:`prepare`).
            Defaults to False.
        **generate_kwargs: Further :func:`generate` arguments (``target_ctr``,
            ``unknown_frac``, ``days``, ``impressions_per_user``, ``catalog_scale``...,
            effect strengths).

    Returns:
        The pipeline's ``PrepareResult``.

    Example:
        >>> result = make_synthetic_dataset("data/synthetic", num_rows=20_000, seed=1)
        >>> result.spec.has_oracle
        True
        >>> result = make_synthetic_dataset("data/dense", regime="dense")
    """
    raw_dir = os.path.join(out_dir, RAW_SUBDIR)
    info = generate(raw_dir, num_rows=num_rows, regime=regime, seed=seed, max_len=max_len,
                    **generate_kwargs)
    if progress:
        print(f"synthetic: wrote {info['num_rows']} raw rows into {raw_dir} "
              f"(CTR {info['realized_ctr']:.4f}, {info['total_seconds']:.1f} s)", flush=True)
    return prepare(raw_dir, out_dir, max_len=max_len, min_count=min_count,
                   num_shards=num_shards, progress=progress, time_unit=time_unit,
                   feedback=feedback)


# ---------------------------------------------------------------------------------
# report


def _auc(label: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(label, score))


def _single_field_matrix(table: dict[str, np.ndarray], spec: Any) -> Any:
    """One-hot of every categorical non-sequential/target field plus the numeric fields."""
    import scipy.sparse as sp

    n = len(table[spec.label])
    blocks = []
    for f in spec.fields:
        values = np.asarray(table[f.name])
        if f.is_categorical:
            ids = values.astype(np.int64)
            blocks.append(sp.csr_matrix((np.ones(n), (np.arange(n), ids)), shape=(n, max(f.vocab_size, ids.max() + 1))))
        else:
            blocks.append(sp.csr_matrix(values.astype(np.float64).reshape(-1, 1)))
    return sp.hstack(blocks, format="csr")


def logistic_regression_auc(tables: dict[str, dict[str, np.ndarray]], spec: Any,
                            *, cs: Sequence[float] = (0.03, 0.1, 0.3)) -> dict[str, Any]:
    """Test AUC of a single-field logistic regression (no history, no crosses).

    Features: one-hot of the vocabulary id of every categorical non-sequential and
    target field, and every numeric field as is (already min-max scaled). The inverse
    regularisation ``C`` is picked on the validation split.

    Args:
        tables: dict. Split -> feature -> array (a prepared dataset's tables).
        spec: DatasetSpec. The prepared dataset's spec.
        cs: sequence of float. Candidate values of ``C``. Defaults to (0.03, 0.1, 0.3).

    Returns:
        dict with ``auc`` (test), ``valid_auc``, ``C``.
    """
    from sklearn.linear_model import LogisticRegression

    x = {s: _single_field_matrix(tables[s], spec) for s in ("train", "valid", "test")}
    width = max(m.shape[1] for m in x.values())
    for s, m in x.items():
        if m.shape[1] < width:
            import scipy.sparse as sp

            x[s] = sp.hstack([m, sp.csr_matrix((m.shape[0], width - m.shape[1]))], format="csr")
    y = {s: np.asarray(tables[s][spec.label]) for s in x}
    best = None
    for c in cs:
        model = LogisticRegression(C=c, max_iter=300)
        model.fit(x["train"], y["train"])
        valid = _auc(y["valid"], model.decision_function(x["valid"]))
        if best is None or valid > best[0]:
            best = (valid, c, model)
    valid, c, model = best
    return {"auc": _auc(y["test"], model.decision_function(x["test"])), "valid_auc": valid, "C": c}


def _test_rows(sim: Simulation, num_test: int) -> np.ndarray:
    """Valid impressions of the test split, in the pipeline's order (stable time sort)."""
    # Raw file order: days in order, rows shuffled within a day as _write_raw_files does.
    rng = np.random.default_rng([sim.params["seed"], 7])
    file_order = []
    for d in range(len(sim.params["days"])):
        rows = np.flatnonzero(sim.row_day == d)
        file_order.append(rows[rng.permutation(len(rows))])
    file_order = np.concatenate(file_order)
    file_order = file_order[file_order < sim.num_valid]
    by_time = file_order[np.argsort(sim.times[file_order], kind="stable")]
    return by_time[len(by_time) - num_test:]


def report(dataset_dir: str, *, raw_dir: str | None = None, result: Any = None,
           effects_off: bool = True) -> dict[str, Any]:
    """Quality report of a prepared synthetic dataset.

    Args:
        dataset_dir: str. Prepared dataset directory.
        raw_dir: str. Raw directory of the generator. Defaults to ``<dataset_dir>/raw``.
        result: PrepareResult. The pipeline's result (its ``tables`` are used); when
            None the pipeline is re-run in memory to get them.
        effects_off: bool. Also compute the oracle test AUC with each logit term
            switched off (re-runs the simulation). Defaults to True.

    Returns:
        dict with ``oracle_auc``, ``lr_auc``, ``lr_C``, ``captured_lift`` (of the
        logistic regression), ``ctr`` per split, ``hist_len_distribution`` (share of
        samples per history length), ``split_sizes``, ``oracle_auc_without`` (term ->
        oracle test AUC with that term removed) and ``test_rows_matched``.
    """
    raw_dir = raw_dir or os.path.join(dataset_dir, RAW_SUBDIR)
    info = read_generator_info(raw_dir)
    if result is None:
        from feseq_tf.schema import DatasetSpec

        pipeline = DatasetSpec.load(dataset_dir).extra.get("pipeline", {})
        result = prepare(raw_dir, None, max_len=pipeline.get("max_len"),
                         min_count=pipeline.get("min_count"), progress=False)
    tables, spec = result.tables, result.spec
    test = tables["test"]
    oracle_auc = _auc(test[spec.label], test["oracle_prob"])
    lr = logistic_regression_auc(tables, spec)
    hist = np.concatenate([np.asarray(tables[s]["hist_len"]) for s in ("train", "valid", "test")])
    out: dict[str, Any] = {
        "num_rows": info["num_rows"],
        "seed": info["seed"],
        "oracle_auc": oracle_auc,
        "lr_auc": lr["auc"],
        "lr_C": lr["C"],
        "captured_lift": (lr["auc"] - 0.5) / (oracle_auc - 0.5),
        "ctr": {s: float(np.mean(tables[s][spec.label])) for s in ("train", "valid", "test")},
        "split_sizes": {s: int(len(tables[s][spec.label])) for s in ("train", "valid", "test")},
        "hist_len_distribution": (np.bincount(hist, minlength=spec.max_len + 1) / len(hist)).round(4).tolist(),
        "generator_intercept": info["intercept"],
    }
    if effects_off:
        sim = simulation_from_info(info)
        rows = _test_rows(sim, len(test[spec.label]))
        matched = np.allclose(np.sort(sim.prob[rows]), np.sort(np.asarray(test["oracle_prob"], np.float64)),
                              rtol=1e-4, atol=1e-7)
        out["test_rows_matched"] = bool(matched)
        y = sim.label[rows]
        out["oracle_auc_without"] = {
            c: _auc(y, sim.logit[rows] - v[rows])
            for c, v in sim.components.items() if np.any(v[rows] != 0)
        }
    return out


def _format_report(rep: dict[str, Any]) -> str:
    lines = [
        f"rows {rep['num_rows']}  seed {rep['seed']}  split sizes {rep['split_sizes']}",
        f"CTR train/valid/test: {rep['ctr']['train']:.4f} / {rep['ctr']['valid']:.4f} / {rep['ctr']['test']:.4f}",
        "history length distribution (0..L): " + " ".join(f"{x:.3f}" for x in rep["hist_len_distribution"]),
        f"oracle test AUC:                 {rep['oracle_auc']:.4f}",
        f"single-field LR test AUC:        {rep['lr_auc']:.4f}  (C={rep['lr_C']})",
        f"captured lift of the LR:         {rep['captured_lift']:.3f}",
    ]
    if "oracle_auc_without" in rep:
        lines.append(f"oracle test AUC with one term switched off (test rows matched: {rep['test_rows_matched']}):")
        for c, auc in rep["oracle_auc_without"].items():
            lines.append(f"  - {c:<18} {auc:.4f}  ({auc - rep['oracle_auc']:+.4f})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line: generate, prepare and optionally report a synthetic dataset."""
    p = argparse.ArgumentParser(prog="python -m pipelines.synthetic",
                                description="Generate the synthetic Ele.me-layout dataset and prepare it.")
    p.add_argument("--out", required=True, help="prepared dataset directory (raw files go to OUT/raw)")
    p.add_argument("--regime", choices=sorted(REGIMES),
                   help="named generator settings (explicit flags override its values; default: "
                        "today's defaults, the 'default' regime)")
    p.add_argument("--rows", type=int, help=f"raw rows (default: the regime's, else {DEFAULT_NUM_ROWS})")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    p.add_argument("--max-len", type=int, default=DEFAULT_MAX_LEN, help="history length (default 10)")
    p.add_argument("--min-count", type=int, help="vocabulary min count (default: 10 from 100k rows)")
    p.add_argument("--target-ctr", type=float, help=f"mean click probability in (0, {MAX_TARGET_CTR}] "
                                                    f"(default: the regime's, else {DEFAULT_TARGET_CTR})")
    p.add_argument("--impressions-per-user", type=float,
                   help="median of the log-normal impressions-per-user draw "
                        f"(default: the regime's, else {DEFAULT_IMPRESSIONS_PER_USER:g})")
    p.add_argument("--impressions-sigma", type=float,
                   help=f"log-sd of that draw (default: the regime's, else {DEFAULT_IMPRESSIONS_SIGMA:g})")
    p.add_argument("--max-impressions-per-user", type=int,
                   help=f"cap of a user's impressions (default: the regime's, else {MAX_IMPRESSIONS_PER_USER})")
    p.add_argument("--catalog-scale", type=float,
                   help="multiplier of the number of shops and items "
                        f"(default: the regime's, else {DEFAULT_CATALOG_SCALE:g})")
    p.add_argument("--time-unit", type=float, default=TIME_UNIT_MINUTES,
                   help=f"minutes per time-interval unit in the dataset spec (default {TIME_UNIT_MINUTES:g})")
    p.add_argument("--feedback", action="store_true",
                   help="add the labels of the history as the field 'feedback' (not in the paper)")
    p.add_argument("--raw-only", action="store_true", help="only write the raw and oracle files into OUT")
    p.add_argument("--report", action="store_true",
                   help="print oracle AUC, single-field LR AUC, captured lift and per-term AUCs")
    p.add_argument("--set", action="append", default=[], metavar="EFFECT=STRENGTH",
                   help="override an effect strength, e.g. --set history_shop=0 (repeatable)")
    args = p.parse_args(argv)
    strengths = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        try:
            strengths[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise SystemExit(f"--set expects EFFECT=STRENGTH with a number, got {item!r}.")
    knobs = {"regime": args.regime, "num_rows": args.rows, "target_ctr": args.target_ctr,
             "impressions_per_user": args.impressions_per_user,
             "impressions_sigma": args.impressions_sigma,
             "max_impressions_per_user": args.max_impressions_per_user,
             "catalog_scale": args.catalog_scale, **strengths}
    if args.raw_only:
        try:
            info = generate(args.out, seed=args.seed, max_len=args.max_len, **knobs)
        except ValueError as err:
            raise SystemExit(f"pipelines.synthetic: {err}") from None
        print(json.dumps({k: info[k] for k in ("files", "realized_ctr", "total_seconds")}))
        return info
    if not args.time_unit > 0:
        raise SystemExit(f"--time-unit must be > 0, got {args.time_unit}.")
    try:
        result = make_synthetic_dataset(args.out, seed=args.seed, max_len=args.max_len,
                                        min_count=args.min_count, time_unit=args.time_unit,
                                        feedback=args.feedback, **knobs)
    except ValueError as err:
        raise SystemExit(f"pipelines.synthetic: {err}") from None
    out: dict[str, Any] = {"spec": result.spec.to_dict()}
    print(json.dumps({"out": args.out, "regime": args.regime, "split_sizes": result.spec.split_sizes,
                      "ctr": result.report.get("ctr")}), flush=True)
    if args.report:
        rep = report(args.out, result=result)
        with open(os.path.join(args.out, REPORT_FILE), "w") as fh:
            json.dump(rep, fh, indent=2)
        print(_format_report(rep), flush=True)
        out["report"] = rep
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
