"""The synthetic world: cities, districts, areas, shops, items, categories, and the users.

Sizes follow the number of impressions (times ``catalog_scale``); popularity is Zipf-like,
a user's number of impressions log-normal. The package docstring describes the world.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy.special import ndtr

from pipelines.synthetic.sampling import (
    GroupedSampler,
    geohash_codes,
    group_rank,
    logit,
    sigmoid,
    standardize,
    zipf_weights,
)
from pipelines.synthetic.timeline import HOUR_TIME_TYPE, HOUR_TRAFFIC, TIME_TYPES

# Users: 1 + floor(X) impressions each, X log-normal with this median and log-sd, capped.
DEFAULT_IMPRESSIONS_PER_USER = 3.0
DEFAULT_IMPRESSIONS_SIGMA = 1.0
DEFAULT_CATALOG_SCALE = 1.0
MAX_CATALOG_SCALE = 10.0
NUM_CATEGORIES = 40
NUM_PRICE_RANKS = 20
FOODS_PER_CATEGORY = 25
MAX_IMPRESSIONS_PER_USER = 200
"""Default cap of the impressions of one user (the ``max_impressions_per_user`` knob)."""


@dataclasses.dataclass
class World:
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
    shop_in_city: GroupedSampler
    item_in_shop: GroupedSampler
    item_in_citycat: GroupedSampler


@dataclasses.dataclass
class Users:
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


def build_world(n: int, weekdays: np.ndarray, rng: np.random.Generator,
                catalog_scale: float = DEFAULT_CATALOG_SCALE) -> World:
    """Cities > districts > areas (aoi) > shops > items, sized for ``n * catalog_scale`` impressions."""
    size = int(n * catalog_scale)
    n_cities = int(np.clip(size // 5000, 4, 50))
    n_shops = max(20, size // 30)
    n_items = max(3 * n_shops, size // 4)
    n_districts = int(np.clip(n_shops // 40, n_cities, n_shops))
    n_aois = max(n_districts, n_shops // 8)
    city_w = zipf_weights(n_cities, 1.0, rng)
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
    aoi_cell_local[aoi_order] = group_rank(aoi_district[aoi_order]) // 3
    cell_values, aoi_cell = np.unique(aoi_district * n_aois + aoi_cell_local, return_inverse=True)
    cell_district = cell_values // n_aois
    city_hash = geohash_codes(n_cities, 3, rng, distinct=True)
    cell_hash = geohash_codes(len(cell_values), 3, rng, distinct=True,
                               prefix=city_hash[district_city[cell_district]])
    # shops: one per district first (so every city has shops), then by district weight.
    shop_district = np.concatenate([np.arange(n_districts),
                                    rng.choice(n_districts, n_shops - n_districts, p=district_p)])
    district_aois = GroupedSampler(aoi_district, np.ones(n_aois), n_districts)
    shop_aoi = district_aois.sample(shop_district, rng.random(n_shops))
    shop_city = district_city[shop_district]
    shop_w = zipf_weights(n_shops, 1.0, rng)
    shop_q = standardize(0.5 * standardize(np.log(shop_w)) + rng.standard_normal(n_shops))
    shop_cell = aoi_cell[shop_aoi]
    shop_hash12 = geohash_codes(n_shops, 6, rng, distinct=True, prefix=cell_hash[shop_cell])
    cat_w = zipf_weights(NUM_CATEGORIES, 0.8, rng)
    cat_w /= cat_w.sum()
    shop_main_cat = rng.choice(NUM_CATEGORIES, n_shops, p=cat_w)
    n_brands = max(5, n_shops // 50)
    brand_w = zipf_weights(n_brands, 1.0, rng)
    shop_brand = np.where(rng.random(n_shops) < 0.3,
                          rng.choice(n_brands, n_shops, p=brand_w / brand_w.sum()),
                          n_brands + np.arange(n_shops))
    # items: one per shop first, the rest favouring popular shops; Zipf within a shop.
    item_shop_p = np.sqrt(shop_w) / np.sqrt(shop_w).sum()
    item_shop = np.concatenate([np.arange(n_shops),
                                rng.choice(n_shops, n_items - n_shops, p=item_shop_p)])
    item_shop.sort()
    item_w_local = (group_rank(item_shop) + 1.0) ** -1.1
    item_w = shop_w[item_shop] * item_w_local / np.bincount(item_shop, weights=item_w_local)[item_shop]
    item_q = standardize(0.5 * standardize(np.log(item_w_local)) + rng.standard_normal(n_items))
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
    cat_gender = standardize(rng.standard_normal(NUM_CATEGORIES), cat_w)
    tt_w = np.bincount(HOUR_TIME_TYPE, weights=HOUR_TRAFFIC, minlength=len(TIME_TYPES))
    tt_w /= tt_w.sum()
    meal = rng.standard_normal((NUM_CATEGORIES, len(TIME_TYPES)))
    meal -= (meal * tt_w).sum(1, keepdims=True)
    meal -= (meal * cat_w[:, None]).sum(0, keepdims=True)
    meal /= math.sqrt((meal**2 * cat_w[:, None] * tt_w).sum())
    hour_p = HOUR_TRAFFIC / HOUR_TRAFFIC.sum()
    hour_eff = standardize(np.log(HOUR_TRAFFIC) + 0.5 * rng.standard_normal(24), hour_p)
    weekday_eff = rng.standard_normal(8)
    weekday_eff = (weekday_eff - weekday_eff[weekdays].mean()) / (weekday_eff[weekdays].std() or 1.0)
    item_city = shop_city[item_shop]
    return World(
        n_cities=n_cities, n_districts=n_districts, n_aois=n_aois, n_cells=len(cell_values),
        n_shops=n_shops, n_items=n_items, n_brands=n_brands, city_w=city_w,
        district_city=district_city, district_w=district_w, shop_district=shop_district,
        shop_aoi=shop_aoi, shop_city=shop_city, shop_w=shop_w, shop_q=shop_q,
        shop_brand=shop_brand, shop_cell=shop_cell, shop_hash12=shop_hash12,
        cell_district=cell_district, cell_hash=cell_hash, item_shop=item_shop, item_q=item_q,
        item_cat=item_cat, item_food=item_food, item_z=item_z, item_price=item_price,
        item_rank=item_rank, cat_gender=cat_gender, meal=meal, hour_p=hour_p,
        hour_eff=hour_eff, weekday_eff=weekday_eff,
        shop_in_city=GroupedSampler(shop_city, shop_w, n_cities),
        item_in_shop=GroupedSampler(item_shop, item_w_local, n_shops),
        item_in_citycat=GroupedSampler(item_city * NUM_CATEGORIES + item_cat, item_w,
                                       n_cities * NUM_CATEGORIES),
    )


def build_users(n: int, world: World, target_ctr: float, rng: np.random.Generator, *,
                impressions_per_user: float = DEFAULT_IMPRESSIONS_PER_USER,
                impressions_sigma: float = DEFAULT_IMPRESSIONS_SIGMA,
                max_impressions_per_user: int = MAX_IMPRESSIONS_PER_USER) -> Users:
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
    ctr_30 = np.round(sigmoid(logit(target_ctr) + 0.7 * propensity
                               + 0.7 * rng.standard_normal(n_users)), 4)
    total_amt_30 = np.round(ord_30 * avg_price * rng.lognormal(0.0, 0.2, n_users), 2)
    vip = (rng.random(n_users) < sigmoid(-2.5 + 0.6 * np.log1p(ord_30))).astype(np.int64)
    district_cells = GroupedSampler(world.cell_district, np.ones(world.n_cells), world.n_districts)
    cell = district_cells.sample(district, rng.random(n_users))
    return Users(
        counts=counts, city=world.district_city[district], gender=gender, propensity=propensity,
        price_z=price_z, avg_price=avg_price, ord_30=ord_30, ctr_30=ctr_30,
        total_amt_30=total_amt_30, vip=vip,
        hash12=geohash_codes(n_users, 6, rng, prefix=world.cell_hash[cell]),
    )
