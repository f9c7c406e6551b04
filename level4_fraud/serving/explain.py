"""Reason codes: which inputs made this decision, in words a reviewer understands.

**Method: baseline substitution (occlusion) in log-odds.** A feature's contribution is how much
the model's fraud log-odds drop when that one feature is replaced by its typical value (the
mean the student stores for standardisation; for a category, its most frequent value) with
everything else of the transaction kept:

    contribution_j = logit f(x) - logit f(x with x_j := typical_j)

All substitutions are scored in one batch (one ONNX call of ~30 rows for the student, one
``predict_proba`` for the ensemble), so reasons cost about one more model call.

Why not gradients: the student (`deep_distill.ThresholdStudent`) reads its inputs through 0/1
steps (``x > t``) learnt from the trees; their gradient is zero almost everywhere, so
gradient x input and integrated gradients would miss exactly the steps that carry the trees'
rules (amount above 220, a risky terminal). Why not TreeSHAP on the grey-zone ensemble: exact
on its trees, but it explains the forests' raw outputs, not the rank-averaged and calibrated
ensemble, and costs tens of milliseconds per row on 300 deep trees; occlusion explains the
decided score itself with the same cost as scoring.

Contributions of different features do not add up exactly to ``logit f(x) - logit f(typical)``
(interactions); the largest ones are what changed the decision.

The texts of the terminal inputs name the run's own windows and label delay (`Phrasing`, built
by `serving.scorer.FraudScorer.from_run` from the run's ``features`` settings): a run trained
with a 3-day delay must not tell a reviewer its windows end "a week ago", and its "no known
fraud" value (`features.recency_fill`) is not the default's 37 days.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from level4_fraud.features import DEFAULT_DELAY_DAYS, DEFAULT_WINDOWS, SECONDS_CAP, recency_fill
from level4_fraud.serving.schemas import Reason

_EPS = 1e-6
# Window lengths the texts recognise in a feature name besides the run's own.
_USUAL_WINDOWS = (1, 7, 14, 30, 60, 90)


def logit(p: Any) -> Any:
    """Log-odds of probabilities (clipped away from 0 and 1)."""
    q = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(q / (1 - q))


# What each input means, for a reviewer: a phrase built from its value.
_WINDOW_TEXT = {
    "CUSTOMER_ID_NB_TX_{w}DAY_WINDOW": "{payments} on this card in the last {span}",
    "CUSTOMER_ID_AVG_AMOUNT_{w}DAY_WINDOW": "the card's average payment over the last {span} is {v:,.2f}",
    "TERMINAL_ID_NB_TX_{w}DAY_WINDOW": "{payments} at this terminal in {span} (ending {ago})",
    "TERMINAL_ID_RISK_{w}DAY_WINDOW": (
        "{pct} of this terminal's investigated payments over {span} (ending {ago}) were fraud"
    ),
}
_TEXT: dict[str, Callable[[float], str]] = {
    "TX_AMOUNT": lambda v: f"amount {v:,.2f}",
    "TX_DURING_WEEKEND": lambda v: "payment at the weekend" if v >= 0.5 else "payment on a weekday",
    "TX_DURING_NIGHT": lambda v: "payment at night (00:00-06:59)" if v >= 0.5 else "payment during the day",
    "TX_HOUR": lambda v: f"payment at {v:02.0f}h (UTC)",
    "SECONDS_SINCE_LAST_TX": lambda v: _gap_text(v),
    "DISTANCE_FROM_HOME": lambda v: f"terminal is {v:.1f} grid units from the holder's home",
    "IS_ECOM": lambda v: "online (card-not-present) payment" if v >= 0.5 else "not an online payment",
    "IS_ATM": lambda v: "cash withdrawal at an ATM" if v >= 0.5 else "not an ATM withdrawal",
    "NEW_DEVICE": lambda v: (
        "first use of this device by the card" if v >= 0.5 else "device already used by this card"
    ),
    "NEW_COUNTRY": lambda v: (
        "first payment of this card in this country" if v >= 0.5 else "card used in this country before"
    ),
    "NEW_TERMINAL": lambda v: (
        "first payment of this card at this terminal" if v >= 0.5 else "card used at this terminal before"
    ),
    "CUSTOMER_ID_NB_TX_1H_WINDOW": lambda v: f"{_count(v, 'payment')} on this card within the last hour",
    "SMALL_AMOUNT_BURST_1H": lambda v: (
        f"{_count(v, 'small payment')} (under 5) on this card within the last hour"
    ),
    "FOREIGN_COUNTRY": lambda v: (
        "payment outside the holder's home country" if v >= 0.5 else "payment in the home country"
    ),
    "AMOUNT_TO_CUSTOMER_HABIT": lambda v: f"amount is {v:.1f} times the card's usual payment (weeks ago)",
    "AMOUNT_ZSCORE_CUSTOMER_HABIT": lambda v: (
        f"amount is {v:+.1f} standard deviations from the card's usual payment (weeks ago)"
    ),
    "CUSTOMER_ID_NB_LARGE_SINCE_HABIT": lambda v: (
        f"{_count(v, 'payment')} on this card since its habit window above 3 times its usual payment"
    ),
}
# The terminal's fraud recency when a fraud is known (`Phrasing.no_fraud_text` when none is).
_RECENCY_TEXT: dict[str, Callable[[float], str]] = {
    "TERMINAL_ID_DAYS_SINCE_LAST_FRAUD": lambda v: (
        f"this terminal's latest confirmed fraud was {v:.1f} days ago"
    ),
    "TERMINAL_ID_DAYS_SINCE_FIRST_FRAUD": lambda v: (
        f"this terminal has had confirmed frauds since {v:.1f} days ago (a compromise may be ongoing)"
    ),
}


@dataclass(frozen=True)
class Phrasing:
    """The run's feature settings the reason texts depend on.

    The defaults are `features.py`'s (windows 1, 7, 30 days, a 7-day label delay): what a caller
    that knows no run gets.

    Attributes:
        windows: The run's window lengths in days; the terminal fraud recency looks back over
            the longest.
        delay_days: The run's label delay: the terminal windows end this many days before the
            payment.
    """

    windows: tuple[int, ...] = DEFAULT_WINDOWS
    delay_days: int = DEFAULT_DELAY_DAYS

    @property
    def no_known_fraud(self) -> float:
        """The recency value of a terminal without a known fraud (`features.recency_fill`)."""
        return recency_fill(self.windows, self.delay_days)

    @property
    def ago(self) -> str:
        """When the terminal windows end, as a reviewer reads it (``"a week ago"`` for 7 days)."""
        return _ago(self.delay_days)

    def amount_to_mean_text(self, v: float) -> str:
        """``AMOUNT_TO_CUSTOMER_MEAN``'s text: the card's average is over the run's longest window."""
        return f"amount is {v:.1f} times the card's {max(self.windows)}-day average"

    @property
    def no_fraud_text(self) -> str:
        """The recency text when the run's longest delayed window holds no known fraud."""
        return f"no confirmed fraud at this terminal in the {_span(max(self.windows))} ending {self.ago}"


