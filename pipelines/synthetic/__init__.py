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
(:attr:`Simulation.components`) so that a report can switch each off.

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

Modules, one job each: :mod:`~pipelines.synthetic.effects` (the strengths),
:mod:`~pipelines.synthetic.world` (world and users), :mod:`~pipelines.synthetic.timeline`
(days and impression times), :mod:`~pipelines.synthetic.exposure` (which item is shown),
:mod:`~pipelines.synthetic.clicks` (the click model), :mod:`~pipelines.synthetic.columns`
(raw column values), :mod:`~pipelines.synthetic.simulation` (the run in memory),
:mod:`~pipelines.synthetic.regimes`, :mod:`~pipelines.synthetic.raw` (the raw files),
:mod:`~pipelines.synthetic.dataset` (the prepared dataset),
:mod:`~pipelines.synthetic.quality` (the report) and :mod:`~pipelines.synthetic.cli`.

Command line::

    python -m pipelines.synthetic --out DIR [--regime NAME] [--rows N] [--seed S] [--report]
"""

from pipelines.eleme import DEFAULT_DAYS, ORACLE_SUFFIX, RAW_COLUMNS
from pipelines.synthetic.cli import main
from pipelines.synthetic.columns import RAW_LIST_LEN
from pipelines.synthetic.dataset import (
    DATASET_NAME,
    RAW_SUBDIR,
    TIME_UNIT_MINUTES,
    default_min_count,
    make_synthetic_dataset,
    prepare,
)
from pipelines.synthetic.effects import COMPONENTS, EFFECT_NAMES, Effects
from pipelines.synthetic.exposure import REVISIT_PROB, SAME_CATEGORY_PROB, TRAVEL_PROB
from pipelines.synthetic.quality import REPORT_FILE, logistic_regression_auc, report
from pipelines.synthetic.raw import (
    GENERATOR_FILE,
    generate,
    read_generator_info,
    simulation_from_info,
)
from pipelines.synthetic.regimes import (
    KNOB_DEFAULTS,
    REGIME_KEYS,
    REGIMES,
    WORLD_KNOBS,
    regime_kwargs,
)
from pipelines.synthetic.simulation import (
    DEFAULT_MAX_LEN,
    DEFAULT_NUM_ROWS,
    DEFAULT_SEED,
    DEFAULT_TARGET_CTR,
    DEFAULT_UNKNOWN_FRAC,
    MAX_ROWS,
    MAX_TARGET_CTR,
    MIN_ROWS,
    Simulation,
    simulate,
)
from pipelines.synthetic.timeline import (
    HOUR_TIME_TYPE,
    HOUR_TRAFFIC,
    MAX_IMPRESSIONS_PER_USER_PER_DAY,
    MINUTES_PER_DAY,
    TIME_TYPES,
    parse_day,
)
from pipelines.synthetic.world import (
    DEFAULT_CATALOG_SCALE,
    DEFAULT_IMPRESSIONS_PER_USER,
    DEFAULT_IMPRESSIONS_SIGMA,
    FOODS_PER_CATEGORY,
    MAX_CATALOG_SCALE,
    MAX_IMPRESSIONS_PER_USER,
    NUM_CATEGORIES,
    NUM_PRICE_RANKS,
)

__all__ = [
    "COMPONENTS",
    "DATASET_NAME",
    "DEFAULT_CATALOG_SCALE",
    "DEFAULT_DAYS",
    "DEFAULT_IMPRESSIONS_PER_USER",
    "DEFAULT_IMPRESSIONS_SIGMA",
    "DEFAULT_MAX_LEN",
    "DEFAULT_NUM_ROWS",
    "DEFAULT_SEED",
    "DEFAULT_TARGET_CTR",
    "DEFAULT_UNKNOWN_FRAC",
    "EFFECT_NAMES",
    "FOODS_PER_CATEGORY",
    "GENERATOR_FILE",
    "HOUR_TIME_TYPE",
    "HOUR_TRAFFIC",
    "KNOB_DEFAULTS",
    "MAX_CATALOG_SCALE",
    "MAX_IMPRESSIONS_PER_USER",
    "MAX_IMPRESSIONS_PER_USER_PER_DAY",
    "MAX_ROWS",
    "MAX_TARGET_CTR",
    "MINUTES_PER_DAY",
    "MIN_ROWS",
    "NUM_CATEGORIES",
    "NUM_PRICE_RANKS",
    "ORACLE_SUFFIX",
    "RAW_COLUMNS",
    "RAW_LIST_LEN",
    "RAW_SUBDIR",
    "REGIMES",
    "REGIME_KEYS",
    "REPORT_FILE",
    "REVISIT_PROB",
    "SAME_CATEGORY_PROB",
    "TIME_TYPES",
    "TIME_UNIT_MINUTES",
    "TRAVEL_PROB",
    "WORLD_KNOBS",
    "Effects",
    "Simulation",
    "default_min_count",
    "generate",
    "logistic_regression_auc",
    "main",
    "make_synthetic_dataset",
    "parse_day",
    "prepare",
    "read_generator_info",
    "regime_kwargs",
    "report",
    "simulate",
    "simulation_from_info",
]
