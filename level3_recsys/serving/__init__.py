"""Level 3b: serving the level's recommenders.

* `model_service` — the registry's champion as a BentoML service (top-K for a user with context).
* `model_app` — the same HTTP contract as a plain FastAPI app (for tests and a light local run).
* `api` — the recommendation API users call (`create_app(settings)`): routes and OpenAPI on
  top of `recommender.Recommender` (batch results when fresh, the model service otherwise, a
  popularity fallback behind a circuit breaker: always an answer) and the ASGI layer of `asgi`.
* `breaker`, `shadow`, `monitoring`, `settings`, `schemas`, `reference`, `scoring` — its parts.
* `processes`, `serve`, `cli` — the ``python -m level3_recsys serve ...`` commands that start
  the model service(s) and the API on 127.0.0.1.

Nothing here runs at import time; every object is built by a factory from settings.
"""