DEFAULT_PHRASING = Phrasing()


def _gap_text(seconds: float) -> str:
    if seconds >= SECONDS_CAP:
        return f"no earlier payment on this card in {SECONDS_CAP // 86_400} days"
    if seconds < 3_600:
        return f"{seconds / 60:.0f} minutes since the card's previous payment"
    if seconds < 86_400:
        return f"{seconds / 3_600:.1f} hours since the card's previous payment"
    return f"{seconds / 86_400:.1f} days since the card's previous payment"


def _count(value: float, noun: str) -> str:
    """``"1 payment"``, ``"3 payments"``: a count with its noun in the right number."""
    n = round(float(value))
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _span(w: int) -> str:
    return "24 hours" if w == 1 else f"{w} days"


def _ago(days: int) -> str:
    if days == 0:
        return "now"
    if days == 1:
        return "a day ago"
    return "a week ago" if days == 7 else f"{days} days ago"


def describe(feature: str, value: Any, contribution: float, *, phrasing: Phrasing = DEFAULT_PHRASING) -> str:
    """One sentence for a reviewer: what the input was and which way it pushed the decision.

    Args:
        feature: The input's name.
        value: Its value as the model read it (a category as text; None: unknown).
        contribution: Its log-odds contribution (positive: it raised the risk).
        phrasing: The run's windows and label delay (default: `features.py`'s).

    Returns:
        The sentence.
    """
    effect = "raised" if contribution > 0 else "lowered"
    phrase = None
    if isinstance(value, str) or value is None:
        phrase = f"{feature.lower().replace('_', ' ')} is {value if value is not None else 'unknown'}"
    elif not math.isfinite(float(value)):
        phrase = f"{feature} unknown (typical value used)"
    elif feature in _RECENCY_TEXT:
        # At or past the run's fill: no known fraud (capped values read the same, as the model
        # cannot tell them apart either).
        v = float(value)
        phrase = phrasing.no_fraud_text if v >= phrasing.no_known_fraud else _RECENCY_TEXT[feature](v)
    elif feature == "AMOUNT_TO_CUSTOMER_MEAN":
        phrase = phrasing.amount_to_mean_text(float(value))
    elif feature in _TEXT:
        phrase = _TEXT[feature](float(value))
    else:
        for template, text in _WINDOW_TEXT.items():
            for w in sorted({*_USUAL_WINDOWS, *phrasing.windows}):
                if feature == template.format(w=w):
                    phrase = text.format(
                        v=float(value),
                        span=_span(w),
                        pct=f"{float(value):.0%}",
                        payments=_count(value, "payment"),
                        ago=phrasing.ago,
                    )
        if phrase is None:
            phrase = f"{feature} = {float(value):.4g}"
    return f"{phrase[0].upper()}{phrase[1:]}: {effect} the fraud risk."


