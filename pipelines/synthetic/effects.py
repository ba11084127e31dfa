"""Strengths of the planted click effects (:class:`Effects`) and the names of the logit terms."""

from __future__ import annotations

import dataclasses
import math

import numpy as np


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
# The terms of one field each (an id's or a context value's own effect): what a linear
# model on one-hot fields can fit; the crosses and the history are what it cannot.
MAIN_EFFECTS = ("item_quality", "shop_quality", "user_activity", "super_vip", "hour", "weekday")


EFFECT_NAMES = tuple(f.name for f in dataclasses.fields(Effects))
"""Names of the effect strengths, the fields of :class:`Effects`."""
