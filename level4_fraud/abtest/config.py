"""Settings of the sequential A/B test (the ``abtest`` section of the level's config)."""

from __future__ import annotations

from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

Metric = Literal["savings", "fraud_caught", "false_positive_rate", "review_load"]


class ABTestConfig(BaseModel):
    """A champion-versus-challenger experiment: who sees which model, and when to stop.

    Attributes:
        experiment: The experiment's name, also the key of the card-id hash: the same name
            always puts a card in the same arm, a new name reshuffles the cards independently.
        split: Share of the cards routed to the challenger.
        champion: The model serving arm A (a ``score_<name>`` column of the run's scores).
        challenger: The model serving arm B.
        metric: The primary metric the sequential test decides on (per transaction: ``savings``
            = fraud amount caught minus the review cost of the alert; ``fraud_caught`` = share of
            frauds alerted; ``false_positive_rate`` = share of genuine transactions alerted;
            ``review_load`` = share of transactions alerted). The others get confidence
            intervals too. The default is the false-positive rate: on the quick profile's small
            bank, a difference in savings needs far more traffic than a month (one compromised
            card more in an arm moves its savings by more than the models' difference).
        alpha: Type-I error of the whole sequence of looks (two-sided).
        effect_size: Standard deviation of the mSPRT's normal mixture over the true difference,
            in units of the metric's per-transaction standard deviation (the differences the
            test is tuned to find; Johari et al. 2017, section 4). None: the difference a
            fixed-horizon test of the planned traffic would detect with 80 % power (2.8 standard
            errors at the end of the traffic, extrapolated from the first look by transaction
            counts), which also makes the interval at the horizon close to its narrowest.
        mixture_sd: The same on the metric's own scale (overrides `effect_size`).
        min_cards: Cards each arm needs in a metric's population before its test looks (the
            card-clustered variance needs that many clusters to be trusted).
        look_every: Time between looks (a pandas offset: ``6h``, ``1D``).
        replicas: Weeks of traffic in the demonstration: the test week as scored, then
            bootstrap weeks of its cards (resampled with all their transactions).
        review_cost: Cost of reviewing one alert (None: the ``evaluation`` section's).
        fold: The scores file's fold the traffic comes from.
        aa_runs: A/A re-splits of the traffic to measure the test's false-positive rate on it
            (`calibration`; 0: none).
    """

    model_config = ConfigDict(extra="forbid")

    experiment: str = Field("champion-vs-challenger", min_length=1)
    split: float = Field(0.5, gt=0, lt=1)
    champion: str = "ensemble"
    challenger: str = "lightgbm"
    metric: Metric = "false_positive_rate"
    alpha: float = Field(0.05, gt=0, lt=0.5)
    effect_size: float | None = Field(None, gt=0)
    mixture_sd: float | None = Field(None, gt=0)
    min_cards: int = Field(50, ge=2)
    look_every: str = "6h"
    replicas: int = Field(4, ge=1, le=100)
    review_cost: float | None = Field(None, ge=0)
    fold: int = Field(0, ge=0)
    aa_runs: int = Field(0, ge=0, le=10_000)

    @field_validator("look_every")
    @classmethod
    def _offset(cls, value: str) -> str:
        try:
            step = pd.Timedelta(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a time offset (e.g. 6h, 1D)") from None
        if step <= pd.Timedelta(0):
            raise ValueError("must be positive")
        return value
