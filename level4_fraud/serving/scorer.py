"""`FraudScorer`: one transaction in, one decision out — the real-time path of the champion.

1. **Inputs** (`online.OnlineFeatureSource`): the request, the card state, the terminal's and
   the card's rows of the run's Feast online store (see `serving.online` for which input comes
   from where, and why the service keeps card state of its own).
2. **Fast path**: the champion's student (`deep_distill.ThresholdStudent`, distilled from the
   ensemble), as its ONNX graph (default) or int8 copy: ~0.02 ms a row.
3. **Grey zone**: when the fast score falls in ``[low, high]`` (config), the full ensemble
   (the run's forests, rank-averaged and calibrated) decides instead — the few borderline cases
   where the student's approximation matters; flagged ``grey_zone_ensemble``.
4. **Decision**: ``review`` from the cost-optimal validation threshold the run stored
   (``run.json``: fraud amount caught minus review cost, chosen on the validation week),
   ``decline`` from a stricter threshold chosen on the same validation scores: the lowest at
   which at least ``decline_precision`` of the alerts above it were frauds. Both are thresholds
   on the ensemble's calibrated probability, the scale the student was distilled to.
5. **Reasons** (`serving.explain`) of the model that decided.

Degradation, never an exception: an online-store failure scores from what is left
(``online_store_unavailable``); a model that cannot be loaded or fails at a request falls back
to `serving.rules` (``model_fallback_rules``); the ensemble failing in the grey zone keeps the
student's score.

The class knows nothing of HTTP: FastAPI (`serving.app`), Ray Serve and the stream consumers
all call `FraudScorer.evaluate` through `serving.service.ScoringService`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from level4_fraud import schema
from level4_fraud.features import DEFAULT_DELAY_DAYS
from level4_fraud.serving.config import ServingConfig
from level4_fraud.serving.explain import Phrasing, RowExplainer, StudentExplainer
from level4_fraud.serving.online import (
    CardLedger,
    CardStateUnavailableError,
    FeastOnlineReader,
    Geo,
    Ledger,
    OnlineFeatures,
    OnlineFeatureSource,
    home_countries,
    read_history,
)
from level4_fraud.serving.outage import LogThrottle
from level4_fraud.serving.redis_ledger import RedisCardLedger, connect_ledger, ledger_namespace
from level4_fraud.serving.rules import rules_score
from level4_fraud.serving.schemas import (
    GREY_ZONE_ENSEMBLE,
    MODEL_FALLBACK_RULES,
    Decision,
    DecisionOut,
    TransactionIn,
)

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

STUDENT_DIR = Path("deep") / "student"
STUDENT_INT8_DIR = Path("deep") / "student_int8"
STUDENT_ONNX = Path("deep") / "student.onnx"


# ------------------------------------------------------------------------------------ thresholds
@dataclass(frozen=True)
class Thresholds:
    """Decision thresholds on the fraud probability.

    Attributes:
        review: Alert (review) from this score: the run's cost-optimal validation threshold
            (infinite when alerting never paid on validation).
        decline: Decline from this score (None: never decline automatically).
    """

    review: float
    decline: float | None

    def decide(self, score: float) -> Decision:
        """approve / review / decline for a score."""
        if self.decline is not None and score >= self.decline:
            return "decline"
        return "review" if score >= self.review else "approve"


def decline_threshold(
    scores: np.ndarray, labels: np.ndarray, *, review: float, precision: float, min_alerts: int
) -> float | None:
    """The lowest score threshold (at least `review`) at which the validation alerts above it
    hold at least `min_alerts` rows and a fraud share of at least `precision` (None: none does)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    keep = np.isfinite(s) & np.isfinite(y)
    s, y = s[keep], y[keep]
    if len(s) == 0:
        return None
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    k = np.arange(1, len(s) + 1)
    prec = np.cumsum(y) / k
    # only cut between distinct scores: a threshold takes every row tied with it
    last_of_tie = np.append(s[1:] < s[:-1], True)
    ok = last_of_tie & (k >= min_alerts) & (prec >= precision) & (s >= review)
    if not ok.any():
        return None
    return float(max(s[np.flatnonzero(ok)[-1]], review))


