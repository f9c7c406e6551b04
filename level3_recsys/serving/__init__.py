"""Level 3b: serving the level's recommenders.

* `model_service` — the registry's champion as a BentoML service (top-K for a user with context).
* `model_app` — the same HTTP contract as a plain FastAPI app (for tests and a light local run).
* `api` — the recommendation API users call (`create_app(settings)`): batch results when fresh,
  the model service otherwise, a popularity fallback behind a circuit breaker, always an answer.
* `breaker`, `shadow`, `monitoring`, `settings`, `reference`, `scoring` — its parts.
* `serve` — starts the model service(s) and the API on 127.0.0.1 for a person to try.

Nothing here runs at import time; every object is built by a factory from settings.
"""
