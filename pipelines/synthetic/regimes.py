"""Named generator settings (:data:`REGIMES`): the knobs and effect strengths of a family of datasets."""

from __future__ import annotations

from typing import Any

from pipelines.synthetic.effects import EFFECT_NAMES
from pipelines.synthetic.simulation import (
    DEFAULT_NUM_ROWS,
    DEFAULT_TARGET_CTR,
    DEFAULT_UNKNOWN_FRAC,
)
from pipelines.synthetic.world import (
    DEFAULT_CATALOG_SCALE,
    DEFAULT_IMPRESSIONS_PER_USER,
    DEFAULT_IMPRESSIONS_SIGMA,
    MAX_IMPRESSIONS_PER_USER,
)

# Knobs of the world and the users that simulate() takes, with their defaults.
WORLD_KNOBS: dict[str, Any] = {
    "impressions_per_user": DEFAULT_IMPRESSIONS_PER_USER,
    "impressions_sigma": DEFAULT_IMPRESSIONS_SIGMA,
    "max_impressions_per_user": MAX_IMPRESSIONS_PER_USER,
    "catalog_scale": DEFAULT_CATALOG_SCALE,
    # drift over the days (0: none): the share of users who arrive after the first day,
    # the daily share of items relisted under a new id, the daily step of item appeal
    "user_arrival": 0.0,
    "item_relist": 0.0,
    "appeal_drift": 0.0,
}
KNOB_DEFAULTS: dict[str, Any] = {
    "num_rows": DEFAULT_NUM_ROWS,
    "target_ctr": DEFAULT_TARGET_CTR,
    "unknown_frac": DEFAULT_UNKNOWN_FRAC,
    **WORLD_KNOBS,
}
REGIME_KEYS = tuple(KNOB_DEFAULTS) + EFFECT_NAMES
"""Keys a regime may set: the generator knobs and the effect strengths."""

REGIMES: dict[str, dict[str, Any]] = {
    "default": dict(KNOB_DEFAULTS),
    "eleme_scale": {**KNOB_DEFAULTS, "num_rows": 1_200_000},
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
    return {**KNOB_DEFAULTS, **(REGIMES[regime] if regime else {}), **overrides}
