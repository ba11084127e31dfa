"""The click model: logit terms, history term, calibrated intercept and the sampled clicks.

The package docstring lists the terms; every strength is a field of
:class:`~pipelines.synthetic.effects.Effects`.
"""

from __future__ import annotations

import numpy as np

from pipelines.synthetic.effects import Effects
from pipelines.synthetic.sampling import logit, sigmoid
from pipelines.synthetic.world import Users, World

# Intercept refinements under click feedback (each re-runs the click model).
_PLAIN_STEPS = 8
_CALIBRATION_STEPS = 20


def static_terms(e: Effects, w: World, u: Users, row_user: np.ndarray, item: np.ndarray,
                 hours: np.ndarray, time_type: np.ndarray, weekday: np.ndarray,
                 noise: np.ndarray) -> dict[str, np.ndarray]:
    """Every logit term but the history's, per impression (``noise``: standard normal draws)."""
    shop = w.item_shop[item]
    cat = w.item_cat[item]
    return {
        "item_quality": e.item_quality * w.item_q[item],
        "shop_quality": e.shop_quality * w.shop_q[shop],
        "user_activity": e.user_activity * u.propensity[row_user],
        "super_vip": e.super_vip * (u.vip[row_user] - u.vip[row_user].mean()),
        "hour": e.hour * w.hour_eff[hours],
        "weekday": e.weekday * w.weekday_eff[weekday],
        "gender_category": e.gender_category * (2 * u.gender[row_user] - 1) * w.cat_gender[cat],
        "price_match": e.price_match * u.price_z[row_user] * w.item_z[item],
        "meal_category": e.meal_category * w.meal[cat, time_type],
        "noise": e.noise * noise,
    }


def history_weights(shop: np.ndarray, cat: np.ndarray, times: np.ndarray, pos: np.ndarray,
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


def calibrated_clicks(
    static: np.ndarray, hist_w: np.ndarray, steps: list[np.ndarray], e: Effects,
    target_ctr: float, u_label: np.ndarray,
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
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
            prob = sigmoid(b + static[rows] + cap * np.tanh(rel[rows] / cap))
            y[rows] = u_label[rows] < prob
        hist = cap * np.tanh(rel / cap)
        return hist, sigmoid(b + static + hist), y

    offset = static + cap * np.tanh(seen * (1 + e.history_click_boost * target_ctr) / cap)
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if sigmoid(mid + offset).mean() < target_ctr:
            lo = mid
        else:
            hi = mid
    b = 0.5 * (lo + hi)
    hist, prob, y = run(b)
    if e.history_click_boost > 0 and seen.any():
        # Steps in logit space: move b by the logit gap; where that has not converged
        # after _PLAIN_STEPS (strong click feedback at a high CTR makes the slope exceed
        # 1, so plain steps overshoot), by the gap over the measured slope (secant).
        goal, last = logit(target_ctr), None
        for step in range(_CALIBRATION_STEPS):
            mean = float(prob.mean())
            if abs(mean - target_ctr) < 1e-4 * target_ctr:
                break
            slope = 1.0
            if step >= _PLAIN_STEPS and b != last[0]:
                slope = float(np.clip((logit(mean) - last[1]) / (b - last[0]), 0.5, 4.0))
            last = (b, logit(mean))
            b += (goal - logit(mean)) / slope
            hist, prob, y = run(b)
    return b, hist, prob, y