def run_thresholds(run_dir: Path, info: Mapping[str, Any], cfg: ServingConfig) -> Thresholds:
    """Review and decline thresholds of a run (validation scores in ``scores/fold0.parquet``)."""
    from level4_fraud.train import ENSEMBLE, read_scores

    stored = info.get("threshold")
    review = float(stored) if stored is not None and math.isfinite(float(stored)) else math.inf
    try:
        table = read_scores(run_dir, 0)
        valid = table[table["split"] == "valid"]
        decline = decline_threshold(
            valid[f"score_{ENSEMBLE}"].to_numpy(),
            valid[schema.TX_FRAUD].to_numpy(dtype=np.float64),
            review=review,
            precision=cfg.decline_precision,
            min_alerts=cfg.decline_min_alerts,
        )
    except Exception as exc:  # a run without validation scores: review only
        logger.warning("no decline threshold (%s): decisions are approve/review only", exc)
        decline = None
    return Thresholds(review, decline)


# ------------------------------------------------------------------------------------ fast path
class FastPath:
    """The student: input vector from the online features, probability, occlusion reasons.

    Args:
        numeric: Numeric input names (the student's order).
        onehot: ``(column, value)`` one-hot inputs.
        typical: Typical value of every input (the student's stored means); also the fill of a
            missing numeric input, as in training (`deep_distill.student_matrix`).
        predict: ``(n, F) float32 -> (n,)`` probabilities.
        kind: ``onnx`` or ``int8``.
        phrasing: The run's windows and label delay, for the reasons' texts (None: defaults).
    """

    def __init__(
        self,
        numeric: list[str],
        onehot: list[tuple[str, str]],
        typical: np.ndarray,
        predict: Callable[[np.ndarray], np.ndarray],
        kind: str,
        phrasing: Phrasing | None = None,
    ) -> None:
        self.numeric = numeric
        self.onehot = onehot
        self.typical = np.asarray(typical, dtype=np.float32)
        self.predict = predict
        self.kind = kind
        self.explainer = StudentExplainer(numeric, onehot, self.typical, predict, phrasing)

    def vector(self, values: Mapping[str, Any]) -> np.ndarray:
        """The student's input row (missing numeric values: the typical value)."""
        x = np.empty(len(self.numeric) + len(self.onehot), dtype=np.float32)
        for j, name in enumerate(self.numeric):
            v = values.get(name)
            x[j] = self.typical[j] if v is None or not math.isfinite(float(v)) else float(v)
        for j, (col, value) in enumerate(self.onehot, start=len(self.numeric)):
            x[j] = 1.0 if values.get(col) is not None and str(values.get(col)) == value else 0.0
        return x

    def typical_values(self) -> dict[str, Any]:
        """Typical value per feature: the numeric means and each category's most frequent value
        (the first one-hot value of a column: `StudentInputs` orders them by frequency)."""
        out: dict[str, Any] = {n: float(self.typical[j]) for j, n in enumerate(self.numeric)}
        for col, value in self.onehot:
            out.setdefault(col, value)
        return out

    @classmethod
    def load(
        cls, run_dir: Path, kind: str, *, threads: int = 1, phrasing: Phrasing | None = None
    ) -> FastPath:
        """Load the run's student (`kind` ``onnx`` or ``int8``) and its input description.

        `phrasing` (the run's windows and label delay) words its reasons (None: the defaults).

        Raises:
            FileNotFoundError, ValueError, RuntimeError: The student is missing or unreadable.
        """
        import torch

        from level4_fraud.models.training import read_model_meta

        meta = read_model_meta(run_dir / STUDENT_DIR)
        inputs = meta.get("extra", {}).get("inputs")
        if not inputs:
            raise ValueError(f"{run_dir / STUDENT_DIR}: the student's inputs are not recorded")
        numeric = [str(n) for n in inputs["numeric"]]
        onehot = [(str(c), str(v)) for c, v in inputs.get("onehot", [])]
        state = torch.load(run_dir / STUDENT_DIR / "model.pt", map_location="cpu", weights_only=True)
        typical = state["mlp.mean"].numpy()[: len(numeric) + len(onehot)]
        if kind == "onnx":
            from level4_fraud.quantize import OnnxScorer

            predict = OnnxScorer(run_dir / STUDENT_ONNX, threads=threads).predict_proba
        else:
            from level4_fraud.quantize import load_quantized, torch_candidate

            predict = torch_candidate(load_quantized(run_dir / STUDENT_INT8_DIR)).predict
        fast = cls(numeric, onehot, typical, predict, kind, phrasing)
        probe = fast.predict(fast.typical[None, :])
        if probe.shape != (1,) or not np.isfinite(probe).all():
            raise RuntimeError(f"{run_dir}: the {kind} student gives no probability")
        return fast


