"""Feast entities: the card (``CUSTOMER_ID``) and the terminal (``TERMINAL_ID``)."""

from __future__ import annotations

from feast import Entity, ValueType

from level4_fraud.schema import CUSTOMER_ID, TERMINAL_ID

card = Entity(
    name="card",
    join_keys=[CUSTOMER_ID],
    value_type=ValueType.INT64,
    description="A payment card (the Handbook's customer: one card per customer).",
)

terminal = Entity(
    name="terminal",
    join_keys=[TERMINAL_ID],
    value_type=ValueType.INT64,
    description="A payment terminal (point of sale or merchant endpoint).",
)
