"""The event stream: transactions replayed in time order to the scoring service, directly or
through a Redis Stream read by a consumer group of scorers.

* `pacing` — a drift-free schedule (absolute deadlines at a given rate).
* `replay` — transactions of a ``generate`` or Handbook-layout folder as request payloads.
* `direct` — the payloads sent to the scoring API (``POST /v1/score``) at the paced rate.
* `producer` — the payloads published to a Redis Stream (``XADD``) at the paced rate, waiting
  for the consumer group to drain it, and the group's results.
* `consumer` — one scorer of the consumer group: ``XREADGROUP``, `ScoringService.decide`, push
  of the card's activity to the Feast online store, ``XACK`` once the audit log holds the
  decision; entries a dead consumer left pending are claimed with ``XAUTOCLAIM``.
* `stats` — throughput and latency of a replay.

Settings: `config.StreamConfig` (the ``stream`` section of the level's config).
"""
