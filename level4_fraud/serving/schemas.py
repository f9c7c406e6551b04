"""Request and response models of the scoring service (shared by FastAPI, Ray Serve and streams)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Decision = Literal["approve", "review", "decline"]

# Flags a decision may carry (the response's ``flags``).
UNKNOWN_CARD = "unknown_card"
UNKNOWN_TERMINAL = "unknown_terminal"
ONLINE_STORE_UNAVAILABLE = "online_store_unavailable"
MODEL_FALLBACK_RULES = "model_fallback_rules"
GREY_ZONE_ENSEMBLE = "grey_zone_ensemble"
CARD_STATE_UNAVAILABLE = "card_state_unavailable"
FLAGS = (
    UNKNOWN_CARD,
    UNKNOWN_TERMINAL,
    ONLINE_STORE_UNAVAILABLE,
    MODEL_FALLBACK_RULES,
    GREY_ZONE_ENSEMBLE,
    CARD_STATE_UNAVAILABLE,
)


class TransactionIn(BaseModel):
    """One card transaction to score: the Fraud Detection Handbook's fields, and optionally the
    simulator's richer ones (merchant category, channel, country, device, currency)."""

    model_config = ConfigDict(
        extra="forbid",
        coerce_numbers_to_str=True,  # DEVICE_ID is a number in the simulator's files
        json_schema_extra={
            "examples": [
                {
                    "TRANSACTION_ID": 1_000_001,
                    "TX_DATETIME": "2018-05-31T10:15:00",
                    "CUSTOMER_ID": 42,
                    "TERMINAL_ID": 1234,
                    "TX_AMOUNT": 57.3,
                    "CHANNEL": "pos",
                }
            ]
        },
    )

    TRANSACTION_ID: int = Field(
        ..., ge=0, description="Unique id; a retry with the same id gets the same answer"
    )
    TX_DATETIME: datetime = Field(..., description="When it happened (ISO 8601; without a zone: UTC)")
    CUSTOMER_ID: int = Field(..., ge=0, description="The card (customer) id")
    TERMINAL_ID: int = Field(..., ge=0)
    TX_AMOUNT: float = Field(..., ge=0, description="Amount (finite, >= 0)")
    MERCHANT_CATEGORY: str | None = Field(None, max_length=64)
    CHANNEL: str | None = Field(None, max_length=16, description="pos, ecom or atm")
    COUNTRY: str | None = Field(None, max_length=8)
    DEVICE_ID: str | None = Field(None, max_length=64, description="-1 or empty: card present, no device")
    CURRENCY: str | None = Field(None, max_length=8)

    @field_validator("TX_AMOUNT")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("TX_AMOUNT must be a finite number")
        return value

    @field_validator("TX_DATETIME")
    @classmethod
    def _naive_utc(cls, value: datetime) -> datetime:
        # Features work in naive UTC, as the training data do.
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value


class Reason(BaseModel):
    """One reason code: a feature's contribution to this decision, in words."""

    feature: str = Field(..., description="Model input (or rule) name")
    value: float | None = Field(None, description="Its value for this transaction")
    contribution: float = Field(..., description="Change in the fraud log-odds it caused (> 0: raised risk)")
    text: str = Field(..., description="What it means, for a reviewer")


class DecisionOut(BaseModel):
    """The decision on one transaction."""

    transaction_id: int
    decision: Decision
    score: float = Field(..., description="Fraud probability in [0, 1]")
    model_version: str
    latency_ms: float = Field(
        ..., description="Time the service took to decide (first answer's, on a replay)"
    )
    reasons: list[Reason] = Field(default_factory=list)
    flags: list[str] = Field(default_factory=list, description=f"Any of: {', '.join(FLAGS)}")
    replayed: bool = Field(False, description="True when this is the stored answer to an earlier request")


class ErrorOut(BaseModel):
    """A 4xx/503 answer."""

    message: str
