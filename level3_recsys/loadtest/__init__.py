"""Level 3b operations: the serving workspace, the Locust traffic model and the load-test runner.

* `workspace` — a trained registry, a fresh batch and the serving reference in one folder
  (what the API, the model service, the containers and the load test need).
* `traffic`, `locustfile` — realistic traffic: Zipf-distributed users, a share of cold users,
  feedback (``L3__LOAD__*`` variables).
* `ceiling` — a plain FastAPI endpoint returning precomputed lists (the throughput ceiling).
* `servers` — starting the servers, their CPU and memory, the killed model service, the breaker watch.
* `locust_run` — Locust headless against one server; `results` — its figures and medians.
* `scenarios` — what each scenario runs; `report` — the Markdown section.
* `run_load` — the command line (``make load-test-level3``): writes
  ``benchmarks/sections/level3_load.md``.
"""