@dataclass(frozen=True)
class Group:
    """One explained feature: its name and the model input columns it covers."""

    name: str
    columns: tuple[int, ...]


def _as_reason(name: str, value: Any, contribution: float, phrasing: Phrasing) -> Reason:
    numeric = None
    if value is not None and not isinstance(value, str):
        numeric = float(value) if math.isfinite(float(value)) else None
    return Reason(
        feature=name,
        value=numeric,
        contribution=float(contribution),
        text=describe(name, value, contribution, phrasing=phrasing),
    )


def top_reasons(
    names: Sequence[str],
    values: Sequence[Any],
    contributions: np.ndarray,
    k: int,
    *,
    alert: bool,
    phrasing: Phrasing = DEFAULT_PHRASING,
) -> list[Reason]:
    """The `k` reasons of a decision: for an alert the features that raised the risk most;
    for an approval the largest contributions either way (texts in the run's `phrasing`)."""
    if k <= 0:
        return []
    c = np.asarray(contributions, dtype=np.float64)
    order = np.argsort(-c, kind="stable") if alert else np.argsort(-np.abs(c), kind="stable")
    return [_as_reason(names[i], values[i], c[i], phrasing) for i in order[:k] if c[i] != 0.0]


class StudentExplainer:
    """Occlusion reasons of the student (one batch call of the fast-path model).

    Args:
        numeric: The student's numeric input names (in order).
        onehot: Its ``(column, value)`` one-hot inputs (in order).
        typical: The typical value of every input column (the student's stored means).
        predict: The fast-path model: ``(n, F) float32 -> (n,)`` probabilities.
        phrasing: The run's windows and label delay, for the texts (None: the defaults).
    """

    def __init__(
        self,
        numeric: Sequence[str],
        onehot: Sequence[tuple[str, str]],
        typical: np.ndarray,
        predict: Callable[[np.ndarray], np.ndarray],
        phrasing: Phrasing | None = None,
    ) -> None:
        self.predict = predict
        self.phrasing = phrasing or DEFAULT_PHRASING
        self.typical = np.asarray(typical, dtype=np.float32)
        groups = [Group(n, (j,)) for j, n in enumerate(numeric)]
        by_col: dict[str, list[int]] = {}
        for j, (col, _) in enumerate(onehot):
            by_col.setdefault(col, []).append(len(numeric) + j)
        groups += [Group(col, tuple(idx)) for col, idx in by_col.items()]
        self.groups = groups
        # Row g of the occlusion batch takes group g's columns from `typical`: one mask built
        # here, so a decision builds its batch in one vector operation, not a loop over ~50 groups.
        self._occluded = np.zeros((len(groups), len(self.typical)), dtype=bool)
        for g, group in enumerate(groups):
            self._occluded[g, list(group.columns)] = True

    def contributions(self, x: np.ndarray, p: float | None = None) -> np.ndarray:
        """Log-odds contribution of every group for one input row `x` (``(F,)``)."""
        row = np.asarray(x, dtype=np.float32)
        rows = np.where(self._occluded, self.typical[None, :], row[None, :])
        base = p if p is not None else float(self.predict(row[None, :])[0])
        return float(logit(base)) - logit(self.predict(rows))

    def reasons(
        self, x: np.ndarray, p: float, values: Mapping[str, Any], k: int, *, alert: bool
    ) -> list[Reason]:
        """The decision's top `k` reasons (values shown as the request had them)."""
        names = [g.name for g in self.groups]
        values_in_order = [values.get(n) for n in names]
        contributions = self.contributions(x, p)
        return top_reasons(names, values_in_order, contributions, k, alert=alert, phrasing=self.phrasing)


