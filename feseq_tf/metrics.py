"""Exact evaluation metrics over a whole split (not streaming approximations).

* AUC (paper eq. 14-15): the probability that a random positive scores above a random
  negative, ties counting one half; computed from average ranks in O(n log n).
* gAUC: per-user AUC weighted by the user's number of impressions, over users that
  have both a click and a non-click.
* logloss: binary cross-entropy with probabilities clipped to [eps, 1 - eps].
"""

from __future__ import annotations

import numpy as np

EPS = 1e-7


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(f"labels and scores differ in length: {labels.shape} vs {scores.shape}.")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"scores contain {np.count_nonzero(~np.isfinite(scores))} non-finite values.")
    if not np.all((labels == 0) | (labels == 1)):
        raise ValueError("labels must be 0 or 1.")
    return labels.astype(np.int8), scores


def _average_ranks(scores: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    n = len(scores)
    # Start index of each run of equal scores.
    new_run = np.empty(n, dtype=bool)
    new_run[:1] = True
    new_run[1:] = sorted_scores[1:] != sorted_scores[:-1]
    run_id = np.cumsum(new_run) - 1
    starts = np.flatnonzero(new_run)
    ends = np.append(starts[1:], n)
    avg = (starts + ends + 1) / 2.0  # mean of 1-based ranks start+1..end
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = avg[run_id]
    return ranks


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Exact ROC AUC; NaN when only one class is present."""
    labels, scores = _check(labels, scores)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(scores)
    return float((ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def group_auc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> float:
    """Impression-weighted mean of per-group AUC over groups with both classes."""
    labels, scores = _check(labels, scores)
    groups = np.asarray(groups).reshape(-1)
    if groups.shape != labels.shape:
        raise ValueError(f"groups and labels differ in length: {groups.shape} vs {labels.shape}.")
    if len(labels) == 0:
        return float("nan")
    # Sort by (group, score) and rank within groups, ties averaged within a group.
    order = np.lexsort((scores, groups))
    g, s, y = groups[order], scores[order], labels[order]
    n = len(g)
    idx = np.arange(n)
    new_group = np.empty(n, dtype=bool)
    new_group[0] = True
    new_group[1:] = g[1:] != g[:-1]
    new_run = new_group.copy()
    new_run[1:] |= s[1:] != s[:-1]
    run_start = np.maximum.accumulate(np.where(new_run, idx, 0))
    run_id = np.cumsum(new_run) - 1
    run_end = np.append(np.flatnonzero(new_run)[1:], n)  # exclusive end per run
    group_start = np.maximum.accumulate(np.where(new_group, idx, 0))
    # Average 1-based rank within the group.
    rank = (run_start + run_end[run_id] + 1) / 2.0 - group_start
    group_id = np.cumsum(new_group) - 1
    n_groups = group_id[-1] + 1
    size = np.bincount(group_id, minlength=n_groups).astype(np.float64)
    pos = np.bincount(group_id, weights=y, minlength=n_groups)
    neg = size - pos
    pos_rank_sum = np.bincount(group_id, weights=rank * y, minlength=n_groups)
    valid = (pos > 0) & (neg > 0)
    if not np.any(valid):
        return float("nan")
    per_group = (pos_rank_sum[valid] - pos[valid] * (pos[valid] + 1) / 2.0) / (pos[valid] * neg[valid])
    return float(np.sum(per_group * size[valid]) / np.sum(size[valid]))


def logloss(labels: np.ndarray, probs: np.ndarray) -> float:
    labels, probs = _check(labels, probs)
    p = np.clip(probs, EPS, 1.0 - EPS)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1.0 - p)))


def captured_lift(model_auc: float, oracle_auc: float) -> float:
    """(AUC_model - 0.5) / (AUC_oracle - 0.5): the share of the attainable lift captured."""
    if not oracle_auc > 0.5:
        return float("nan")
    return float((model_auc - 0.5) / (oracle_auc - 0.5))


def evaluate_predictions(
    labels: np.ndarray,
    probs: np.ndarray,
    groups: np.ndarray | None = None,
    oracle: np.ndarray | None = None,
) -> dict[str, float]:
    """All metrics of one split, plus the oracle's AUC and the captured lift when known."""
    out = {
        "auc": auc(labels, probs),
        "logloss": logloss(labels, probs),
        "samples": int(np.asarray(labels).size),
        "ctr": float(np.mean(labels)) if np.asarray(labels).size else float("nan"),
    }
    if groups is not None:
        out["gauc"] = group_auc(labels, probs, groups)
    if oracle is not None:
        out["oracle_auc"] = auc(labels, oracle)
        out["oracle_logloss"] = logloss(labels, oracle)
        out["captured_lift"] = captured_lift(out["auc"], out["oracle_auc"])
    return out
