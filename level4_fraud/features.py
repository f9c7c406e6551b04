"""Point-in-time transaction features: the Handbook's 15 baseline features and more, vectorised.

Every feature of a transaction is computed from that transaction and the ones before it in time
order (``TX_DATETIME`` then ``TRANSACTION_ID``); nothing after it, and no label that was not yet
available when it happened:

* customer (card) windows, as the Handbook: number and mean amount of the card's transactions in
  ``(t - w days, t]``, the current one included, later ones (even at the same second) excluded;
* terminal windows, as the Handbook, over the *delayed* window ``(t - delay - w, t - delay]``: the
  number of transactions and the risk (frauds / labelled transactions; 0 when none is labelled).
  A label that is in the transactions frame is taken to be known `delay_days` after its
  transaction (the Handbook's convention); a label that comes only from the late-labels file is
  used only from its ``LABEL_AVAILABLE_FROM`` on; unlabelled transactions count in ``NB_TX`` but
  not in the risk;
* the terminal's fraud recency, over the longest delayed window with the same label
  availability: days since its latest and since its earliest *known* fraud in
  ``(t - delay - W, t - delay]`` (``delay + W`` when there is none). Together they tell an
  ongoing compromise (a fraud a week ago and others weeks before: the terminal is still being
  used) from one that has ended (the latest known fraud is old), which the windows' fraud rates
  alone do not;
* request-time features (amount against the card's mean, hour, seconds since the card's last
  transaction, distance from home when the customer and terminal tables are given);
* the card's spending habit: its transactions in ``(t - lag - w, t - lag]`` (two to six weeks
  back, by default): this amount's ratio and z-score against them. The 30-day
  mean includes a stolen card's own spree, which drags it up until the spree looks normal; a
  habit that ends ``lag`` days back is the holder's own spending for a fraud younger than that.
  With it, the number of the card's payments since then (``(t - lag, t)``, current excluded)
  above `HABIT_LARGE` times the habit's mean: a spree already under way;
* richer-field features when the simulator's columns exist (channel flags, first use of a device,
  country or terminal by the card, bursts of small amounts in the last hour, foreign country).

Windows are counted with one sort per entity and binary searches on (entity, time) keys, so 1.75 M
transactions take seconds, not the minutes of a per-entity pandas ``rolling``.

`daily_snapshots` gives the same card and terminal aggregates as of each midnight, with an
``event_timestamp``, for Feast's batch sources.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from level4_fraud import schema

DEFAULT_WINDOWS: tuple[int, ...] = (1, 7, 30)
DEFAULT_DELAY_DAYS = 7
SMALL_AMOUNT = 5.0  # "small" for card-testing bursts
SECONDS_CAP = 30 * 86_400  # SECONDS_SINCE_LAST_TX of a card's first transaction, and its cap
# The card's spending habit: `HABIT_DAYS` days of transactions ending `HABIT_LAG_DAYS`
# days before the current one. The lag is longer than most sprees last before the card is blocked.
HABIT_LAG_DAYS = 14
HABIT_DAYS = 30
HABIT_MIN_STD = 1.0  # floor of the habit's spread, so a card that always pays 9.99 gives z finite
HABIT_LARGE = 3.0  # a payment above this many times the card's habit mean counts as large
EVENT_TIMESTAMP = "event_timestamp"

_MS_PER_DAY = 86_400_000
_MS_PER_HOUR = 3_600_000


def customer_features(windows: Sequence[int] = DEFAULT_WINDOWS) -> list[str]:
    """``CUSTOMER_ID_NB_TX_{w}DAY_WINDOW, CUSTOMER_ID_AVG_AMOUNT_{w}DAY_WINDOW`` per window."""
    out: list[str] = []
    for w in windows:
        out += [f"CUSTOMER_ID_NB_TX_{w}DAY_WINDOW", f"CUSTOMER_ID_AVG_AMOUNT_{w}DAY_WINDOW"]
    return out


def terminal_features(windows: Sequence[int] = DEFAULT_WINDOWS) -> list[str]:
    """``TERMINAL_ID_NB_TX_{w}DAY_WINDOW, TERMINAL_ID_RISK_{w}DAY_WINDOW`` per window."""
    out: list[str] = []
    for w in windows:
        out += [f"TERMINAL_ID_NB_TX_{w}DAY_WINDOW", f"TERMINAL_ID_RISK_{w}DAY_WINDOW"]
    return out


# The Handbook's 15 input features, in its order.
FEATURES_BASELINE: list[str] = [
    schema.TX_AMOUNT,
    "TX_DURING_WEEKEND",
    "TX_DURING_NIGHT",
    *customer_features(),
    *terminal_features(),
]
REQUEST_FEATURES: list[str] = ["AMOUNT_TO_CUSTOMER_MEAN", "SECONDS_SINCE_LAST_TX", "TX_HOUR"]
# The terminal's fraud recency (days since its latest, and since its earliest, known fraud in the
# longest delayed window). Not in the Handbook's 15: the full feature set only.
TERMINAL_RECENCY_FEATURES: list[str] = [
    "TERMINAL_ID_DAYS_SINCE_LAST_FRAUD",
    "TERMINAL_ID_DAYS_SINCE_FIRST_FRAUD",
]
# The snapshots' columns from which serving computes them at request time (UTC epoch seconds of
# the fraud transactions; NaN when the window holds no known fraud).
TERMINAL_FRAUD_TIMES: list[str] = ["TERMINAL_ID_LAST_FRAUD_EPOCH_S", "TERMINAL_ID_FIRST_FRAUD_EPOCH_S"]
# The habit window's own count is not an input: it only grows while a card's history fills the
# window (a new card, or the first `lag + days` days of data), which drift monitoring flags.
HABIT_FEATURES: list[str] = [
    "AMOUNT_TO_CUSTOMER_HABIT",
    "AMOUNT_ZSCORE_CUSTOMER_HABIT",
    "CUSTOMER_ID_NB_LARGE_SINCE_HABIT",
]
DISTANCE_FEATURE = "DISTANCE_FROM_HOME"
RICH_FEATURES: list[str] = [
    "IS_ECOM",
    "IS_ATM",
    "NEW_DEVICE",
    "NEW_COUNTRY",
    "NEW_TERMINAL",
    "CUSTOMER_ID_NB_TX_1H_WINDOW",
    "SMALL_AMOUNT_BURST_1H",
]
FOREIGN_FEATURE = "FOREIGN_COUNTRY"
# Raw categorical columns a model may embed (kept when `categoricals=True`).
CATEGORICAL_FEATURES: list[str] = [schema.MERCHANT_CATEGORY, schema.CHANNEL, schema.COUNTRY, schema.CURRENCY]


def feature_names(
    windows: Sequence[int] = DEFAULT_WINDOWS,
    *,
    habit: bool = False,
    distance: bool = False,
    rich: bool = False,
    foreign: bool = False,
    categoricals: bool = False,
) -> list[str]:
    """The columns `transaction_features` returns for these options, in its order."""
    names = [
        schema.TX_AMOUNT,
        "TX_DURING_WEEKEND",
        "TX_DURING_NIGHT",
        *customer_features(windows),
        *terminal_features(windows),
        *REQUEST_FEATURES,
        *TERMINAL_RECENCY_FEATURES,
    ]
    if habit:
        names += HABIT_FEATURES
    if distance:
        names.append(DISTANCE_FEATURE)
    if rich:
        names += RICH_FEATURES
    if foreign:
        names.append(FOREIGN_FEATURE)
    if categoricals:
        names += CATEGORICAL_FEATURES
    return names


def recency_fill(windows: Sequence[int] = DEFAULT_WINDOWS, delay_days: int = DEFAULT_DELAY_DAYS) -> float:
    """The `TERMINAL_RECENCY_FEATURES` value of a terminal with no known fraud in its window.

    ``delay + W`` days: just past the oldest a fraud in the window can be, so "none" reads as
    "older than anything known", and trees need no special value to split it off.
    """
    return float(max(windows) + delay_days)


def recency_days(
    now_s: np.ndarray | float,
    last_s: np.ndarray | float,
    first_s: np.ndarray | float,
    fill: float,
) -> dict[str, np.ndarray]:
    """The `TERMINAL_RECENCY_FEATURES` at `now_s` from the times of the known frauds (serving).

    Args:
        now_s: The transactions' times, epoch seconds.
        last_s: The latest known fraud's time (NaN: none), epoch seconds.
        first_s: The earliest known fraud's time (NaN: none), epoch seconds.
        fill: `recency_fill`: the value without a known fraud, and the cap of the others (a
            fraud read from a midnight snapshot may have left the window since).

    Returns:
        Both features as float arrays, in `TERMINAL_RECENCY_FEATURES` order.
    """
    now = np.asarray(now_s, dtype=np.float64)
    out = {}
    for name, when in zip(TERMINAL_RECENCY_FEATURES, (last_s, first_s), strict=True):
        days = (now - np.asarray(when, dtype=np.float64)) / 86_400.0
        out[name] = np.where(np.isfinite(days), np.minimum(np.maximum(days, 0.0), fill), fill)
    return out


# ----------------------------------------------------------------------------------------------
# Windowed counts on (entity, time) keys
# ----------------------------------------------------------------------------------------------


class _Keyed:
    """Rows sorted by (entity, time, row order), searchable by (entity, time) keys.

    Times are integer milliseconds from a common origin; an entity's keys are
    ``entity_rank * span + time``, so one binary search finds a window of one entity.
    """

    def __init__(self, entity_rank: np.ndarray, t_ms: np.ndarray, span: int) -> None:
        self.span = span
        key = entity_rank.astype(np.int64) * span + t_ms
        # Row order breaks ties (the frame is already in time order), so positions follow time.
        self.order = np.argsort(key, kind="stable")
        self.key = key[self.order]
        self.position = np.empty(len(key), dtype=np.int64)
        self.position[self.order] = np.arange(len(key))

    def cumsum(self, values: np.ndarray) -> np.ndarray:
        """Prefix sums of `values` (given in row order) in sorted order, with a leading 0."""
        out = np.zeros(len(values) + 1, dtype=np.float64)
        np.cumsum(values[self.order], out=out[1:])
        return out

    def upto(self, entity_rank: np.ndarray, t_ms: np.ndarray) -> np.ndarray:
        """Number of sorted rows with key <= (entity, t): an index into the prefix sums."""
        return np.searchsorted(self.key, entity_rank.astype(np.int64) * self.span + t_ms, side="right")


def habit_values(
    amount: np.ndarray | float, n: np.ndarray | float, total: np.ndarray | float, total_sq: np.ndarray | float
) -> dict[str, np.ndarray]:
    """The habit features of amounts from the sums over each card's habit-window transactions.

    Args:
        amount: The current transactions' amounts.
        n: Number of the card's transactions in its habit window.
        total: Their amounts' sum.
        total_sq: Their squared amounts' sum.

    Returns:
        The first two `HABIT_FEATURES` as arrays: the amount over the habit's mean (1 when the
        window is empty or its mean is 0: no evidence either way) and the z-score against the
        habit's mean and sample spread, floored at `HABIT_MIN_STD` (0 with fewer than two).
    """
    amount, n = np.asarray(amount, dtype=np.float64), np.asarray(n, dtype=np.float64)
    total, total_sq = np.asarray(total, dtype=np.float64), np.asarray(total_sq, dtype=np.float64)
    safe_n = np.maximum(n, 1.0)
    mean = total / safe_n
    var = np.maximum(total_sq - total * mean, 0.0) / np.maximum(n - 1.0, 1.0)
    ratio = np.where((n > 0) & (mean > 0), amount / np.where(mean > 0, mean, 1.0), 1.0)
    z = np.where(n > 1, (amount - mean) / np.maximum(np.sqrt(var), HABIT_MIN_STD), 0.0)
    return dict(zip(HABIT_FEATURES[:2], (ratio, z), strict=True))


def habit_large_limit(n: np.ndarray | float, total: np.ndarray | float) -> np.ndarray:
    """The amount above which a payment counts as large for ``CUSTOMER_ID_NB_LARGE_SINCE_HABIT``:
    `HABIT_LARGE` times the habit's mean (infinite without a habit, or with a mean of 0).

    Args:
        n: Number of the card's transactions in its habit window.
        total: Their amounts' sum.
    """
    n, total = np.asarray(n, dtype=np.float64), np.asarray(total, dtype=np.float64)
    mean = total / np.maximum(n, 1.0)
    return np.where((n > 0) & (mean > 0), HABIT_LARGE * mean, np.inf)


def _large_since_habit(ck: _Keyed, amount_s: np.ndarray, limit: np.ndarray, lag_ms: int) -> np.ndarray:
    """Per sorted row: the card's earlier payments in ``(t - lag, t)`` above this row's `limit`
    (`habit_large_limit`). One pass per look-back step, over the rows whose window still reaches
    that far back (a few dozen passes: a card's payments in `lag` days)."""
    n = len(amount_s)
    count = np.zeros(n, dtype=np.int64)
    active = np.arange(n)
    k = 1
    while active.size:
        active = active[active >= k]
        prev = active - k
        # Keys are (card, time): a previous row of another card is always more than `lag` away.
        inside = ck.key[prev] > ck.key[active] - lag_ms
        active, prev = active[inside], prev[inside]
        count[active] += amount_s[prev] > limit[active]
        k += 1
    return count


def _scatter(values_sorted: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Values computed in a sorted order, put back in row order."""
    out = np.empty_like(values_sorted)
    out[order] = values_sorted
    return out


def _time_order(tx: pd.DataFrame) -> np.ndarray | None:
    """Positions of `tx` in time order, or None when it is already in time order."""
    t = tx[schema.TX_DATETIME].to_numpy()
    ids = tx[schema.TRANSACTION_ID].to_numpy()
    if len(t) < 2:
        return None
    dt = t[1:] - t[:-1]
    zero = np.timedelta64(0, "ns")
    if (dt > zero).all() or ((dt >= zero).all() and ((dt > zero) | (ids[1:] > ids[:-1])).all()):
        return None
    return np.lexsort((ids, t))


def _first_use(entity: np.ndarray, value: np.ndarray) -> np.ndarray:
    """True where (entity, value) appears for the first time (rows in time order)."""
    v = value.astype(np.int64)
    v = v - v.min()
    # np.unique's return_index is the first occurrence: rows are in time order.
    _, first = np.unique(entity.astype(np.int64) * (int(v.max()) + 1) + v, return_index=True)
    out = np.zeros(len(entity), dtype=bool)
    out[first] = True
    return out


def _time_ms(ts: pd.Series, origin: pd.Timestamp) -> np.ndarray:
    return ((ts - origin) // pd.Timedelta(milliseconds=1)).to_numpy(dtype=np.int64)


def _ranks(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    codes, uniques = pd.factorize(values, sort=True)
    return codes.astype(np.int64), pd.Index(uniques)


def _check_span(n_entities: int, span: int) -> None:
    if n_entities * span >= 2**62:
        raise ValueError("time range too long for millisecond keys")


class _TerminalRisk:
    """Terminal counts and fraud risk over delayed windows, with label availability.

    ``NB_TX`` counts every transaction in ``(t - delay - w, t - delay]``. The risk counts the
    labels known at `t`: in-frame labels (known `delay` after their transaction, so always known
    inside the delayed window) and late labels known from their availability time. A late label
    that arrives after ``t_j + delay`` is missing from the windows of the queries ``t`` in
    ``[t_j + delay, min(available_j, t_j + delay + w))``; that interval is subtracted with two more
    binary searches, so the whole computation stays vectorised.
    """

    def __init__(
        self,
        term_rank: np.ndarray,
        t_ms: np.ndarray,
        label: np.ndarray,
        available_ms: np.ndarray,
        delay_ms: int,
        span: int,
    ) -> None:
        self.delay_ms = delay_ms
        self.span = span
        self.all = _Keyed(term_rank, t_ms, span)
        known = ~np.isnan(label)
        self.cum_lab = self.all.cumsum(known.astype(np.float64))
        self.cum_fraud = self.all.cumsum(np.where(known, label, 0.0))
        # Late labels that miss part of their delayed window.
        late = known & (available_ms > t_ms + delay_ms)
        self.late_rank = term_rank[late]
        self.late_start = t_ms[late] + delay_ms
        self.late_avail = available_ms[late]
        self.late_fraud = label[late]
        self._intervals: dict[int, tuple[_Keyed, _Keyed, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}

    def _late_intervals(
        self, w_days: int
    ) -> tuple[_Keyed, _Keyed, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if w_days not in self._intervals:
            start = self.late_start
            end = np.maximum(np.minimum(self.late_avail, start + w_days * _MS_PER_DAY), start)
            starts, ends = _Keyed(self.late_rank, start, self.span), _Keyed(self.late_rank, end, self.span)
            ones = np.ones(len(start))
            self._intervals[w_days] = (
                starts,
                ends,
                starts.cumsum(ones),
                ends.cumsum(ones),
                starts.cumsum(self.late_fraud),
                ends.cumsum(self.late_fraud),
            )
        return self._intervals[w_days]

    def query(self, term_rank: np.ndarray, t_ms: np.ndarray, w_days: int) -> tuple[np.ndarray, np.ndarray]:
        hi = t_ms - self.delay_ms
        lo = hi - w_days * _MS_PER_DAY
        a, b = self.all.upto(term_rank, lo), self.all.upto(term_rank, hi)
        nb_tx = b - a
        n_lab = self.cum_lab[b] - self.cum_lab[a]
        n_fraud = self.cum_fraud[b] - self.cum_fraud[a]
        if len(self.late_start):
            starts, ends, cs_s, cs_e, cf_s, cf_e = self._late_intervals(w_days)
            # intervals [start, end) containing t: those started by t minus those ended by t
            i_s, i_e = starts.upto(term_rank, t_ms), ends.upto(term_rank, t_ms)
            n_lab = n_lab - (cs_s[i_s] - cs_e[i_e])
            n_fraud = n_fraud - (cf_s[i_s] - cf_e[i_e])
        with np.errstate(invalid="ignore", divide="ignore"):
            risk = np.where(n_lab > 0, n_fraud / np.maximum(n_lab, 1), 0.0)
        return nb_tx.astype(np.int64), np.round(risk, 12)


class _FraudRecency:
    """Per (terminal, time): the latest and the earliest known fraud in the delayed window.

    A fraud j (time ``t_j``, label usable from ``a_j``) is in the window
    ``(t - delay - W, t - delay]`` of a query at ``t`` and known then exactly when
    ``t_j`` is in that window and ``s_j = max(t_j + delay, a_j) <= t`` (an in-frame label has
    ``a_j = t_j + delay``; a late one counts only from its availability, as in `_TerminalRisk`).
    Frauds are sorted by (terminal, time), so a window's frauds are one range found by two
    binary searches; its first (last) fraud with ``s_j <= t`` is found by a binary descent on a
    sparse table of range minima of ``s``: about ``log2(frauds)`` vectorised steps for all the
    queries at once, exact with late labels arriving in any order.
    """

    def __init__(
        self,
        term_rank: np.ndarray,
        t_ms: np.ndarray,
        label: np.ndarray,
        available_ms: np.ndarray,
        delay_ms: int,
        window_ms: int,
        span: int,
    ) -> None:
        self.delay_ms, self.window_ms = delay_ms, window_ms
        fraud = label == 1  # NaN (unknown) compares False
        self.keyed = _Keyed(term_rank[fraud], t_ms[fraud], span)
        order = self.keyed.order
        self.t = t_ms[fraud][order]
        known_from = np.maximum(t_ms[fraud] + delay_ms, available_ms[fraud])[order]
        # levels[k][i] = min(known_from[i : i + 2**k]), for every i where that slice is full.
        self.levels = [known_from]
        while (2 ** len(self.levels)) <= len(known_from):
            prev, half = self.levels[-1], 2 ** (len(self.levels) - 1)
            self.levels.append(np.minimum(prev[:-half], prev[half:]))

    def query(self, term_rank: np.ndarray, t_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Times (ms, float) of the latest and the earliest known fraud; NaN where none."""
        n_q = len(t_ms)
        if len(self.t) == 0:
            return np.full(n_q, np.nan), np.full(n_q, np.nan)
        hi_t = t_ms - self.delay_ms
        lo = self.keyed.upto(term_rank, hi_t - self.window_ms)
        hi = self.keyed.upto(term_rank, hi_t)
        first, end = lo.copy(), hi.copy()
        for k in range(len(self.levels) - 1, -1, -1):
            step, level = 1 << k, self.levels[k]
            # Skip a block of 2**k frauds when none of them is known yet at t: from the start
            # (the earliest known one) and from the end (the latest).
            ok = first + step <= hi
            skip = ok & (level[np.where(ok, first, 0)] > t_ms)
            first = np.where(skip, first + step, first)
            ok = end - step >= lo
            skip = ok & (level[np.where(ok, end - step, 0)] > t_ms)
            end = np.where(skip, end - step, end)
        last_t = np.where(end > lo, self.t[np.maximum(end - 1, 0)], np.nan)
        first_t = np.where(first < hi, self.t[np.minimum(first, len(self.t) - 1)], np.nan)
        return last_t, first_t


def _labels_and_availability(
    tx: pd.DataFrame, labels: pd.DataFrame | None, delay_days: int, origin: pd.Timestamp
) -> tuple[np.ndarray, np.ndarray]:
    """Per row: its label (NaN unknown) and when it becomes usable (ms from origin)."""
    t_ms = _time_ms(tx[schema.TX_DATETIME], origin)
    if schema.TX_FRAUD in tx.columns:
        label = tx[schema.TX_FRAUD].to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        label = np.full(len(tx), np.nan)
    if schema.LABELLED in tx.columns:
        label = np.where(tx[schema.LABELLED].to_numpy(dtype=bool), label, np.nan)
    available = np.where(np.isnan(label), np.iinfo(np.int64).max // 4, t_ms + delay_days * _MS_PER_DAY)
    if labels is not None and len(labels):
        lab = labels.drop_duplicates(schema.TRANSACTION_ID, keep="last").set_index(schema.TRANSACTION_ID)
        ids = tx[schema.TRANSACTION_ID]
        late_fraud = ids.map(lab[schema.TX_FRAUD]).to_numpy(dtype=np.float64, na_value=np.nan)
        late_from = ids.map(lab[schema.LABEL_AVAILABLE_FROM])
        has = ~np.isnan(late_fraud)
        late_ms = np.zeros(len(tx), dtype=np.int64)
        late_ms[has] = _time_ms(late_from[has], origin)
        only_late = has & np.isnan(label)
        label = np.where(only_late, late_fraud, label)
        both = has & ~only_late
        available = np.where(only_late, late_ms, available)
        available = np.where(both, np.minimum(available, late_ms), available)
    return label, available.astype(np.int64)


# ----------------------------------------------------------------------------------------------
# Transaction features
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cards:
    """The time-ordered rows keyed by (card, time): what every card feature reads.

    Card features are computed in the (card, time) sorted order, where every query is already
    sorted: binary searches with sorted needles are several times faster than with random ones.
    """

    rank: np.ndarray  # card rank of each row (row order)
    index: pd.Index  # card ids by rank
    keyed: _Keyed
    amount: np.ndarray  # row order
    amount_sorted: np.ndarray
    cum_amount: np.ndarray  # prefix sums of the amounts in sorted order
    me: np.ndarray  # sorted position + 1: the current row included

    @classmethod
    def build(cls, df: pd.DataFrame, t_ms: np.ndarray, span: int, amount: np.ndarray) -> _Cards:
        rank, index = _ranks(df[schema.CUSTOMER_ID])
        _check_span(len(index), span)
        keyed = _Keyed(rank, t_ms, span)
        return cls(
            rank=rank,
            index=index,
            keyed=keyed,
            amount=amount,
            amount_sorted=amount[keyed.order],
            cum_amount=keyed.cumsum(amount),
            me=np.arange(1, len(df) + 1),
        )

    def since(self, back_ms: int) -> np.ndarray:
        """Per sorted row: the sorted position where the card's ``(t - back_ms, t]`` starts."""
        return np.searchsorted(self.keyed.key, self.keyed.key - back_ms, side="right")

    def scatter(self, values_sorted: np.ndarray) -> np.ndarray:
        return _scatter(values_sorted, self.keyed.order)


def _time_axis(
    df: pd.DataFrame, windows: Sequence[int], delay_days: int, habit: tuple[int, int] | None
) -> tuple[pd.Timestamp, np.ndarray, int]:
    """``(origin, t_ms, span)`` of the time-ordered rows: the origin lies before the furthest any
    window reaches back, so every window bound is a non-negative time within one entity's span."""
    reach = max(max(windows) + delay_days, sum(habit) if habit else 0)
    origin = df[schema.TX_DATETIME].iloc[0].floor("D") - pd.Timedelta(days=reach + 1)
    t_ms = _time_ms(df[schema.TX_DATETIME], origin)
    span = int(t_ms.max()) + (reach + 2) * _MS_PER_DAY
    return origin, t_ms, span


def _calendar_features(df: pd.DataFrame, amount: np.ndarray) -> dict[str, np.ndarray]:
    """The amount and the Handbook's weekend and night flags, plus the hour."""
    dt = df[schema.TX_DATETIME].dt
    hour = dt.hour.to_numpy()
    return {
        schema.TX_AMOUNT: amount,
        "TX_DURING_WEEKEND": (dt.weekday >= 5).to_numpy().astype(np.int8),
        "TX_DURING_NIGHT": (hour <= 6).astype(np.int8),  # the Handbook: hour <= 6
        "TX_HOUR": hour.astype(np.int8),
    }


def _card_window_features(cards: _Cards, windows: Sequence[int]) -> dict[str, np.ndarray]:
    """Card windows, current transaction included, later ones excluded (by position)."""
    out: dict[str, np.ndarray] = {}
    me, c_amount = cards.me, cards.cum_amount
    for w in windows:
        lo = cards.since(w * _MS_PER_DAY)
        cnt = me - lo
        out[f"CUSTOMER_ID_NB_TX_{w}DAY_WINDOW"] = cards.scatter(cnt.astype(np.int64))
        out[f"CUSTOMER_ID_AVG_AMOUNT_{w}DAY_WINDOW"] = cards.scatter((c_amount[me] - c_amount[lo]) / cnt)
    return out


def _terminal_window_features(
    term: np.ndarray,
    t_ms: np.ndarray,
    label: np.ndarray,
    avail: np.ndarray,
    windows: Sequence[int],
    delay_days: int,
    span: int,
) -> dict[str, np.ndarray]:
    """The terminal's delayed windows (count and risk) and its fraud recency."""
    out: dict[str, np.ndarray] = {}
    risk = _TerminalRisk(term, t_ms, label, avail, delay_days * _MS_PER_DAY, span)
    tk = risk.all
    term_s, t_s = term[tk.order], t_ms[tk.order]
    for w in windows:
        nb, r = risk.query(term_s, t_s, w)
        out[f"TERMINAL_ID_NB_TX_{w}DAY_WINDOW"] = _scatter(nb, tk.order)
        out[f"TERMINAL_ID_RISK_{w}DAY_WINDOW"] = _scatter(r, tk.order)
    recency = _FraudRecency(
        term, t_ms, label, avail, delay_days * _MS_PER_DAY, max(windows) * _MS_PER_DAY, span
    )
    last_ms, first_ms = recency.query(term_s, t_s)
    days = recency_days(t_s / 1000.0, last_ms / 1000.0, first_ms / 1000.0, recency_fill(windows, delay_days))
    for name, values in days.items():
        out[name] = _scatter(values, tk.order)
    return out


def _request_features(cards: _Cards, t_ms: np.ndarray, windows: Sequence[int]) -> dict[str, np.ndarray]:
    """The amount against the card's previous transactions (current excluded) over the longest
    window, and the seconds since the card's last transaction."""
    me, c_amount, amount_s = cards.me, cards.cum_amount, cards.amount_sorted
    lo = cards.since(max(windows) * _MS_PER_DAY)
    n_prev = me - 1 - lo
    prev_sum = c_amount[me - 1] - c_amount[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prev = np.where(n_prev > 0, prev_sum / np.maximum(n_prev, 1), np.nan)
        ratio = np.where((n_prev > 0) & (mean_prev > 0), amount_s / mean_prev, 1.0)
    order = cards.keyed.order
    sorted_t = t_ms[order]
    sorted_c = cards.rank[order]
    gap_sorted = np.full(len(me), float(SECONDS_CAP))
    same = sorted_c[1:] == sorted_c[:-1]
    gap_sorted[1:] = np.where(same, (sorted_t[1:] - sorted_t[:-1]) / 1000.0, SECONDS_CAP)
    return {
        "AMOUNT_TO_CUSTOMER_MEAN": cards.scatter(ratio),
        "SECONDS_SINCE_LAST_TX": cards.scatter(np.minimum(gap_sorted, SECONDS_CAP)),
    }


def _habit_features(cards: _Cards, habit: tuple[int, int]) -> dict[str, np.ndarray]:
    """The `HABIT_FEATURES` over the card's ``(t - lag - days, t - lag]`` transactions."""
    ck, c_amount, amount = cards.keyed, cards.cum_amount, cards.amount
    lag_ms, days_ms = habit[0] * _MS_PER_DAY, habit[1] * _MS_PER_DAY
    hi = cards.since(lag_ms)
    lo = cards.since(lag_ms + days_ms)
    c_sq = ck.cumsum(amount * amount)
    n_habit, total = hi - lo, c_amount[hi] - c_amount[lo]
    stats = habit_values(cards.amount_sorted, n_habit, total, c_sq[hi] - c_sq[lo])
    limit = habit_large_limit(n_habit, total)
    stats["CUSTOMER_ID_NB_LARGE_SINCE_HABIT"] = _large_since_habit(ck, cards.amount_sorted, limit, lag_ms)
    return {name: cards.scatter(values) for name, values in stats.items()}


def _distance_from_home(
    customers: pd.DataFrame, terminals: pd.DataFrame, cards: _Cards, term: np.ndarray, term_index: pd.Index
) -> np.ndarray:
    """Euclidean distance between the card holder's home and the terminal."""
    c_xy = customers.set_index(schema.CUSTOMER_ID)[[schema.X_CUSTOMER, schema.Y_CUSTOMER]]
    t_xy = terminals.set_index(schema.TERMINAL_ID)[[schema.X_TERMINAL, schema.Y_TERMINAL]]
    cx = c_xy.reindex(cards.index).to_numpy(dtype=np.float64)[cards.rank]
    tx_ = t_xy.reindex(term_index).to_numpy(dtype=np.float64)[term]
    return np.sqrt(((cx - tx_) ** 2).sum(axis=1))


def _rich_features(df: pd.DataFrame, cards: _Cards, term: np.ndarray) -> dict[str, np.ndarray]:
    """The `RICH_FEATURES` from the simulator's richer columns."""
    cust, me = cards.rank, cards.me
    out: dict[str, np.ndarray] = {}
    channel = df[schema.CHANNEL].astype(str).to_numpy()
    out["IS_ECOM"] = (channel == "ecom").astype(np.int8)
    out["IS_ATM"] = (channel == "atm").astype(np.int8)
    device = df[schema.DEVICE_ID].to_numpy()
    # First use by the card (in time order; the data's first day makes everything "new").
    out["NEW_DEVICE"] = (_first_use(cust, device) & (device != schema.NO_DEVICE)).astype(np.int8)
    country_code, _ = pd.factorize(df[schema.COUNTRY])
    out["NEW_COUNTRY"] = _first_use(cust, country_code).astype(np.int8)
    out["NEW_TERMINAL"] = _first_use(cust, term).astype(np.int8)
    lo_h = cards.since(_MS_PER_HOUR)
    out["CUSTOMER_ID_NB_TX_1H_WINDOW"] = cards.scatter((me - lo_h).astype(np.int64))
    c_small = cards.keyed.cumsum((cards.amount < SMALL_AMOUNT).astype(np.float64))
    out["SMALL_AMOUNT_BURST_1H"] = cards.scatter((c_small[me] - c_small[lo_h]).astype(np.int64))
    return out


def _foreign_country(df: pd.DataFrame, customers: pd.DataFrame, cards: _Cards) -> np.ndarray:
    """1 where the transaction's country is not the card holder's home country."""
    home = customers.set_index(schema.CUSTOMER_ID)["home_country"].astype(str)
    home_of = home.reindex(cards.index).to_numpy()[cards.rank]
    return (df[schema.COUNTRY].astype(str).to_numpy() != home_of).astype(np.int8)


def _assemble(
    tx: pd.DataFrame,
    df: pd.DataFrame,
    out: dict[str, np.ndarray],
    names: list[str],
    order: np.ndarray | None,
    cats: bool,
) -> pd.DataFrame:
    """The frame of `names`, back in `tx`'s row order; names not computed are `df`'s raw
    categorical columns."""
    back = None if order is None else np.argsort(order)
    columns: dict[str, object] = {}
    for name in names:
        if name in out:
            columns[name] = out[name] if back is None else out[name][back]
        else:
            col = df[name].astype("category")
            columns[name] = col.to_numpy() if back is None else col.iloc[back].to_numpy()
    result = pd.DataFrame(columns, index=tx.index)
    for name in CATEGORICAL_FEATURES if cats else ():
        result[name] = result[name].astype("category")
    return result


def transaction_features(
    tx: pd.DataFrame,
    *,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    delay_days: int = DEFAULT_DELAY_DAYS,
    labels: pd.DataFrame | None = None,
    customers: pd.DataFrame | None = None,
    terminals: pd.DataFrame | None = None,
    categoricals: bool = False,
    habit: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """Point-in-time features of every transaction (see the module docstring).

    Args:
        tx: Transactions (the contract's columns; ``TX_FRAUD`` optional or partly NaN, richer
            columns optional). Any row order; time order is ``TX_DATETIME`` then ``TRANSACTION_ID``.
        windows: Window lengths in days.
        delay_days: The label delay of the terminal windows (the Handbook's 7 days).
        labels: Late labels (``TRANSACTION_ID, TX_FRAUD, LABEL_AVAILABLE_FROM``): used for the
            terminal risk only from ``LABEL_AVAILABLE_FROM`` on.
        customers: Customer table with ``x_customer_id, y_customer_id`` (and ``home_country``) for
            ``DISTANCE_FROM_HOME`` (and ``FOREIGN_COUNTRY``).
        terminals: Terminal table with ``x_terminal_id, y_terminal_id``.
        categoricals: Also return the raw categorical columns (for embeddings) when present.
        habit: ``(lag, days)`` of the card's spending habit (None: no habit features).

    Returns:
        One row per transaction, indexed like `tx`, columns in `feature_names` order.
    """
    if len(tx) == 0:
        names = feature_names(windows, habit=bool(habit))
        return pd.DataFrame(index=tx.index, columns=names, dtype=np.float64)
    # Work in time order (TX_DATETIME, then TRANSACTION_ID); `_assemble` puts results in tx's order.
    order = _time_order(tx)
    df = tx if order is None else tx.iloc[order]
    origin, t_ms, span = _time_axis(df, windows, delay_days, habit)
    amount = df[schema.TX_AMOUNT].to_numpy(dtype=np.float64)
    out = _calendar_features(df, amount)

    cards = _Cards.build(df, t_ms, span, amount)
    out |= _card_window_features(cards, windows)

    term, term_index = _ranks(df[schema.TERMINAL_ID])
    _check_span(len(term_index), span)
    label, avail = _labels_and_availability(df, labels, delay_days, origin)
    out |= _terminal_window_features(term, t_ms, label, avail, windows, delay_days, span)

    out |= _request_features(cards, t_ms, windows)
    if habit:
        out |= _habit_features(cards, habit)

    distance = customers is not None and terminals is not None
    if distance:
        assert customers is not None and terminals is not None
        out[DISTANCE_FEATURE] = _distance_from_home(customers, terminals, cards, term, term_index)

    rich = all(c in df.columns for c in schema.RICH_COLUMNS)
    if rich:
        out |= _rich_features(df, cards, term)

    foreign = rich and customers is not None and "home_country" in customers.columns
    if foreign:
        assert customers is not None
        out[FOREIGN_FEATURE] = _foreign_country(df, customers, cards)

    cats = categoricals and rich
    names = feature_names(
        windows, habit=bool(habit), distance=distance, rich=rich, foreign=foreign, categoricals=cats
    )
    return _assemble(tx, df, out, names, order, cats)


# ----------------------------------------------------------------------------------------------
# Daily snapshots for Feast
# ----------------------------------------------------------------------------------------------


def daily_snapshots(
    tx: pd.DataFrame,
    *,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    delay_days: int = DEFAULT_DELAY_DAYS,
    labels: pd.DataFrame | None = None,
    until: str | pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Card and terminal aggregates as of each midnight, for Feast's batch sources.

    A row ``(entity, event_timestamp=T)`` holds the entity's windows computed from everything
    strictly known at ``T`` (midnight ending a day): card windows over ``(T - w, T]``, terminal
    windows over ``(T - delay - w, T - delay]`` with labels available at ``T``. A row is written
    for each midnight at which a value changed (a transaction entered or left a window, or a late
    label arrived), so a point-in-time join (latest row at or before an event) reads the right
    values without a row per entity per day.

    Args:
        tx: Transactions (as for `transaction_features`).
        windows: Window lengths in days.
        delay_days: The terminal windows' delay.
        labels: Late labels, used from ``LABEL_AVAILABLE_FROM``.
        until: Last snapshot time (default: the midnight after the last transaction).

    Returns:
        ``(card_snapshots, terminal_snapshots)``: ``CUSTOMER_ID`` (resp. ``TERMINAL_ID``),
        ``event_timestamp`` and the `customer_features` (resp. `terminal_features` then
        `TERMINAL_FRAUD_TIMES`: the times, UTC epoch seconds, of the latest and the earliest
        fraud known at ``T`` in the longest delayed window; NaN when none) columns.
    """
    if len(tx) == 0:
        return (
            pd.DataFrame(columns=[schema.CUSTOMER_ID, EVENT_TIMESTAMP, *customer_features(windows)]),
            pd.DataFrame(
                columns=[
                    schema.TERMINAL_ID,
                    EVENT_TIMESTAMP,
                    *terminal_features(windows),
                    *TERMINAL_FRAUD_TIMES,
                ]
            ),
        )
    order = np.lexsort((tx[schema.TRANSACTION_ID].to_numpy(), tx[schema.TX_DATETIME].to_numpy()))
    df = tx.iloc[order].reset_index(drop=True)
    first_day = df[schema.TX_DATETIME].iloc[0].floor("D")
    last_midnight = (
        pd.Timestamp(until)
        if until is not None
        else df[schema.TX_DATETIME].iloc[-1].floor("D") + pd.Timedelta(days=1)
    )
    origin = first_day - pd.Timedelta(days=max(windows) + delay_days + 1)
    t_ms = _time_ms(df[schema.TX_DATETIME], origin)
    last_ms = int((last_midnight - origin) // pd.Timedelta(milliseconds=1))
    span = max(int(t_ms.max()), last_ms) + (max(windows) + delay_days + 2) * _MS_PER_DAY
    day = t_ms // _MS_PER_DAY  # day index from the origin
    n_days_total = last_ms // _MS_PER_DAY

    def midnights(entity: np.ndarray, change_days: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        # A value changes during day D -> a snapshot at the midnight ending it, index D + 1.
        e = np.concatenate([entity] * len(change_days)).astype(np.int64)
        d = np.concatenate(change_days).astype(np.int64) + 1
        keep = d <= n_days_total
        width = n_days_total + 1
        pairs = np.sort(e[keep] * width + d[keep])  # sorted by (entity, day): sorted queries
        pairs = pairs[np.concatenate([[True], pairs[1:] != pairs[:-1]])]
        return pairs // width, (pairs % width) * _MS_PER_DAY

    amount = df[schema.TX_AMOUNT].to_numpy(dtype=np.float64)
    cust, cust_index = _ranks(df[schema.CUSTOMER_ID])
    ck = _Keyed(cust, t_ms, span)
    c_amount = ck.cumsum(amount)
    q_c, q_t = midnights(cust, [day] + [day + w for w in windows])
    card: dict[str, object] = {schema.CUSTOMER_ID: cust_index.to_numpy()[q_c]}
    card[EVENT_TIMESTAMP] = origin + pd.to_timedelta(q_t, unit="ms")
    for w in windows:
        hi, lo = ck.upto(q_c, q_t), ck.upto(q_c, q_t - w * _MS_PER_DAY)
        n = hi - lo
        card[f"CUSTOMER_ID_NB_TX_{w}DAY_WINDOW"] = n.astype(np.int64)
        with np.errstate(invalid="ignore", divide="ignore"):
            card[f"CUSTOMER_ID_AVG_AMOUNT_{w}DAY_WINDOW"] = np.where(
                n > 0, (c_amount[hi] - c_amount[lo]) / np.maximum(n, 1), 0.0
            )

    term, term_index = _ranks(df[schema.TERMINAL_ID])
    label, avail = _labels_and_availability(df, labels, delay_days, origin)
    risk = _TerminalRisk(term, t_ms, label, avail, delay_days * _MS_PER_DAY, span)
    changes = [day + delay_days] + [day + delay_days + w for w in windows]
    late = ~np.isnan(label) & (avail > t_ms + delay_days * _MS_PER_DAY)
    avail_day = np.where(late, avail // _MS_PER_DAY, day + delay_days)
    changes.append(avail_day)
    q_e, q_tt = midnights(term, changes)
    terminal: dict[str, object] = {schema.TERMINAL_ID: term_index.to_numpy()[q_e]}
    terminal[EVENT_TIMESTAMP] = origin + pd.to_timedelta(q_tt, unit="ms")
    for w in windows:
        nb, r = risk.query(q_e, q_tt, w)
        terminal[f"TERMINAL_ID_NB_TX_{w}DAY_WINDOW"] = nb
        terminal[f"TERMINAL_ID_RISK_{w}DAY_WINDOW"] = r
    # Times, not days since: serving measures the days from the transaction it scores. Every
    # change (a fraud entering or leaving the longest window, a late label) is one of `changes`.
    recency = _FraudRecency(
        term, t_ms, label, avail, delay_days * _MS_PER_DAY, max(windows) * _MS_PER_DAY, span
    )
    origin_s = origin.value / 1e9  # epoch seconds, naive times being UTC
    for name, when_ms in zip(TERMINAL_FRAUD_TIMES, recency.query(q_e, q_tt), strict=True):
        terminal[name] = origin_s + when_ms / 1000.0
    return pd.DataFrame(card), pd.DataFrame(terminal)