class RowExplainer:
    """Occlusion reasons of a model that scores rows of numeric and categorical features (the
    grey-zone ensemble, `serving.rows.RowEnsemble`).

    One call scores the transaction and every substitution together, so `score_and_explain`
    costs one ``predict`` of ``1 + features`` rows.

    Args:
        numeric: Numeric feature columns.
        categorical: Categorical feature columns.
        typical: Typical value per column (means; most frequent category).
        predict: ``(numeric (n, N) float64, categorical n tuples) -> (n,)`` probabilities.
        phrasing: The run's windows and label delay, for the texts (None: the defaults).
    """

    def __init__(
        self,
        numeric: Sequence[str],
        categorical: Sequence[str],
        typical: Mapping[str, Any],
        predict: Callable[[np.ndarray, list[tuple[Any, ...]]], np.ndarray],
        phrasing: Phrasing | None = None,
    ) -> None:
        self.numeric = list(numeric)
        self.categorical = list(categorical)
        self.typical = dict(typical)
        self.predict = predict
        self.phrasing = phrasing or DEFAULT_PHRASING

    def rows(self, values: Mapping[str, Any]) -> tuple[np.ndarray, list[tuple[Any, ...]]]:
        """The transaction and its substitutions (row 0: as it is; then one row per numeric
        column, then one per categorical column, with that column at its typical value)."""
        base = np.array([_number(values.get(c)) for c in self.numeric], dtype=np.float64)
        cats = tuple(str(values.get(c)) for c in self.categorical)
        n_num = len(self.numeric)
        numeric = np.repeat(base[None, :], 1 + n_num + len(self.categorical), axis=0)
        for j, c in enumerate(self.numeric):
            numeric[1 + j, j] = _number(self.typical.get(c, base[j]))
        categorical = [cats] * (1 + n_num)
        for j, c in enumerate(self.categorical):
            row = list(cats)
            row[j] = str(self.typical.get(c, cats[j]))
            categorical.append(tuple(row))
        return numeric, categorical

    def score_and_explain(
        self, values: Mapping[str, Any], k: int, *, alert_at: float
    ) -> tuple[float, list[Reason]]:
        """The model's score of the transaction and its top `k` reasons."""
        p = np.asarray(self.predict(*self.rows(values)), dtype=np.float64)
        contributions = float(logit(p[0])) - logit(p[1:])
        cols = [*self.numeric, *self.categorical]
        reasons = top_reasons(
            cols,
            [values.get(c) for c in cols],
            contributions,
            k,
            alert=p[0] >= alert_at,
            phrasing=self.phrasing,
        )
        return float(p[0]), reasons


def _number(value: Any) -> float:
    """A numeric input as float (None: NaN, as a frame column holds it)."""
    return math.nan if value is None else float(value)
