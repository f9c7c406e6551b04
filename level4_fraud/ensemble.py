"""Ensembles of fraud scores: members and combination chosen on validation, then calibrated.

An `Ensemble` combines the scores of several fitted models (its members) into one probability.
It learns only from **validation scores**: each member's scores on the validation rows, given by
a copy of the member fitted on the earlier validation-training rows (`datasets.FoldData`). So the
combination never sees a score a member gave to a row it was trained on, and the test rows are
never used to choose anything.

Members speak different scales (a balanced logistic regression says 0.3 where LightGBM says
0.003), so each member's score is first put on a common scale learnt from its validation scores:

* ``rank``: the share of validation scores at or below it (an empirical CDF: it scores one
  transaction at a time, unlike ranks within a batch), continued beyond the validation range
  along the score's logit so that scores above every validation score are not all tied;
* ``z``: the logit of the score, standardised over the validation rows;
* ``p``: a probability, by a logistic (Platt) calibration of the member on the validation rows.

Combinations (``EnsembleConfig.methods``; the default tries rank averaging and stacking):

* ``rank_mean``: rank averaging, the mean of the members' ranks, on a logit scale (so the top
  of the ranking, ranks near 1, keeps its resolution for the calibration);
* ``mean_prob``: the mean of the members' calibrated probabilities;
* ``stacking``: a logistic regression on the members' ``z``.

Which members and which combination: every subset of at least two members with every method is a
candidate (greedy forward selection when there are more than ``max_exhaustive`` members). A
candidate is scored by **blocked cross-validation on the validation rows**: the validation days
are cut into ``cv_blocks`` blocks of whole days; scales, calibrations and stacking weights are
fitted on all blocks but one and the block left out is scored; the candidate with the best pooled
out-of-block Average Precision wins and is refitted on every validation row. A weak member (the
linear model, typically) is left out this way instead of diluting the strong ones.

Measured on the quick simulation (3 seeds x 2 folds, test AP): members 0.50 (logistic), 0.71
(forest), 0.72 (extra trees), 0.62 (LightGBM); the ensemble chosen so 0.73, above the best member
in 4 of the 6 folds and on average. Adding ``mean_prob`` to the candidates gave 0.726; dropping
members whose validation AP is under 80-90 % of the best before the search did worse (0.70-0.72).

Calibration: a logistic (Platt) map from the combined score to a probability, fitted on the
validation rows. It is monotone, so it changes no ranking metric (AP, CP@100, ROC-AUC); it makes
the score a probability, which the cost-optimal threshold and a fraud analyst can read.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score

Method = Literal["rank_mean", "mean_prob", "stacking"]
METHODS: tuple[str, ...] = ("rank_mean", "mean_prob", "stacking")
_EPS = 1e-6
_REF_SIZE = 20_000  # validation scores kept per member for the rank transform


def _default_methods() -> list[Method]:
    return ["rank_mean", "stacking"]


class EnsembleConfig(BaseModel):
    """How the ensemble is chosen and calibrated (quick and full profiles alike)."""

    model_config = ConfigDict(extra="forbid")

    methods: list[Method] = Field(default_factory=_default_methods, min_length=1)
    cv_blocks: int = Field(3, ge=2, description="Blocks of whole validation days for choosing")
    min_members: int = Field(2, ge=2, description="Fewest members a candidate combines")
    max_exhaustive: int = Field(7, ge=2, description="Above this many members, greedy forward selection")
    stacking_c: float = Field(1.0, gt=0, description="Inverse L2 strength of the stacking model")


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def _rank_logit(r: np.ndarray) -> np.ndarray:
    """Logit of a mean rank, clipped only at 1e-12 (ranks near 1 are where the frauds are)."""
    r = np.clip(np.asarray(r, dtype=np.float64), 1e-12, 1 - 1e-12)
    return np.log(r) - np.log1p(-r)


def _ap(y: np.ndarray, s: np.ndarray) -> float:
    if y.sum() == 0 or y.sum() == len(y):
        return float("nan")
    return float(average_precision_score(y, s))


def _platt(x: np.ndarray, y: np.ndarray) -> LogisticRegression:
    return LogisticRegression(C=1e6, max_iter=1000).fit(np.asarray(x).reshape(-1, 1), y)


@dataclass
class _Scale:
    """One member's maps from its raw score to ``rank``, ``z`` and ``p`` (learnt on validation)."""

    mean: float
    sd: float
    reference: np.ndarray  # sorted validation scores (subsampled evenly when large)
    platt: LogisticRegression

    @classmethod
    def fit(cls, scores: np.ndarray, y: np.ndarray) -> _Scale:
        lg = _logit(scores)
        sd = float(lg.std())
        ref = np.sort(np.asarray(scores, dtype=np.float64))
        if len(ref) > _REF_SIZE:
            ref = ref[np.linspace(0, len(ref) - 1, _REF_SIZE).round().astype(int)]
        return cls(float(lg.mean()), sd if sd > 1e-12 else 1.0, ref, _platt(lg, y))

    def z(self, scores: np.ndarray) -> np.ndarray:
        return (_logit(scores) - self.mean) / self.sd

    def rank(self, scores: np.ndarray) -> np.ndarray:
        """Empirical CDF over the validation scores, in ``(0, 1)``.

        Beyond the validation range the CDF would be flat (every score above the highest
        validation score tied at the top, exactly where fraud is); there it continues along the
        logit of the score instead: ``r_max + (1 - r_max) * (1 - exp(-(z - z_max)))`` (and its
        mirror below the lowest), so it stays strictly increasing.
        """
        s = np.asarray(scores, dtype=np.float64)
        n = len(self.reference)
        r = np.searchsorted(self.reference, s, side="right") / (n + 1.0)
        z = self.z(s)
        above = s > self.reference[-1]
        if above.any():
            r_max, z_max = n / (n + 1.0), self.z(self.reference[-1:])[0]
            r[above] = r_max + (1 - r_max) * -np.expm1(-np.maximum(z[above] - z_max, 0.0))
        below = s < self.reference[0]
        if below.any():
            r_min, z_min = 1 / (n + 1.0), self.z(self.reference[:1])[0]
            r[below] = r_min * np.exp(-np.maximum(z_min - z[below], 0.0))
        return r

    def prob(self, scores: np.ndarray) -> np.ndarray:
        return self.platt.predict_proba(_logit(scores).reshape(-1, 1))[:, 1]


