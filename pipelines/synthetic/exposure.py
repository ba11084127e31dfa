"""Which item each impression shows: a revisit, a category seen before, or a popularity draw."""

from __future__ import annotations

import numpy as np

from pipelines.synthetic.world import NUM_CATEGORIES, World

# Share of impressions drawn from the history: a shop seen before, a category seen before.
REVISIT_PROB = 0.3
SAME_CATEGORY_PROB = 0.2
# Share of "explore" impressions in a city other than the user's own.
TRAVEL_PROB = 0.02


def by_position(pos: np.ndarray) -> list[np.ndarray]:
    """Impressions grouped by their index within the user: ``[rows with pos == k]``."""
    order = np.argsort(pos, kind="stable")
    bounds = np.searchsorted(pos[order], np.arange(int(pos.max()) + 2))
    return [order[bounds[k]:bounds[k + 1]] for k in range(int(pos.max()) + 1)]


def expose(world: World, user_city: np.ndarray, row_user: np.ndarray,
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
