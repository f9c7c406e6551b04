"""Level 3b operations: the serving workspace, the Locust traffic model and the load-test runner.

* `workspace` — a trained registry, a fresh batch and the serving reference in one folder
  (what the API, the model service, the containers and the load test need).
* `locustfile` — realistic traffic: Zipf-distributed users, a share of cold users, feedback.
* `ceiling` — a plain FastAPI endpoint returning precomputed lists (the throughput ceiling).
* `run_load` — starts the services on 127.0.0.1, runs Locust headless per scenario and writes
  ``benchmarks/sections/level3_load.md`` (``make load-test-level3``).
"""
