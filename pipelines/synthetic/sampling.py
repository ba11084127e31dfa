"""Vectorised draws and transforms the synthetic world is built from (NumPy only)."""

from __future__ import annotations

import math

import numpy as np

_GEOHASH_ALPHABET = np.array(list("0123456789bcdefghjkmnpqrstuvwxyz"))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function, elementwise."""
    return 1.0 / (1.0 + np.exp(-x))


def logit(p: float) -> float:
    """The inverse of :func:`sigmoid` for a probability in (0, 1)."""
    return math.log(p / (1.0 - p))


def standardize(x: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """``x`` centred and scaled to unit (weighted) standard deviation (only centred if constant)."""
    mean = np.average(x, weights=weights)
    std = math.sqrt(np.average((x - mean) ** 2, weights=weights))
    return (x - mean) / std if std > 0 else x - mean


def zipf_weights(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Weights ``rank ** -exponent`` over a random permutation of ``n`` entities."""
    return (rng.permutation(n) + 1.0) ** -exponent


def group_rank(group: np.ndarray) -> np.ndarray:
    """Index of every element within its run of equal ``group`` values (sorted input)."""
    n = len(group)
    if n == 0:
        return np.zeros(0, np.int64)
    new = np.ones(n, bool)
    new[1:] = group[1:] != group[:-1]
    starts = np.flatnonzero(new)
    run_start = np.repeat(starts, np.diff(np.append(starts, n)))
    return np.arange(n) - run_start


class GroupedSampler:
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


def geohash_codes(n: int, length: int, rng: np.random.Generator,
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


def distinct_ids(n: int, low: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct positive integer ids that look arbitrary (sparse in [low, low + 10n))."""
    picks = np.sort(rng.choice(10 * n, size=n, replace=False))
    return low + rng.permutation(picks)