def _ensemble(run_dir: Path, fast: FastPath, phrasing: Phrasing | None = None) -> RowExplainer | None:
    """The run's ensemble as a row scorer with reasons worded in the run's `phrasing` (None: it
    cannot be used online)."""
    from level4_fraud.predict import load_run
    from level4_fraud.serving.rows import RowEnsemble

    loaded = load_run(run_dir)
    if loaded.info.get("deep_members"):
        # Sequence members read the card's whole history frame: not available per request.
        logger.warning("the ensemble has deep members: the grey zone uses the student only")
        return None
    typical = fast.typical_values()
    rows = RowEnsemble.from_run(loaded, typical)
    slow = sorted(set(rows.members) - set(rows.compiled))
    if slow:
        logger.info("grey-zone members scored through their own pipelines: %s", ", ".join(slow))
    return RowExplainer(loaded.spec.numeric, loaded.spec.categorical, typical, rows.predict, phrasing)


# ------------------------------------------------------------------------------------ scorer
@dataclass
class Scored:
    """A decision with what the audit log keeps besides it."""

    decision: DecisionOut
    features_hash: str
    features: OnlineFeatures


def features_hash(values: Mapping[str, Any]) -> str:
    """SHA-256 of the inputs as canonical JSON (NaN as null): proves what the model was given."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    text = json.dumps({k: clean(v) for k, v in sorted(values.items())}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class FraudScorer:
    """Decides one transaction at a time (see the module docstring). Thread-safe.

    Args:
        source: Where the inputs come from.
        fast: The student (None: it could not be loaded; every decision uses the rules).
        ensemble: The grey-zone model (None: the student decides everywhere).
        thresholds: Review and decline thresholds.
        cfg: Service settings (grey zone, reasons, rules).
        model_version: Reported with every decision.
    """

    def __init__(
        self,
        source: OnlineFeatureSource,
        fast: FastPath | None,
        ensemble: RowExplainer | None,
        thresholds: Thresholds,
        cfg: ServingConfig,
        model_version: str,
    ) -> None:
        self.source = source
        self.fast = fast
        self.ensemble = ensemble
        self.thresholds = thresholds
        self.cfg = cfg
        self.model_version = model_version
        self.warnings = LogThrottle(logger)

    @property
    def ledger(self) -> Ledger:
        """The card state."""
        return self.source.ledger

    def evaluate(self, tx: TransactionIn) -> Scored:
        """Decide `tx`; never raises for online-store or model failures (flags say what happened)."""
        t0 = time.perf_counter()
        online = self.source.features(tx)
        flags = list(online.flags)
        try:
            score, reasons, grey = self._model_score(online.values)
            if grey:
                flags.append(GREY_ZONE_ENSEMBLE)
        except Exception as exc:  # any failure of the model: the bank keeps deciding, by rules
            self.warnings.warning(
                "model", "model failed on transaction %s (%s): rules decide", tx.TRANSACTION_ID, exc
            )
            score, reasons = rules_score(online.values, self.cfg.rules)
            reasons = reasons[: self.cfg.reasons]
            flags.append(MODEL_FALLBACK_RULES)
        decision = DecisionOut(
            transaction_id=tx.TRANSACTION_ID,
            decision=self.thresholds.decide(score),
            score=score,
            model_version=self.model_version,
            latency_ms=(time.perf_counter() - t0) * 1000,
            reasons=reasons,
            flags=flags,
        )
        return Scored(decision, features_hash(online.values), online)

    def score(self, tx: TransactionIn) -> DecisionOut:
        """The decision on `tx` (no audit, no state update: `ScoringService.decide` does both)."""
        return self.evaluate(tx).decision

    def observe(self, tx: TransactionIn) -> None:
        """Add a decided transaction to the card state (once per transaction).

        A shared ledger that cannot be written loses this payment from the card's windows; the
        decision itself stands (it is in the audit log already), so this only logs.
        """
        try:
            self.ledger.record(tx)
        except CardStateUnavailableError as exc:
            self.warnings.error(
                "record", "card state not updated for transaction %s (%s)", tx.TRANSACTION_ID, exc
            )

    def _model_score(self, values: Mapping[str, Any]) -> tuple[float, list[Any], bool]:
        if self.fast is None:
            raise RuntimeError("no fast-path model loaded")
        x = self.fast.vector(values)
        p = float(self.fast.predict(x[None, :])[0])
        if not (math.isfinite(p) and 0.0 <= p <= 1.0):
            raise ValueError(f"the student returned {p}")
        low, high = self.cfg.grey_zone
        if self.ensemble is not None and low <= p <= high:
            try:
                filled = {**values, **{n: float(x[j]) for j, n in enumerate(self.fast.numeric)}}
                q, reasons = self.ensemble.score_and_explain(
                    filled, self.cfg.reasons, alert_at=self.thresholds.review
                )
                if math.isfinite(q) and 0.0 <= q <= 1.0:
                    return q, reasons, True
            except Exception as exc:  # the student's score stands
                self.warnings.warning("ensemble", "grey-zone ensemble failed (%s): the student decides", exc)
        alert = p >= self.thresholds.review
        return p, self.fast.explainer.reasons(x, p, values, self.cfg.reasons, alert=alert), False

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_run(
        cls,
        run_dir: str | Path,
        cfg: ServingConfig,
        *,
        feature_store: Any = None,
        model_version: str | None = None,
        online: bool = True,
        history: pd.DataFrame | None = None,
    ) -> FraudScorer:
        """The scorer of a run folder (``run`` or ``train`` output with the deep stage's student).

        Args:
            run_dir: The run folder.
            cfg: Service settings.
            feature_store: `feature_store.FeatureStoreConfig` of the online store (default: the
                run's SQLite store; Redis when that config says so).
            model_version: Reported with each decision (default: ``<run name>@<created>``).
            online: Read the Feast online store (False: card state and request only).
            history: The history folder's transactions when the caller has read them already
                (`ScoringService.from_run` shares them with the drift watch); None: read here.

        Raises:
            InputFileError: Not a level-4 run folder, or its history folder is unreadable.
        """
        from level4_fraud.train import read_run

        run_dir = Path(run_dir).resolve()
        info = read_run(run_dir)
        windows = tuple(int(w) for w in info.get("features", {}).get("windows", (1, 7, 30)))
        delay_days = int(info.get("features", {}).get("delay_days", DEFAULT_DELAY_DAYS))
        # The same settings the features are served with word the reasons (windows, delay, and
        # the "no known fraud" value of the terminal recency).
        phrasing = Phrasing(windows, delay_days)
        version = model_version or f"{run_dir.name}@{info.get('created', 'unknown')}"
        ledger, geo = _card_state(run_dir, info, cfg, windows, history, namespace=version)
        source = OnlineFeatureSource(
            _reader(run_dir, feature_store) if online else None, ledger, windows, geo, delay_days
        )
        fast = None
        try:
            fast = FastPath.load(run_dir, cfg.fast_path, threads=cfg.onnx_threads, phrasing=phrasing)
        except Exception as exc:  # a missing or corrupt student: the rules decide
            logger.error("fast-path model unavailable (%s): every decision falls back to rules", exc)
        ensemble = None
        if fast is not None:
            try:
                ensemble = _ensemble(run_dir, fast, phrasing)
            except Exception as exc:
                logger.error("ensemble unavailable (%s): the student decides the grey zone too", exc)
        return cls(source, fast, ensemble, run_thresholds(run_dir, info, cfg), cfg, version)

    def describe(self) -> dict[str, Any]:
        """State for ``/readyz``: what decides and how."""
        return {
            "model_version": self.model_version,
            "fast_path": None if self.fast is None else self.fast.kind,
            "grey_zone_ensemble": self.ensemble is not None,
            "grey_zone": list(self.cfg.grey_zone),
            "review_threshold": self.thresholds.review,
            "decline_threshold": self.thresholds.decline,
            "online_store": self.source.reader is not None,
            "cards_in_state": len(self.ledger),
        }


def _reader(run_dir: Path, feature_store: Any) -> FeastOnlineReader | None:
    from level4_fraud.feature_store import FeatureStoreConfig, FraudFeatureStore

    store = FraudFeatureStore(run_dir, feature_store or FeatureStoreConfig())
    if not store.layout.registry.is_file():
        logger.warning("%s has no Feast registry: serving without the online store", store.layout.root)
        return None
    try:
        return FeastOnlineReader(store)
    except Exception as exc:  # the registry cannot be read: decide without the store
        logger.error("Feast online store unavailable at start (%s)", exc)
        return None


def history_folder(run_dir: Path, info: Mapping[str, Any], cfg: ServingConfig) -> Path | None:
    """Where the card state starts from: the configured folder, the run's simulated data, or the
    folder ``train`` read (None: none exists; cards start unknown)."""
    candidates = [cfg.history, run_dir / "data" / "transactions", info.get("training", {}).get("source")]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    return None


def run_habit(info: Mapping[str, Any]) -> tuple[int, int] | None:
    """``(lag, days)`` of the card's spending habit when the run's models read it (None: its
    inputs hold no habit feature)."""
    from level4_fraud.features import HABIT_FEATURES

    inputs = set(info.get("spec", {}).get("numeric", ()))
    if not inputs.intersection(HABIT_FEATURES):
        return None
    settings = info["features"]
    return int(settings["habit_lag_days"]), int(settings["habit_days"])


def _card_state(
    run_dir: Path,
    info: Mapping[str, Any],
    cfg: ServingConfig,
    windows: tuple[int, ...],
    history: pd.DataFrame | None = None,
    *,
    namespace: str = "",
) -> tuple[Ledger, Geo | None]:
    """The card ledger from the history folder, and the side tables' coordinates when present.

    In the process by default; in Redis under a namespace of the run (``namespace``, the model
    version) when ``cfg.ledger_url`` is set, loaded from the history once for every process.

    Raises:
        ConfigError: ``cfg.ledger_url`` is set and Redis does not answer there.
    """
    from level4_fraud.predict import side_tables

    folder = history_folder(run_dir, info, cfg)
    habit = run_habit(info)
    customers, terminals = side_tables(folder) if folder is not None else (None, None)
    home = home_countries(customers)
    geo = Geo(customers, terminals) if customers is not None and terminals is not None else None
    if folder is None:
        logger.warning("no transaction history for %s: card state starts empty", run_dir)
    if cfg.ledger_url:
        shared = RedisCardLedger(
            connect_ledger(cfg.ledger_url), ledger_namespace(namespace or run_dir.name), windows,
            cfg.history_days, home, habit,
        )  # fmt: skip
        if folder is not None:
            shared.load(lambda: read_history(folder) if history is None else history)
        return shared, geo
    if folder is None:
        return CardLedger(windows, cfg.history_days, home, habit), geo
    memory = CardLedger.from_transactions(
        read_history(folder) if history is None else history,
        windows=windows,
        keep_days=cfg.history_days,
        home_country=home,
        habit=habit,
    )
    return memory, geo
