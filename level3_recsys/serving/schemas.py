"""The recommendation API's HTTP contract: request bounds, bodies and answers (OpenAPI schemas).

The bounds are shared by the FastAPI route, which documents and validates them, and by the
ASGI fast path (`asgi.RecommendationFastPath`), which checks the same bounds by hand.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from level3_recsys.serving.scoring import ScoredItem

USER_ID_PATTERN = r"^[A-Za-z0-9_.:@-]{1,64}$"
DEVICE_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
K_MAX = 100
DEFAULT_K = 10
DEVICE_MAX_LEN = 32
DEFAULT_DEVICE = "unknown"
HOUR_MAX = 23


class RecommendationResponse(BaseModel):
    """A recommendation list and where it came from."""

    user_id: str
    items: list[ScoredItem]
    k: int = Field(description="list length asked for (items may be fewer for a tiny catalogue)")
    model_name: str
    model_version: str
    source: Literal["batch", "model", "fallback"]
    fallback: bool = Field(description="true when the popularity fallback answered")
    fallback_reason: str | None = Field(
        None, description="breaker_open, timeout, connect, http_<status>, ..."
    )
    cold_start: bool = Field(description="true when the model does not know the user (popularity ranking)")
    batch_generated_at: str | None = Field(None, description="generation time of the batch served")
    request_id: str


class FeedbackEvent(BaseModel):
    """One user event on a recommended item."""

    user_id: Annotated[str, Field(pattern=USER_ID_PATTERN)]
    item_id: int | Annotated[str, Field(min_length=1, max_length=64)]
    event: Literal["impression", "click", "watch"]
    model_version: Annotated[str, Field(max_length=64)] | None = None
    position: Annotated[int, Field(ge=1, le=100)] | None = None
    watch_seconds: Annotated[float, Field(ge=0, le=86_400)] | None = None
    request_id: Annotated[str, Field(max_length=64)] | None = None


class FeedbackAccepted(BaseModel):
    """Acknowledgement of a feedback event."""

    accepted: bool
    model_version: str = Field(description="the version label the event was counted under")


class ErrorMessage(BaseModel):
    """A request the API refused: a missing or wrong key (401), an unreadable body (400)."""

    detail: str


class FieldProblem(BaseModel):
    """One invalid field of a request."""

    type: str
    loc: list[str | int]
    msg: str


class ValidationProblem(BaseModel):
    """Invalid input (422): one readable line, and each field's problem."""

    message: str
    detail: list[FieldProblem]


class ShadowSummary(BaseModel):
    """The challenger-vs-champion comparison over the recent window (`enabled` false: no shadow)."""

    enabled: bool
    compared: int | None = None
    errors: int | None = None
    dropped: int | None = None
    queued: int | None = None
    mean_overlap_at_k: float | None = None
    champion_latency_p50_s: float | None = None
    challenger_latency_p50_s: float | None = None
    challenger_latency_p95_s: float | None = None
    champion_predicted_ctr: float | None = None
    challenger_predicted_ctr: float | None = None
    challenger_version: str | None = None


UNAUTHORIZED: dict[str, Any] = {"model": ErrorMessage, "description": "missing or wrong API key"}
INVALID: dict[str, Any] = {"model": ValidationProblem, "description": "invalid input"}
UNREADABLE_BODY: dict[str, Any] = {
    "model": ErrorMessage,
    "description": "a body that cannot be read as JSON text (for instance bytes that are not UTF-8)",
}
