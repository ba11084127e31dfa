"""The generative model run in memory: :func:`simulate` and its result, :class:`Simulation`.

It wires the world, the impression times, the exposure, the click model and the raw
columns together; nothing is written to files (:mod:`pipelines.synthetic.raw` does that).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipelines.eleme import DEFAULT_DAYS
from pipelines.synthetic.clicks import calibrated_clicks, history_weights, static_terms
from pipelines.synthetic.columns import UNKNOWN_CODES, raw_columns, set_unknown_codes
from pipelines.synthetic.effects import COMPONENTS, Effects
from pipelines.synthetic.exposure import (
    REVISIT_PROB,
    SAME_CATEGORY_PROB,
    TRAVEL_PROB,
    by_position,
    expose,
)
from pipelines.synthetic.timeline import (
    HOUR_TIME_TYPE,
    MAX_IMPRESSIONS_PER_USER_PER_DAY,
    MINUTES_PER_DAY,
    check_days,
    impression_times,
    parse_day,
)
from pipelines.synthetic.world import (
    DEFAULT_CATALOG_SCALE,
    DEFAULT_IMPRESSIONS_PER_USER,
    DEFAULT_IMPRESSIONS_SIGMA,
    MAX_CATALOG_SCALE,
    MAX_IMPRESSIONS_PER_USER,
    NUM_CATEGORIES,
    build_users,
    build_world,
)

#: A relisted item's ``item_id`` is its first id plus this times its version (1, 2...).
RELIST_ID_STEP = 1_000_000_000
DEFAULT_NUM_ROWS = 250_000
"""Size of the default synthetic dataset: trains a few epochs in minutes on 2 CPU cores."""

DEFAULT_SEED = 2024
DEFAULT_MAX_LEN = 10
DEFAULT_TARGET_CTR = 0.04
MAX_TARGET_CTR = 0.9
DEFAULT_UNKNOWN_FRAC = 0.002
MIN_ROWS = 50
MAX_ROWS = 10_000_000


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
            user (:class:`~pipelines.synthetic.columns.PerUser`).
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


def _is_number(x: Any) -> bool:
    """A finite real number (not a bool)."""
    return (not isinstance(x, bool) and isinstance(x, (int, float, np.integer, np.floating))
            and math.isfinite(x))


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
    user_arrival: float = 0.0,
    item_relist: float = 0.0,
    appeal_drift: float = 0.0,
) -> Simulation:
    """Run the generative model in memory (no files); see the package docstring.

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
        user_arrival: float. Drift: the share of users who arrive after the first day (on
            a uniformly drawn later day; their impressions fall on the days from then on).
            In [0, 1]. Defaults to 0.
        item_relist: float. Drift: each day after the first, each item is relisted under a
            new ``item_id`` with this probability (a new id for the same shop, category and
            appeal: what the model learnt of the old id does not reach it). In [0, 1].
            Defaults to 0.
        appeal_drift: float. Drift: every item's appeal (its ``item_quality`` term of the
            logit) takes a random walk over the days, a normal step of this standard
            deviation each day after the first. In [0, 2]. Defaults to 0.
            The three draw from a random stream of their own: at 0 the data is exactly
            the data without them.

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
    days = check_days(days)
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
    for name, value, top in (("user_arrival", user_arrival, 1.0), ("item_relist", item_relist, 1.0),
                             ("appeal_drift", appeal_drift, 2.0)):
        if not _is_number(value) or not 0.0 <= value <= top:
            raise ValueError(f"{name} must be a number in [0, {top:g}], got {value!r}.")
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

    world = build_world(n, weekdays, r_world, catalog_scale)
    users = build_users(n, world, target_ctr, r_users, impressions_per_user=impressions_per_user,
                        impressions_sigma=impressions_sigma,
                        max_impressions_per_user=max_impressions_per_user)
    r_drift = np.random.default_rng(np.random.SeedSequence(seed).spawn(9)[8])  # its own stream
    arrival = None
    if user_arrival > 0 and len(days) > 1:
        n_users = len(users.counts)
        late = r_drift.random(n_users) < user_arrival
        arrival = np.where(late, r_drift.integers(1, len(days), n_users), 0)
    row_user, row_day, minute = impression_times(users.counts, len(days), r_times, arrival)
    times = (weekdays[row_day] - 1) * MINUTES_PER_DAY + minute
    hours = minute // 60
    time_type = HOUR_TIME_TYPE[hours]
    pos = np.arange(n) - np.concatenate([[0], np.cumsum(users.counts)[:-1]])[row_user]
    steps = by_position(pos)
    item = expose(world, users.city, row_user, steps, max_len, r_expo)
    shop = world.item_shop[item]
    cat = world.item_cat[item]

    # The click model.
    comp = static_terms(effects, world, users, row_user, item, hours, time_type,
                        weekdays[row_day], r_noise.standard_normal(n))
    if appeal_drift > 0:  # each item's appeal walks over the days
        walk = r_drift.normal(0.0, appeal_drift, (world.n_items, len(days)))
        walk[:, 0] = 0.0
        comp["item_quality"] = comp["item_quality"] + np.cumsum(walk, axis=1)[item, row_day]
    static = np.sum(list(comp.values()), axis=0)
    hist_w = history_weights(shop, cat, times, pos, max_len, effects)
    b, hist, prob, y = calibrated_clicks(static, hist_w, steps, effects, target_ctr,
                                         r_label.random(n))
    comp["history"] = hist
    comp = {c: comp[c] for c in COMPONENTS}

    # Raw rows: the valid impressions, then copies carrying unknown codes.
    junk_src = np.sort(r_junk.choice(n, num_junk, replace=False)) if num_junk else np.zeros(0, np.int64)
    src = np.concatenate([np.arange(n), junk_src])
    junk_label = (r_junk.random(num_junk) < prob[junk_src]).astype(np.int64)
    row_label = np.concatenate([y.astype(np.int64), junk_label])
    cols = raw_columns(world, users, row_user, src, item, times, hours, time_type,
                       weekdays[row_day], r_raw)
    if item_relist > 0 and len(days) > 1:  # versions: relisted items get new ids
        events = r_drift.random((world.n_items, len(days))) < item_relist
        events[:, 0] = False
        version = np.cumsum(events, axis=1)[item[src], row_day[src]]
        cols["item_id"] = cols["item_id"] + RELIST_ID_STEP * version
    missing = set_unknown_codes(cols, n, r_junk.integers(0, len(UNKNOWN_CODES), num_junk))
    cols["label"] = row_label

    sizes = {
        "cities": world.n_cities, "districts": world.n_districts, "aois": world.n_aois,
        "geohash6_cells": world.n_cells, "shops": world.n_shops, "items": world.n_items,
        "brands": world.n_brands, "categories": NUM_CATEGORIES, "users": len(users.counts),
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
        "user_arrival": user_arrival, "item_relist": item_relist, "appeal_drift": appeal_drift,
        "history_length_distribution":
            np.bincount(np.minimum(pos, max_len), minlength=max_len + 1).tolist(),
    }
    return Simulation(
        params=params, intercept=float(b), user=row_user, pos=pos, times=times, item=item,
        logit=b + static + hist, prob=prob, label=y.astype(np.int64), components=comp,
        columns=cols, row_day=row_day[src], row_prob=prob[src], row_label=row_label,
        num_valid=n, world=sizes, missing=missing,
    )
