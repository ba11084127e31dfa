"""The synthetic calendar: day names, hours and meal times, and when each impression happens."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from pipelines.synthetic.sampling import group_rank

MINUTES_PER_DAY = 1440
TIME_TYPES = ("breakfast", "lunch", "afternoon", "dinner", "night")
# A user's impressions of one day must fit into its 1,440 minutes (one a minute at most);
# sessions fall on random days, so allow at most this many per day of the window.
MAX_IMPRESSIONS_PER_USER_PER_DAY = 300
# Relative traffic per hour of the day (lunch and dinner peaks).
HOUR_TRAFFIC = np.array(
    [0.5, 0.3, 0.2, 0.1, 0.1, 0.2, 0.6, 1.5, 2.0, 2.2, 4.0, 7.0,
     5.5, 2.5, 1.8, 2.0, 3.5, 6.0, 5.5, 3.0, 2.2, 2.0, 1.5, 1.0]
)
# time_type index of each hour: breakfast 5-9, lunch 10-13, afternoon 14-16, dinner 17-20, night 21-4.
HOUR_TIME_TYPE = np.array([4] * 5 + [0] * 5 + [1] * 4 + [2] * 3 + [3] * 4 + [4] * 3)
_DAY_RE = re.compile(r"^D(\d+)_(\d+)$")


def parse_day(name: str) -> int:
    """Weekday (1..7) of a raw day file name ``D<weekday>_<k>``."""
    m = _DAY_RE.match(name)
    if not m or not 1 <= int(m.group(1)) <= 7:
        raise ValueError(f"days: a day name must look like 'D<weekday 1-7>_<k>', got {name!r}.")
    return int(m.group(1))


def check_days(days: Sequence[str]) -> tuple[str, ...]:
    """``days`` as a tuple, after checking the names and that their weekdays increase."""
    if isinstance(days, str) or not days:
        raise ValueError(f"days must be a non-empty sequence of day names, got {days!r}.")
    days = tuple(days)
    weekdays = [parse_day(d) for d in days]
    if any(b <= a for a, b in zip(weekdays[:-1], weekdays[1:], strict=True)):
        raise ValueError(f"days must have strictly increasing weekdays, got {days!r}.")
    return days


def impression_times(counts: np.ndarray, num_days: int, rng: np.random.Generator,
                     arrival: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sessions at meal-peaked hours; no two impressions of a user at the same minute.

    ``arrival`` (day index per user, or None: every user from the first day) keeps each
    user's sessions on the days from the user's arrival on (the same draws either way).

    Returns:
        (user, day index, minute of the day) of every impression, in user-major order
        sorted by time within a user.
    """
    n, n_users = int(counts.sum()), len(counts)
    row_user = np.repeat(np.arange(n_users), counts)
    n_sess = 1 + rng.binomial(counts - 1, 0.3)
    sess_offset = np.concatenate([[0], np.cumsum(n_sess)[:-1]])
    row_sess = sess_offset[row_user] + (rng.random(n) * n_sess[row_user]).astype(np.int64)
    total_sess = int(n_sess.sum())
    sess_day = rng.integers(0, num_days, total_sess)
    if arrival is not None:  # the same uniform draw, squeezed onto the days after arrival
        first = np.repeat(np.asarray(arrival, np.int64), n_sess)
        sess_day = first + sess_day * (num_days - first) // num_days
    hour_p = HOUR_TRAFFIC / HOUR_TRAFFIC.sum()
    sess_minute = rng.choice(24, total_sess, p=hour_p) * 60 + rng.integers(0, 60, total_sess)
    tiebreak = rng.random(n)
    order = np.lexsort((tiebreak, row_sess))
    row_sess = row_sess[order]
    # minutes between consecutive impressions of a session: 1, 2, 3... (geometric, mean 2)
    sess_first = np.r_[True, row_sess[1:] != row_sess[:-1]]
    gaps = np.where(sess_first, 0, rng.geometric(0.5, n))
    within = np.cumsum(gaps)
    within = within - np.maximum.accumulate(np.where(sess_first, within, 0))
    minute = sess_minute[row_sess] + within
    row_day = sess_day[row_sess]
    row_user = row_user[order]
    order = np.lexsort((tiebreak[order], minute, row_day, row_user))
    row_user, row_day, minute = row_user[order], row_day[order], minute[order]
    # Resolve equal minutes of a user's day by pushing later impressions forward, then
    # shift a day's impressions back if the last one ran past midnight.
    group = row_user * num_days + row_day
    rank = group_rank(group)
    big = 10 * MINUTES_PER_DAY
    fixed = np.maximum.accumulate(group * big + minute - rank) - group * big + rank
    overflow = np.zeros(n_users * num_days, np.int64)
    np.maximum.at(overflow, group, fixed - (MINUTES_PER_DAY - 1))
    # A very busy day (hundreds of impressions) may then start before midnight: its
    # earliest impressions move to minutes 0, 1, 2... (a no-op on every other day, whose
    # strictly increasing minutes from >= 0 are >= their rank).
    minute = np.maximum(fixed - overflow[group], rank)
    if len(minute) and minute.max() >= MINUTES_PER_DAY:
        raise RuntimeError("Internal error: a user's impressions of one day do not fit into the day.")
    return row_user, row_day, minute
