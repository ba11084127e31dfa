"""Raw column values of the synthetic rows: arbitrary-looking ids, profiles, lists, unknown codes.

Rows with unknown codes are copies of real rows, under user ids of their own, with one
field set to an unknown code (``-99`` gender, ``-1`` id/rank/geohash) or left empty, so
that the pipeline's filtering is exercised.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from pipelines.synthetic.sampling import distinct_ids
from pipelines.synthetic.timeline import HOUR_TIME_TYPE, TIME_TYPES
from pipelines.synthetic.world import FOODS_PER_CATEGORY, NUM_CATEGORIES, Users, World

RAW_LIST_LEN = 10
# Fields whose unknown code the pipeline filters ("" = a missing value of the column).
UNKNOWN_CODES = (
    ("gender", -99), ("city_id", -1), ("district_id", -1), ("shop_aoi_id", -1),
    ("shop_geohash_6", "-1"), ("shop_geohash_12", "-1"), ("rank_7", -1), ("rank_30", -1),
    ("rank_90", -1), ("geohash12", "-1"), ("item_id", ""), ("avg_price", ""),
    ("category_1_id", ""), ("hours", ""),
)


@dataclasses.dataclass(frozen=True)
class PerUser:
    """A raw column stored once per user: ``values[user[row]]`` is the value of a row."""

    values: Any
    user: np.ndarray


def raw_columns(world: World, users: Users, row_user: np.ndarray, src: np.ndarray,
               item: np.ndarray, times: np.ndarray, hours: np.ndarray, time_type: np.ndarray,
               weekday: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    """Raw column values (but ``label``) of the raw rows, row ``r`` copying impression ``src[r]``.

    Raw rows past the valid impressions get user ids of their own. The ``*_list``
    columns (not used by the pipeline) hold the user's activity before the window,
    1..``RAW_LIST_LEN`` entries, one '^'-joined string per user.
    """
    w, u = world, users
    n_users, num_junk = len(users.counts), len(src) - len(row_user)
    user_ids = distinct_ids(n_users + num_junk, 10_000_000, rng)
    shop_ids = distinct_ids(w.n_shops, 100_000, rng)
    item_ids = distinct_ids(w.n_items, 1_000_000, rng)
    city_ids = distinct_ids(w.n_cities, 1, rng)
    district_ids = distinct_ids(w.n_districts, 1_000, rng)
    aoi_ids = distinct_ids(w.n_aois, 10_000, rng)
    brand_ids = distinct_ids(w.n_brands + w.n_shops, 100_000, rng)
    cat_ids = distinct_ids(NUM_CATEGORIES, 100, rng)
    food_ids = distinct_ids(NUM_CATEGORIES * FOODS_PER_CATEGORY, 10_000, rng)
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
        cols[name] = PerUser(join_lists(values, valid_slot), ru)
    return cols


def set_unknown_codes(cols: dict[str, Any], num_valid: int, codes: np.ndarray) -> dict[str, np.ndarray]:
    """Put ``UNKNOWN_CODES[codes[i]]`` into raw row ``num_valid + i``; returns the missing cells."""
    missing: dict[str, np.ndarray] = {}
    for c, (field, code) in enumerate(UNKNOWN_CODES):
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


def join_lists(values: np.ndarray, valid: np.ndarray) -> Any:
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
