"""Async HTTP client of the model service (BentoML or `model_app`, same contract)."""

from __future__ import annotations

import httpx
from pydantic import ValidationError

from level3_recsys.serving.scoring import ModelAnswer


class ModelCallError(RuntimeError):
    """The model service did not give a usable answer.

    Attributes:
        reason: Short label for metrics: ``connect``, ``timeout``, ``http_<status>``, ``invalid``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ModelClient:
    """Calls ``POST {base_url}/recommend``.

    Args:
        base_url: Model service root, e.g. ``http://127.0.0.1:3000``.
        timeout_s: httpx timeout for connect, read, write and pool waits (the circuit breaker
            adds an overall deadline on top).
        max_connections: Connection pool bound.
        transport: Custom transport (tests).
    """

    def __init__(
        self,
        base_url: str,
        timeout_s: float,
        *,
        max_connections: int = 100,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
        )

    async def recommend(self, user_id: str, k: int, device: str, hour: int) -> ModelAnswer:
        """Top-K for one user.

        Raises:
            ModelCallError: Connection refused, timeout, non-200 status or a malformed answer.
        """
        payload = {"user_id": user_id, "k": k, "device": device, "hour": hour}
        try:
            response = await self._client.post("/recommend", json=payload)
        except httpx.TimeoutException as exc:
            raise ModelCallError("timeout", f"model service timed out: {exc!r}") from exc
        except httpx.TransportError as exc:
            raise ModelCallError("connect", f"model service unreachable: {exc!r}") from exc
        if response.status_code != 200:
            raise ModelCallError(
                f"http_{response.status_code}", f"model service answered {response.status_code}"
            )
        try:
            return ModelAnswer.model_validate_json(response.content)
        except ValidationError as exc:
            raise ModelCallError("invalid", f"model service answer is malformed: {exc}") from exc

    async def ready(self) -> bool:
        """Whether the service answers its readiness probe."""
        try:
            response = await self._client.get("/readyz")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