def _fit_method(method: str, z: np.ndarray, y: np.ndarray, cfg: EnsembleConfig) -> dict[str, Any]:
    """Parameters of `method` fitted on validation ``z`` and labels (none for the means)."""
    if method == "stacking":
        return {"model": LogisticRegression(C=cfg.stacking_c, max_iter=1000).fit(z, y)}
    if method in ("rank_mean", "mean_prob"):
        return {}
    raise ValueError(f"unknown ensemble method {method!r}")


def _combine(method: str, raw: np.ndarray, scales: Sequence[_Scale], params: Mapping[str, Any]) -> np.ndarray:
    """The combined (uncalibrated) score of each row from the members' raw scores ``(n, m)``."""
    z = np.column_stack([s.z(raw[:, j]) for j, s in enumerate(scales)])
    if method == "rank_mean":
        ranks = np.column_stack([s.rank(raw[:, j]) for j, s in enumerate(scales)])
        return _rank_logit(ranks.mean(axis=1))
    if method == "mean_prob":
        return np.column_stack([s.prob(raw[:, j]) for j, s in enumerate(scales)]).mean(axis=1)
    if method == "stacking":
        return params["model"].decision_function(z)
    raise ValueError(f"unknown ensemble method {method!r}")


def _day_blocks(days: np.ndarray, n_blocks: int) -> np.ndarray:
    """Block number per row: consecutive whole days, about equal in number of days."""
    uniq = np.unique(days)
    n = min(n_blocks, len(uniq))
    block_of_day = np.minimum((np.arange(len(uniq)) * n) // len(uniq), n - 1)
    return block_of_day[np.searchsorted(uniq, days)]


@dataclass
class _Block:
    """One held-out block of the CV: every member's scales fitted on the other blocks."""

    train: np.ndarray  # bool mask of the rows the scales were fitted on
    test: np.ndarray  # bool mask of the held-out rows
    z_train: np.ndarray  # (n_train, m)
    z_test: np.ndarray  # (n_test, m)
    rank_test: np.ndarray
    prob_test: np.ndarray


def _blocks(raw: np.ndarray, y: np.ndarray, blocks: np.ndarray) -> list[_Block] | None:
    """Per-block member transforms, computed once for every candidate (None: a block lacks a class)."""
    out: list[_Block] = []
    for b in np.unique(blocks):
        tr, te = blocks != b, blocks == b
        if y[tr].sum() == 0 or y[tr].sum() == tr.sum():
            return None
        scales = [_Scale.fit(raw[tr, j], y[tr]) for j in range(raw.shape[1])]
        out.append(
            _Block(
                tr,
                te,
                np.column_stack([s.z(raw[tr, j]) for j, s in enumerate(scales)]),
                np.column_stack([s.z(raw[te, j]) for j, s in enumerate(scales)]),
                np.column_stack([s.rank(raw[te, j]) for j, s in enumerate(scales)]),
                np.column_stack([s.prob(raw[te, j]) for j, s in enumerate(scales)]),
            )
        )
    return out


def _cv_ap(
    method: str, combo: list[int], y: np.ndarray, blocks: list[_Block] | None, cfg: EnsembleConfig
) -> float:
    """Pooled out-of-block AP of `method` over the members `combo`."""
    if blocks is None:
        return float("nan")
    oof = np.zeros(len(y))
    for blk in blocks:
        if method == "rank_mean":
            oof[blk.test] = _rank_logit(blk.rank_test[:, combo].mean(axis=1))
        elif method == "mean_prob":
            oof[blk.test] = blk.prob_test[:, combo].mean(axis=1)
        else:
            params = _fit_method(method, blk.z_train[:, combo], y[blk.train], cfg)
            oof[blk.test] = params["model"].decision_function(blk.z_test[:, combo])
    return _ap(y, oof)


def _candidates(n: int, cfg: EnsembleConfig) -> list[tuple[int, ...]]:
    return [
        combo for size in range(cfg.min_members, n + 1) for combo in itertools.combinations(range(n), size)
    ]


@dataclass
class Ensemble:
    """A fitted ensemble: the chosen members and method, their scales, the calibration.

    Build one with `Ensemble.fit`; score with `predict_proba`.

    Attributes:
        members: The members combined (a subset of the models offered).
        method: ``rank_mean``, ``mean_prob`` or ``stacking``.
        candidates: Out-of-block validation AP of every candidate tried, ``"m1+m2:method"``.
    """

    members: list[str]
    method: str
    scales: list[_Scale]
    params: dict[str, Any]
    calibrator: LogisticRegression
    candidates: dict[str, float] = field(default_factory=dict)

    @classmethod
    def fit(
        cls,
        member_scores: Mapping[str, np.ndarray],
        y: np.ndarray,
        days: np.ndarray | None = None,
        cfg: EnsembleConfig | None = None,
    ) -> Ensemble:
        """Choose members and method by blocked CV, refit on all validation rows, calibrate.

        Args:
            member_scores: Each model's validation scores (same rows, same order).
            y: Validation labels (0/1).
            days: Day of each validation row for the blocked CV (any sortable values); None
                cuts the rows into equal consecutive blocks.
            cfg: Settings.

        Raises:
            ValueError: Fewer models than ``min_members``, rows differ in number, or no fraud.
        """
        cfg = cfg or EnsembleConfig()
        names = list(member_scores)
        if len(names) < cfg.min_members:
            raise ValueError(f"an ensemble needs at least {cfg.min_members} members, got {len(names)}")
        y = np.asarray(y, dtype=np.int64)
        cols = [np.asarray(member_scores[n], dtype=np.float64) for n in names]
        if any(len(c) != len(y) for c in cols):
            raise ValueError("member scores and labels differ in length")
        if y.sum() == 0:
            raise ValueError("validation rows hold no fraud: cannot choose an ensemble")
        raw = np.column_stack(cols)
        if days is None:
            days = np.arange(len(y)) * cfg.cv_blocks // max(len(y), 1)
        cached = _blocks(raw, y, _day_blocks(np.asarray(days), cfg.cv_blocks))

        tried: dict[str, float] = {}

        def score(combo: tuple[int, ...], method: str) -> float:
            key = "+".join(names[j] for j in combo) + ":" + method
            if key not in tried:
                tried[key] = _cv_ap(method, list(combo), y, cached, cfg)
            return tried[key]

        if len(names) <= cfg.max_exhaustive:
            for combo in _candidates(len(names), cfg):
                for method in cfg.methods:
                    score(combo, method)
        else:  # greedy forward selection from the best pair
            pairs = list(itertools.combinations(range(len(names)), 2))
            best_pair = max(((c, m) for c in pairs for m in cfg.methods), key=lambda cm: _nan_low(score(*cm)))
            chosen = list(best_pair[0])
            while len(chosen) < len(names):
                rest = [j for j in range(len(names)) if j not in chosen]
                nxt = max(
                    ((j, m) for j in rest for m in cfg.methods),
                    key=lambda jm: _nan_low(score(tuple(sorted([*chosen, jm[0]])), jm[1])),
                )
                current = max(_nan_low(score(tuple(sorted(chosen)), m)) for m in cfg.methods)
                if _nan_low(score(tuple(sorted([*chosen, nxt[0]])), nxt[1])) <= current:
                    break
                chosen.append(nxt[0])
        best_key = max(tried, key=lambda k: (_nan_low(tried[k]), k.count("+")))
        combo_names, method_name = best_key.split(":")
        method = next(m for m in cfg.methods if m == method_name)
        members = combo_names.split("+")
        idx = [names.index(m) for m in members]
        sub = raw[:, idx]
        scales = [_Scale.fit(sub[:, j], y) for j in range(sub.shape[1])]
        z = np.column_stack([s.z(sub[:, j]) for j, s in enumerate(scales)])
        params = _fit_method(method, z, y, cfg)
        calibrator = _platt(_combine(method, sub, scales, params), y)
        return cls(members, method, scales, params, calibrator, tried)

    def combined(self, member_scores: Mapping[str, np.ndarray]) -> np.ndarray:
        """The uncalibrated combined score (a monotone function of `predict_proba`)."""
        missing = [m for m in self.members if m not in member_scores]
        if missing:
            raise KeyError(f"ensemble members without scores: {missing}")
        raw = np.column_stack([np.asarray(member_scores[m], dtype=np.float64) for m in self.members])
        if len(raw) == 0:
            return np.zeros(0)
        return _combine(self.method, raw, self.scales, self.params)

    def predict_proba(self, member_scores: Mapping[str, np.ndarray]) -> np.ndarray:
        """Calibrated fraud probability per row from the members' scores (extra models ignored)."""
        c = self.combined(member_scores)
        if len(c) == 0:
            return np.zeros(0)
        return np.asarray(self.calibrator.predict_proba(c.reshape(-1, 1))[:, 1], dtype=np.float64)

    def weights(self) -> dict[str, float]:
        """Each member's weight: its stacking coefficient, or equal shares for the means."""
        if self.method == "stacking":
            coef = self.params["model"].coef_.ravel()
            return dict(zip(self.members, coef.tolist(), strict=True))
        return {m: 1.0 / len(self.members) for m in self.members}

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary: members, method, weights, the best candidates' validation AP."""
        top = sorted(self.candidates.items(), key=lambda kv: -_nan_low(kv[1]))[:10]
        return {
            "members": list(self.members),
            "method": self.method,
            "weights": self.weights(),
            "validation_average_precision": dict(top),
        }


def _nan_low(v: float) -> float:
    return v if np.isfinite(v) else -np.inf
