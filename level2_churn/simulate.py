"""Seeded simulator of a subscription business with a hidden churn hazard and deliberate mess.

`generate` writes the raw sources the way real systems hand them over::

    out_dir/
      customers.csv                      CRM export: one row per customer (signup plan, region, contract, ...)
      billing/part-00000.parquet         invoices, payments, failed payments, refunds (timestamps as text)
      support/part-00000.jsonl           tickets: created/resolved/escalated times, category, satisfaction
      usage/month=YYYY-MM/part-00000.parquet   daily usage logs, partitioned by the month they were loaded
      _truth/                            ground truth, never read by the modelling except via `oracle_scores`
        hazard/part-00000.parquet        customer_num, snapshot_date, p (true 30-day churn prob.), churned
        summary.json                     the `SimulationSummary` (row counts, churn rates, injected mess)

The world, one customer chunk at a time (bounded memory) and one month at a time:

* every customer has a latent engagement level that drifts (a third of them decline), a latent payment
  risk, a ticket rate and an unobserved "loyalty" term;
* each month start ``t`` the customer's true probability of leaving within the next 30 days is
  ``sigmoid(logit)`` where the logit is built from things visible in the data before ``t`` (usage over
  the last 30 days against the 60 before, failed payments and open or badly rated tickets over 90 days,
  a price rise in the last 90 days, tenure, contract type and days to contract end, plan) plus the
  unobserved loyalty term, so a model can recover most but not all of it;
* churn is drawn from that probability; the churn day falls within the 30 days after ``t``, so the label
  "churned within 30 days after t" is exactly a draw from the stored probability (the oracle).

Deliberate mess (rates in `MessConfig`; every injected cell/row is counted in
``SimulationSummary.mess[source][kind]`` and the same kind names are the ``rule`` names in the ingest
data-quality report):

================  ==========================================  ============================================
kind              where                                       what
================  ==========================================  ============================================
duplicate         customers, billing, support, usage          exact copies of rows (re-sent batches)
category_spelling customers, billing, support, usage          ``"Premium"``, ``" premium "``, ``"Prem."``,
                                                              ``"Month-to-month"`` for canonical values
date_format       customers, billing, support                 ``2024/01/05``, ``05 Jan 2024``, ``20240105``;
                                                              ISO times with other UTC offsets, epoch ms
missing           customers (region, age_band), billing       random blanks; satisfaction is also missing
                  (plan), usage (minutes, device),            *informatively* (unhappy customers skip the
                  support (satisfaction)                      survey)
unit_mistake      customers (price), billing (amount),        amounts in cents, minutes logged in seconds
                  usage (minutes)
outlier           billing (amount), usage (minutes,           impossible values (99999.99, negative
                  sessions), support (resolution)             minutes, resolved before created)
late_arrival      billing, usage                              ``loaded_at`` 15-45 days after the event
                                                              (usage rows land in a later month partition)
id_format         billing, support, usage, customers          ``c-123``, ``123``, ``cust_0000123``,
                                                              ``C0000123 `` for canonical ``C0000123``
orphan            billing, support, usage                     rows whose customer is not in customers.csv
================  ==========================================  ============================================
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.atomic import atomic_dir, atomic_write_json
from shared.errors import DataError, InputFileError
from shared.progress import track

# Canonical category values (what ingest normalises to) and the raw spellings the simulator emits.
PLANS = ("basic", "standard", "premium")
PLAN_PRICE = np.array([9.99, 19.99, 34.99])
REGIONS = ("north", "south", "east", "west", "central")
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
CHANNELS = ("organic", "paid_search", "social", "referral", "partner")
CONTRACTS = ("monthly", "annual", "two_year")
CONTRACT_DAYS = np.array([0, 365, 730])
DEVICES = ("mobile", "desktop", "tablet", "tv")
TXN_TYPES = ("invoice", "payment", "payment_failed", "refund")
TICKET_CATEGORIES = ("billing", "technical", "account", "cancellation", "other")
TICKET_CHANNELS = ("email", "phone", "chat")
SUBJECTS = {
    "billing": ("Charged twice", "Invoice looks wrong", "Card declined", "Refund request"),
    "technical": ("App crashes on start", "Cannot log in", "Video keeps buffering", "Sync not working"),
    "account": ("Change email address", "Reset password", "Update payment method"),
    "cancellation": ("How do I cancel", "Cancel my subscription", "Pause account"),
    "other": ("Question about features", "Feedback", "Partner offer"),
}

# Non-canonical spellings per canonical value; ingest's synonym table maps them back.
SPELLINGS: dict[str, tuple[str, ...]] = {
    "basic": ("Basic", "BASIC", " basic", "Bsc"),
    "standard": ("Standard", "STANDARD", "std", "Standard "),
    "premium": ("Premium", "PREMIUM", "Prem.", " premium "),
    "north": ("North", "NORTH", "N."),
    "south": ("South", "SOUTH", "S."),
    "east": ("East", "EAST", "E."),
    "west": ("West", "WEST", "W."),
    "central": ("Central", "CENTRAL", "Centre"),
    "organic": ("Organic", "ORGANIC"),
    "paid_search": ("Paid Search", "paid-search", "PPC"),
    "social": ("Social", "social media"),
    "referral": ("Referral", "REFERRAL", "refer-a-friend"),
    "partner": ("Partner", "PARTNER", "partners"),
    "monthly": ("Month-to-month", "month to month", "MONTHLY"),
    "annual": ("Annual", "One year", "yearly"),
    "two_year": ("Two year", "2-year", "TWO_YEAR"),
    "mobile": ("Mobile", "MOBILE", "phone"),
    "desktop": ("Desktop", "DESKTOP", "pc"),
    "tablet": ("Tablet", "iPad"),
    "tv": ("TV", "Smart TV"),
    "invoice": ("Invoice", "INVOICE"),
    "payment": ("Payment", "PAYMENT"),
    "payment_failed": ("Payment Failed", "FAILED_PAYMENT", "payment-failed"),
    "refund": ("Refund", "REFUND"),
    "billing": ("Billing", "BILLING", "bill"),
    "technical": ("Technical", "tech", "TECH SUPPORT"),
    "account": ("Account", "ACCOUNT"),
    "cancellation": ("Cancellation", "cancel"),
    "other": ("Other", "OTHER", "misc"),
    "email": ("Email", "E-mail", "EMAIL"),
    "phone": ("Phone", "PHONE", "call"),
    "chat": ("Chat", "live chat", "CHAT"),
}

MESS_KINDS = (
    "duplicate",
    "category_spelling",
    "date_format",
    "missing",
    "unit_mistake",
    "outlier",
    "late_arrival",
    "id_format",
    "orphan",
)
SOURCES = ("customers", "billing", "support", "usage")


class MessConfig(BaseModel):
    """Rates of each kind of deliberate mess (fractions of rows or cells)."""

    model_config = ConfigDict(extra="forbid")

    duplicate: float = Field(0.01, ge=0, le=0.5, description="share of rows sent twice")
    category_spelling: float = Field(0.05, ge=0, le=1, description="share of category cells misspelt")
    date_format: float = Field(0.10, ge=0, le=1, description="share of dates in a non-canonical format/zone")
    missing: float = Field(0.02, ge=0, le=0.5, description="share of cells blanked at random")
    informative_missing: float = Field(0.4, ge=0, le=1, description="P(no satisfaction score | unhappy)")
    unit_mistake: float = Field(0.005, ge=0, le=0.5, description="share of amounts/minutes in the wrong unit")
    outlier: float = Field(0.001, ge=0, le=0.5, description="share of rows with impossible values")
    late_arrival: float = Field(0.01, ge=0, le=0.5, description="share of events loaded 15-45 days late")
    id_format: float = Field(0.10, ge=0, le=1, description="share of customer ids in a drifting format")
    orphan: float = Field(0.003, ge=0, le=0.5, description="share of event rows with an unknown customer")


class SimulatorConfig(BaseModel):
    """What to simulate: population, horizon, seed, hidden-hazard strength and mess rates."""

    model_config = ConfigDict(extra="forbid")

    customers: int = Field(20_000, ge=20, description="number of customers (existing and new signups)")
    months: int = Field(24, ge=6, le=120, description="months of history from `start`")
    seed: int = Field(7, description="seed of every random draw")
    start: date = Field(date(2023, 1, 1), description="first day of the data (a month start)")
    chunk_size: int = Field(50_000, ge=100, description="customers simulated and written per chunk")
    existing_share: float = Field(0.6, gt=0, le=1, description="share of customers signed up before `start`")
    base_logit: float = Field(-3.9, description="intercept of the monthly churn logit")
    hidden_noise: float = Field(0.3, ge=0, description="sd of the unobserved per-customer loyalty term")
    mess: MessConfig = Field(default_factory=MessConfig)

    @field_validator("start")
    @classmethod
    def _month_start(cls, v: date) -> date:
        if v.day != 1:
            raise ValueError("start must be the first day of a month")
        return v


class SimulationSummary(BaseModel):
    """What `generate` wrote: sizes, churn rates and the injected mess, per source and kind."""

    out_dir: str
    customers: int
    months: int
    seed: int
    start: date
    end: date
    rows: dict[str, int]
    churn_rate_by_month: list[float]
    monthly_churn_rate: float
    mess: dict[str, dict[str, int]]


# --------------------------------------------------------------------------------------------
# helpers


def month_starts(start: date, months: int) -> np.ndarray:
    """Day offsets (from `start`) of the first day of each month, ``months + 1`` values (last = end)."""
    m0 = np.datetime64(start, "M")
    days = (m0 + np.arange(months + 1)).astype("datetime64[D]")
    return (days - np.datetime64(start, "D")).astype(np.int64)


def canonical_id(num: np.ndarray) -> np.ndarray:
    """Canonical customer id strings ``C0000123`` for customer numbers."""
    return np.char.add("C", np.char.zfill(num.astype(str), 7))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _ids_with_drift(num: np.ndarray, rate: float, rng: np.random.Generator) -> tuple[pa.Array, int]:
    """Customer ids as text, a share `rate` in a drifting format; returns (array, n drifted)."""
    uniq, inv = np.unique(num, return_inverse=True)
    s = uniq.astype(str)
    canon = np.char.add("C", np.char.zfill(s, 7))
    variants = [
        np.char.add("c-", s),
        s,
        np.char.add("cust_", np.char.zfill(s, 7)),
        np.char.add(canon, " "),
    ]
    table = pa.array(np.concatenate([canon, *variants]).tolist(), type=pa.string())
    drift = rng.random(len(num)) < rate
    which = np.where(drift, rng.integers(1, 5, len(num)), 0)
    return table.take(pa.array(which * len(uniq) + inv)), int(drift.sum())


def _spell(
    codes: np.ndarray, values: tuple[str, ...], rate: float, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """Category codes -> text with a share `rate` misspelt; -1 codes become missing. Returns (list, n)."""
    out = np.array(values, dtype=object)[np.clip(codes, 0, None)]
    out[codes < 0] = None
    mess = (rng.random(len(codes)) < rate) & (codes >= 0)
    idx = np.flatnonzero(mess)
    for k, value in enumerate(values):
        sel = idx[codes[idx] == k]
        if len(sel) == 0:
            continue
        alts = np.array(SPELLINGS[value], dtype=object)
        out[sel] = alts[rng.integers(len(alts), size=len(sel))]
    return out, int(mess.sum())


def _iso_utc(ts: np.ndarray) -> np.ndarray:
    """datetime64[s] -> ``2024-01-05T10:00:00Z`` strings."""
    return np.char.add(np.datetime_as_string(ts.astype("datetime64[s]"), unit="s"), "Z")


def _mixed_timestamps(ts: np.ndarray, rate: float, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Timestamps as text: canonical ISO UTC, a share `rate` with another UTC offset or a space separator."""
    out = _iso_utc(ts).astype(object)
    mess = rng.random(len(ts)) < rate
    idx = np.flatnonzero(mess)
    if len(idx):
        offsets_min = np.array([60, 120, -300, 330, -480])
        pick = offsets_min[rng.integers(len(offsets_min), size=len(idx))]
        local = ts[idx].astype("datetime64[s]") + (pick * 60).astype("timedelta64[s]")
        base = np.datetime_as_string(local, unit="s")
        sign = np.where(pick >= 0, "+", "-")
        hh = np.char.zfill((np.abs(pick) // 60).astype(str), 2)
        mm = np.char.zfill((np.abs(pick) % 60).astype(str), 2)
        txt = np.char.add(np.char.add(np.char.add(base, sign), np.char.add(hh, ":")), mm)
        space = rng.random(len(idx)) < 0.5
        txt = np.where(space, np.char.replace(txt, "T", " "), txt)
        out[idx] = txt
    return out, int(mess.sum())


def _mixed_dates(days: np.ndarray, rate: float, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """datetime64[D] (NaT allowed) as text: ISO, a share `rate` in other unambiguous formats."""
    out = np.full(len(days), None, dtype=object)
    ok = ~np.isnat(days)
    d = pd.to_datetime(days[ok])
    iso = d.strftime("%Y-%m-%d").to_numpy(dtype=object)
    mess = rng.random(ok.sum()) < rate
    fmts = ("%Y/%m/%d", "%d %b %Y", "%Y%m%d", "%b %d, %Y")
    choice = rng.integers(len(fmts), size=ok.sum())
    for k, f in enumerate(fmts):
        sel = mess & (choice == k)
        if sel.any():
            iso[sel] = d[sel].strftime(f).to_numpy(dtype=object)
    out[ok] = iso
    return out, int(mess.sum())


def _duplicate_rows(table: pa.Table, rate: float, rng: np.random.Generator) -> tuple[pa.Table, int]:
    n = table.num_rows
    k = int(rng.binomial(n, rate)) if n else 0
    if k == 0:
        return table, 0
    extra = table.take(pa.array(rng.choice(n, size=k, replace=False)))
    both = pa.concat_tables([table, extra])
    # Re-sent rows show up later in the file, not next to their original.
    order = np.concatenate([np.arange(n), rng.integers(0, n, size=k)])
    return both.take(pa.array(np.argsort(order, kind="stable"))), k


def _duplicate_df(df: pd.DataFrame, rate: float, rng: np.random.Generator) -> tuple[pd.DataFrame, int]:
    n = len(df)
    k = int(rng.binomial(n, rate)) if n else 0
    if k == 0:
        return df, 0
    order = np.concatenate([np.arange(n), rng.integers(0, n, size=k)])
    src = np.concatenate([np.arange(n), rng.choice(n, size=k, replace=False)])
    return df.iloc[src[np.argsort(order, kind="stable")]].reset_index(drop=True), k


# --------------------------------------------------------------------------------------------
# the world, one chunk of customers at a time
#
# Every random draw of a chunk comes from its one generator, in a fixed order: the customers, their
# hidden traits, then month by month the engagement drift, churn, usage, billing and tickets. That
# order is part of the output: reordering two draws changes every file of a seed.

NEVER = np.iinfo(np.int64).max // 4  # churn day of a customer who has not left
NO_PRICE_RISE = np.iinfo(np.int64).min // 4  # price-rise day of a customer whose price never rose
TECHNICAL = TICKET_CATEGORIES.index("technical")
PREMIUM = PLANS.index("premium")
MONTHLY = CONTRACTS.index("monthly")


@dataclass
class _Customers:
    """Who the chunk's customers are, as the CRM knows them (codes index the category tuples)."""

    num: np.ndarray  # customer numbers: C0000123 is number 123
    signup_day: np.ndarray  # day offset of the signup; negative for customers from before `start`
    signup_plan: np.ndarray  # PLANS code at signup
    region: np.ndarray  # REGIONS code
    age_band: np.ndarray  # AGE_BANDS code
    channel: np.ndarray  # CHANNELS code
    contract: np.ndarray  # CONTRACTS code
    plan_by_month: np.ndarray  # (customers, months) PLANS code, after upgrades and downgrades
    has_price_rise: np.ndarray  # whether the price rose once during the data
    price_rise_day: np.ndarray  # day of that rise (NO_PRICE_RISE when none)
    price_rise_pct: np.ndarray  # the rise as a fraction (0.0 when none)


@dataclass
class _Traits:
    """Hidden per-customer behaviour: never written, only seen through what it causes."""

    minutes_scale: np.ndarray  # typical minutes of a session
    activity: np.ndarray  # daily probability of using the service at engagement 1
    engagement_drift: np.ndarray  # mean monthly log-change of engagement (decliners drift down)
    payment_risk: np.ndarray  # probability that a payment fails
    ticket_rate: np.ndarray  # support tickets per month, before failures and price rises
    loyalty: np.ndarray  # the unobserved term of the churn logit
    usual_device: np.ndarray  # DEVICES code used four times out of five
    billing_day: np.ndarray  # day of the month (0-based) invoices go out


@dataclass
class _History:
    """What has happened so far: the state next month's churn hazard and events are drawn from."""

    minutes: np.ndarray  # (customers, days) minutes used per day
    churn_day: np.ndarray  # the day each customer leaves (NEVER until drawn)
    engagement: np.ndarray  # current engagement multiplier, drifting month by month
    failed_payment_days: list[np.ndarray]  # per month (customers, 2): failed payment days, -inf if none
    ticket_customer: np.ndarray  # every ticket so far: customer position in the chunk,
    ticket_created: np.ndarray  # ... creation day,
    ticket_resolved: np.ndarray  # ... resolution day (inf: never),
    ticket_satisfaction: np.ndarray  # ... satisfaction score (3 when none was given)

    @classmethod
    def start(cls, customers: int, days: int) -> _History:
        return cls(
            minutes=np.zeros((customers, days), dtype=np.float32),
            churn_day=np.full(customers, NEVER, dtype=np.int64),
            engagement=np.ones(customers),
            failed_payment_days=[],
            ticket_customer=np.zeros(0, np.int64),
            ticket_created=np.zeros(0),
            ticket_resolved=np.zeros(0),
            ticket_satisfaction=np.zeros(0),
        )


@dataclass(frozen=True)
class _Month:
    """One month of the simulation: its index, first day and length (day offsets from `start`)."""

    index: int
    start: int
    days: int


@dataclass(frozen=True)
class _Presence:
    """Who is a customer during a month, and from which day until which day (exclusive)."""

    first_day: np.ndarray  # per customer: max(signup, month start)
    end_day: np.ndarray  # per customer: min(churn day, next month start)
    live: np.ndarray  # positions of the customers with at least one day in the month


@dataclass
class _Chunk:
    """Clean simulated records of one customer chunk (numpy arrays, day offsets from `start`).

    The event sources are dicts of equally long columns: ``usage`` (customer, day, sessions, minutes,
    features_used, device), ``billing`` (customer, time, kind, amount, discount, plan), ``tickets``
    (customer, created, resolved, satisfaction, escalated_at, category, channel) and ``truth`` (num,
    day, p, churned: the hidden hazard at each month start). ``customer`` is a position in `customers`.
    """

    customers: _Customers
    churn_day: np.ndarray
    usage: dict[str, np.ndarray]
    billing: dict[str, np.ndarray]
    tickets: dict[str, np.ndarray]
    truth: dict[str, np.ndarray]


USAGE_COLUMNS = ("customer", "day", "sessions", "minutes", "features_used", "device")
BILLING_COLUMNS = ("customer", "time", "kind", "amount", "discount", "plan")
TICKET_COLUMNS = ("customer", "created", "resolved", "satisfaction", "escalated_at", "category", "channel")
TRUTH_COLUMNS = ("num", "day", "p", "churned")


def _simulate_chunk(
    cfg: SimulatorConfig, first_num: int, n: int, ms: np.ndarray, rng: np.random.Generator
) -> _Chunk:
    """Simulate `n` customers (numbers ``first_num + 1`` on) month by month over the month starts `ms`."""
    customers = _draw_customers(cfg, first_num, n, ms, rng)
    traits = _draw_traits(cfg, n, rng)
    history = _History.start(n, int(ms[-1]))
    events: dict[str, list[dict[str, np.ndarray]]] = {"usage": [], "billing": [], "tickets": [], "truth": []}
    for index in range(len(ms) - 1):
        month = _Month(index, int(ms[index]), int(ms[index + 1] - ms[index]))
        if index:
            _drift_engagement(traits, history, rng)
        events["truth"] += _simulate_churn(cfg, month, customers, traits, history, rng)
        presence = _presence(month, customers, history)
        if len(presence.live) == 0:
            history.failed_payment_days.append(np.full((n, 2), -np.inf))
            continue
        events["usage"].append(_simulate_usage(month, presence, traits, history, rng))
        billing, failed_days = _simulate_billing(month, presence, customers, traits, rng)
        events["billing"] += billing
        history.failed_payment_days.append(failed_days)
        events["tickets"] += _simulate_tickets(month, presence, failed_days, customers, traits, history, rng)
    return _Chunk(
        customers=customers,
        churn_day=history.churn_day,
        usage=_columns(events["usage"], USAGE_COLUMNS),
        billing=_columns(events["billing"], BILLING_COLUMNS),
        tickets=_columns(events["tickets"], TICKET_COLUMNS),
        truth=_columns(events["truth"], TRUTH_COLUMNS),
    )


def _columns(parts: list[dict[str, np.ndarray]], names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """One array per column, the parts one after the other (empty float arrays when there are none)."""
    return {name: np.concatenate([p[name] for p in parts]) if parts else np.zeros(0) for name in names}


def _draw_customers(
    cfg: SimulatorConfig, first_num: int, n: int, ms: np.ndarray, rng: np.random.Generator
) -> _Customers:
    """Signup day and CRM attributes, plan changes (seen in invoices) and price rises (CRM and invoices)."""
    months, days = len(ms) - 1, int(ms[-1])
    existing = rng.random(n) < cfg.existing_share
    signup_day = np.where(existing, -rng.integers(1, 3 * 365, n), rng.integers(0, days - 1, n))
    signup_plan = rng.choice(3, n, p=[0.5, 0.35, 0.15])
    region = rng.choice(5, n, p=[0.25, 0.2, 0.2, 0.2, 0.15])
    age_band = rng.choice(6, n, p=[0.12, 0.28, 0.25, 0.17, 0.11, 0.07])
    channel = rng.choice(5, n, p=[0.35, 0.25, 0.2, 0.12, 0.08])
    contract = rng.choice(3, n, p=[0.6, 0.3, 0.1])
    # 8% change plan once, one step up or down, from a random month on.
    changes_plan = rng.random(n) < 0.08
    change_month = rng.integers(1, months, n)
    new_plan = np.clip(signup_plan + rng.choice([-1, 1], n), 0, 2)
    after_change = changes_plan[:, None] & (np.arange(months)[None, :] >= change_month[:, None])
    plan_by_month = np.where(after_change, new_plan[:, None], np.repeat(signup_plan[:, None], months, axis=1))
    # A quarter see their price rise 8-25% at the start of a random month.
    has_rise = rng.random(n) < 0.25
    rise_month = rng.integers(1, months, n)
    return _Customers(
        num=np.arange(first_num + 1, first_num + n + 1, dtype=np.int64),
        signup_day=signup_day.astype(np.int64),
        signup_plan=signup_plan,
        region=region,
        age_band=age_band,
        channel=channel,
        contract=contract,
        plan_by_month=plan_by_month,
        has_price_rise=has_rise,
        price_rise_day=np.where(has_rise, ms[rise_month], NO_PRICE_RISE),
        price_rise_pct=np.where(has_rise, np.round(rng.uniform(0.08, 0.25, n), 2), 0.0),
    )


def _draw_traits(cfg: SimulatorConfig, n: int, rng: np.random.Generator) -> _Traits:
    """The hidden behaviour of each customer; 35% are decliners whose engagement drifts down."""
    minutes_scale = rng.lognormal(np.log(18.0), 0.5, n)
    activity = rng.beta(2.5, 4.5, n)
    decliner = rng.random(n) < 0.35
    drift = np.where(decliner, rng.normal(-0.15, 0.07, n), rng.normal(0.0, 0.02, n))
    payment_risk = np.where(rng.random(n) < 0.12, rng.uniform(0.15, 0.4, n), 0.015)
    ticket_rate = rng.gamma(1.0, 0.12, n)
    loyalty = rng.normal(0.0, cfg.hidden_noise, n) if cfg.hidden_noise > 0 else np.zeros(n)
    return _Traits(
        minutes_scale=minutes_scale,
        activity=activity,
        engagement_drift=drift,
        payment_risk=payment_risk,
        ticket_rate=ticket_rate,
        loyalty=loyalty,
        usual_device=rng.choice(4, n, p=[0.55, 0.3, 0.1, 0.05]),
        billing_day=rng.integers(0, 28, n),
    )


def _drift_engagement(traits: _Traits, history: _History, rng: np.random.Generator) -> None:
    """One month of engagement drift, with noise, kept within [0.03, 3]."""
    noise = rng.normal(0, 0.12, len(history.engagement))
    history.engagement = np.clip(history.engagement * np.exp(traits.engagement_drift + noise), 0.03, 3.0)


def _simulate_churn(
    cfg: SimulatorConfig,
    month: _Month,
    customers: _Customers,
    traits: _Traits,
    history: _History,
    rng: np.random.Generator,
) -> list[dict[str, np.ndarray]]:
    """Draw who of the active customers leaves within 30 days of the month start.

    Returns:
        The hidden truth of the month (none when nobody is active): each active customer's true
        probability of leaving and whether they did.
    """
    t = month.start
    active = np.flatnonzero((customers.signup_day < t) & (history.churn_day >= t))
    if len(active) == 0:
        return []
    p = _sigmoid(_churn_logit(cfg, month, active, customers, traits, history))
    leaves = rng.random(len(active)) < p
    churn_day = t + np.floor(rng.random(len(active)) * min(30, month.days)).astype(np.int64)
    history.churn_day[active[leaves]] = churn_day[leaves]
    return [
        {
            "num": customers.num[active],
            "day": np.full(len(active), t),
            "p": p.astype(np.float32),
            "churned": leaves,
        }
    ]


def _churn_logit(
    cfg: SimulatorConfig,
    month: _Month,
    active: np.ndarray,
    customers: _Customers,
    traits: _Traits,
    history: _History,
) -> np.ndarray:
    """The churn logit of the `active` customers at the month start, from what happened before it."""
    t = month.start
    usage_30d = history.minutes[active, max(t - 30, 0) : t].sum(1, dtype=np.float64)
    usage_60d_before = history.minutes[active, max(t - 90, 0) : max(t - 30, 0)].sum(1, dtype=np.float64)
    tenure = t - customers.signup_day[active]
    failed_90d = np.zeros(len(active))
    for days in history.failed_payment_days[-4:]:
        failed = days[active]
        failed_90d += ((failed >= t - 90) & (failed < t)).sum(1)
    open_tickets, unhappy_tickets = _ticket_counts(t, active, len(customers.num), history)
    rise_day = customers.price_rise_day[active]
    price_rise_90d = (rise_day >= t - 90) & (rise_day < t)
    contract = customers.contract[active]
    period = CONTRACT_DAYS[contract]
    days_to_end = np.where(period > 0, period - np.mod(tenure, np.maximum(period, 1)), 9999)
    trend = np.where(tenure >= 90, np.clip(np.log1p(usage_30d) - np.log1p(usage_60d_before / 2), -3, 3), 0.0)
    # Before 90 days of data exist the usage terms are unknowable, so they are left out.
    burn_in = 0.0 if t >= 90 else 1.0
    return (
        cfg.base_logit
        - (1 - burn_in) * 0.9 * trend
        - (1 - burn_in) * 0.25 * (np.log1p(usage_30d) - 5.0)
        + 0.7 * np.minimum(failed_90d, 3)
        + 0.6 * np.minimum(open_tickets, 3)
        + 0.5 * np.minimum(unhappy_tickets, 3)
        + 0.9 * price_rise_90d
        + 0.8 * np.exp(-tenure / 180.0)
        + np.where(contract == MONTHLY, 0.4, np.where(days_to_end <= 30, 1.6, -1.0))
        - 0.2 * (customers.plan_by_month[active, month.index] == PREMIUM)
        + traits.loyalty[active]
    )


def _ticket_counts(t: int, active: np.ndarray, n: int, history: _History) -> tuple[np.ndarray, np.ndarray]:
    """Per active customer: tickets open at day `t`, and tickets rated 2 or less in the 90 days before."""
    open_tickets = np.zeros(len(active))
    unhappy_tickets = np.zeros(len(active))
    if len(history.ticket_customer):
        created, resolved = history.ticket_created, history.ticket_resolved
        is_open = (created < t) & (resolved >= t)
        unhappy = (resolved >= t - 90) & (resolved < t) & (history.ticket_satisfaction <= 2)
        position = np.full(n, -1)
        position[active] = np.arange(len(active))
        owner = position[history.ticket_customer]  # -1 for tickets of customers no longer active
        open_tickets = np.bincount(owner[is_open & (owner >= 0)], minlength=len(active)).astype(float)
        unhappy_tickets = np.bincount(owner[unhappy & (owner >= 0)], minlength=len(active)).astype(float)
    return open_tickets, unhappy_tickets


def _presence(month: _Month, customers: _Customers, history: _History) -> _Presence:
    """The days of the month each customer is a customer: from signup (or the month start) to churn."""
    first_day = np.maximum(customers.signup_day, month.start)
    end_day = np.minimum(history.churn_day, month.start + month.days)
    return _Presence(first_day, end_day, np.flatnonzero(first_day < end_day))


def _simulate_usage(
    month: _Month, presence: _Presence, traits: _Traits, history: _History, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Daily usage of the month's customers; the minutes also go into the history (the hazard reads them)."""
    live = presence.live
    days = month.start + np.arange(month.days)
    first_day, end_day = presence.first_day[live, None], presence.end_day[live, None]
    present = (days[None, :] >= first_day) & (days[None, :] < end_day)
    engagement = history.engagement
    p_use = np.clip(traits.activity[live] * engagement[live] ** 0.7, 0, 0.95)
    used = present & (rng.random((len(live), month.days)) < p_use[:, None])
    row, day = np.nonzero(used)
    customer = live[row]
    sessions = 1 + rng.poisson(0.6 * np.minimum(engagement[customer], 2.0))
    minutes = rng.gamma(2.0 * sessions, traits.minutes_scale[customer] * engagement[customer] / 2.0)
    minutes = np.round(np.minimum(minutes, 170.0 * sessions), 1)
    history.minutes[customer, month.start + day] = minutes
    features_used = 1 + rng.binomial(8, np.clip(0.15 + 0.15 * engagement[customer], 0, 0.9))
    usual = rng.random(len(customer)) < 0.8
    device = np.where(usual, traits.usual_device[customer], rng.integers(0, 4, len(customer)))
    return {
        "customer": customer,
        "day": month.start + day,
        "sessions": sessions,
        "minutes": minutes,
        "features_used": features_used,
        "device": device,
    }


def _simulate_billing(
    month: _Month, presence: _Presence, customers: _Customers, traits: _Traits, rng: np.random.Generator
) -> tuple[list[dict[str, np.ndarray]], np.ndarray]:
    """Invoices on each customer's billing day, then a payment or a failure (retried 5 days later); refunds.

    Returns:
        The month's billing events, and its failed-payment days: (customers, 2) for the first try and
        the retry, ``-inf`` where the payment did not fail.
    """
    n = len(customers.num)
    failed_days = np.full((n, 2), -np.inf)
    bill_day = month.start + np.minimum(traits.billing_day, month.days - 1)
    billed = np.flatnonzero((bill_day >= presence.first_day) & (bill_day < presence.end_day))
    if len(billed) == 0:
        return [], failed_days
    day = bill_day[billed]
    price = PLAN_PRICE[customers.plan_by_month[billed, month.index]] * np.where(
        customers.price_rise_day[billed] <= day, 1 + customers.price_rise_pct[billed], 1
    )
    price = np.round(price, 2)
    # New customers often get a 20% promotion; 5% of the others a 10% goodwill discount.
    promotion = (day - customers.signup_day[billed] < 90) & (rng.random(len(billed)) < 0.5)
    goodwill = rng.random(len(billed)) < 0.05
    discount = np.round(np.where(promotion, 0.2 * price, np.where(goodwill, 0.1 * price, 0)), 2)
    due = price - discount
    hour = rng.uniform(0.05, 0.3, len(billed))
    fails = rng.random(len(billed)) < traits.payment_risk[billed]
    retry_fails = fails & (rng.random(len(billed)) < 0.5)
    retry_pays = fails & ~retry_fails
    refunded = rng.random(len(billed)) < 0.015
    refund_delay = rng.integers(1, 10, refunded.sum())
    refund_share = rng.uniform(0.2, 1.0, refunded.sum())
    # (who, when, kind, amount, discount): the invoice carries the discount, payments the amount due.
    groups = [
        (billed, day + hour, "invoice", price, discount),
        (billed[~fails], day[~fails] + hour[~fails] + 0.1, "payment", due[~fails], None),
        (billed[fails], day[fails] + hour[fails] + 0.1, "payment_failed", due[fails], None),
        (billed[retry_pays], day[retry_pays] + 5 + hour[retry_pays], "payment", due[retry_pays], None),
        (
            billed[retry_fails],
            day[retry_fails] + 5 + hour[retry_fails],
            "payment_failed",
            due[retry_fails],
            None,
        ),
        (
            billed[refunded],
            day[refunded] + refund_delay + hour[refunded],
            "refund",
            np.round(due[refunded] * refund_share, 2),
            None,
        ),
    ]
    events = [
        {
            "customer": who,
            "time": when,
            "kind": np.full(len(who), TXN_TYPES.index(kind)),
            "amount": amount,
            "discount": np.zeros(len(who)) if discount_ is None else discount_,
            "plan": customers.plan_by_month[who, month.index],
        }
        for who, when, kind, amount, discount_ in groups
    ]
    failed_days[billed[fails], 0] = day[fails]
    failed_days[billed[retry_fails], 1] = day[retry_fails] + 5
    return events, failed_days


def _simulate_tickets(
    month: _Month,
    presence: _Presence,
    failed_days: np.ndarray,
    customers: _Customers,
    traits: _Traits,
    history: _History,
    rng: np.random.Generator,
) -> list[dict[str, np.ndarray]]:
    """Support tickets of the month: more after a failed payment or a recent price rise.

    Slow resolutions get low satisfaction and escalations; 5% are never resolved. The tickets also go
    into the history (the hazard counts open and badly rated ones).
    """
    live = presence.live
    failed = failed_days[live, 0] > -np.inf
    recent_rise = customers.price_rise_day[live] >= month.start - 60
    rate = traits.ticket_rate[live] * (1 + 1.5 * failed + 0.8 * recent_rise)
    share_of_month = (presence.end_day[live] - presence.first_day[live]) / month.days
    customer = np.repeat(live, rng.poisson(rate * share_of_month))
    k = len(customer)
    if k == 0:
        return []
    first, end = presence.first_day[customer], presence.end_day[customer]
    created = first + rng.random(k) * (end - first)
    category = rng.choice(5, k, p=[0.3, 0.4, 0.15, 0.05, 0.1])
    hours = rng.lognormal(np.log(20.0), 1.0, k) * np.where(category == TECHNICAL, 1.5, 1.0)
    never = rng.random(k) < 0.05
    resolved = np.where(never, np.inf, created + hours / 24.0)
    satisfaction = np.clip(np.round(5.2 - np.log(hours) / 1.2 + rng.normal(0, 0.8, k)), 1, 5)
    satisfaction = np.where(never, np.nan, satisfaction)
    escalated = (rng.random(k) < 0.5 * _sigmoid(np.log(hours) - 4.0)) & ~never
    escalated_at = np.where(escalated, created + 0.5 * hours / 24.0, np.nan)
    channel = rng.choice(3, k, p=[0.45, 0.3, 0.25])
    history.ticket_customer = np.concatenate([history.ticket_customer, customer])
    history.ticket_created = np.concatenate([history.ticket_created, created])
    history.ticket_resolved = np.concatenate([history.ticket_resolved, resolved])
    # An unrated ticket counts as neutral for "badly rated".
    history.ticket_satisfaction = np.concatenate(
        [history.ticket_satisfaction, np.nan_to_num(satisfaction, nan=3.0)]
    )
    return [
        {
            "customer": customer,
            "created": created,
            "resolved": resolved,
            "satisfaction": satisfaction,
            "escalated_at": escalated_at,
            "category": category,
            "channel": channel,
        }
    ]


# --------------------------------------------------------------------------------------------
# writers with mess


def _to_ts(start: np.datetime64, days: np.ndarray) -> np.ndarray:
    """Fractional day offsets -> datetime64[s] (NaT for non-finite)."""
    out = np.full(len(days), np.datetime64("NaT"), dtype="datetime64[s]")
    ok = np.isfinite(days)
    out[ok] = start.astype("datetime64[s]") + np.round(days[ok] * 86400).astype("timedelta64[s]")
    return out


class _Writer:
    """Writes one chunk's messy raw files and accumulates counts."""

    def __init__(self, cfg: SimulatorConfig, out: Path, ms: np.ndarray):
        self.cfg = cfg
        self.out = out
        self.start = np.datetime64(cfg.start, "D")
        self.end_day = int(ms[-1])
        self.ms = ms
        self.mess = {s: dict.fromkeys(MESS_KINDS, 0) for s in SOURCES}
        self.rows = dict.fromkeys(SOURCES, 0)
        self.rows["not_yet_arrived"] = 0

    def _count(self, source: str, kind: str, k: int) -> None:
        self.mess[source][kind] += int(k)

    def _orphans(self, c_num: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Replace a share of customer numbers by numbers with no customer; returns (nums, mask)."""
        mask = rng.random(len(c_num)) < self.cfg.mess.orphan
        nums = c_num.copy()
        nums[mask] = self.cfg.customers + 1 + rng.integers(0, 10 * self.cfg.customers + 1000, mask.sum())
        return nums, mask

    def customers(self, ch: _Chunk, rng: np.random.Generator, first: bool) -> None:
        mc = self.cfg.mess
        n = len(ch.customers.num)
        people = ch.customers
        ids, k_id = _ids_with_drift(people.num, mc.id_format * 0.3, rng)
        self._count("customers", "id_format", k_id)
        signup = self.start + people.signup_day.astype("timedelta64[D]")
        cancel = np.where(ch.churn_day < self.end_day, ch.churn_day, 0).astype("timedelta64[D]") + self.start
        cancel = np.where(ch.churn_day < self.end_day, cancel, np.datetime64("NaT"))
        signup_s, k1 = _mixed_dates(signup, mc.date_format, rng)
        cancel_s, k2 = _mixed_dates(cancel, mc.date_format, rng)
        self._count("customers", "date_format", k1 + k2)
        total_spell = 0
        cols = {}
        for name, codes, values in (
            ("plan", people.signup_plan, PLANS),
            ("region", people.region, REGIONS),
            ("age_band", people.age_band, AGE_BANDS),
            ("channel", people.channel, CHANNELS),
            ("contract", people.contract, CONTRACTS),
        ):
            codes = codes.copy()
            if name == "region":
                miss = rng.random(n) < mc.missing
                codes[miss] = -1
                self._count("customers", "missing", miss.sum())
            if name == "age_band":
                # Informative missing: older customers skip the age question more often.
                miss = rng.random(n) < mc.missing * (1 + codes)
                codes[miss] = -1
                self._count("customers", "missing", miss.sum())
            rate = 0.0 if name == "age_band" else mc.category_spelling
            cols[name], k = _spell(codes, values, rate, rng)
            total_spell += k
        self._count("customers", "category_spelling", total_spell)
        price = PLAN_PRICE[people.signup_plan].copy()
        cents = rng.random(n) < mc.unit_mistake
        price[cents] = np.round(price[cents] * 100)
        self._count("customers", "unit_mistake", cents.sum())
        rise_date = np.where(
            people.has_price_rise,
            self.start + np.where(people.has_price_rise, people.price_rise_day, 0).astype("timedelta64[D]"),
            np.datetime64("NaT"),
        )
        df = pd.DataFrame(
            {
                "customer_id": ids.to_numpy(zero_copy_only=False),
                "signup_date": signup_s,
                "cancel_date": cancel_s,
                "plan": cols["plan"],
                "region": cols["region"],
                "age_band": cols["age_band"],
                "channel": cols["channel"],
                "contract": cols["contract"],
                "monthly_price": price,
                "price_change_date": pd.to_datetime(rise_date).strftime("%Y-%m-%d"),
                "price_change_pct": np.where(
                    people.has_price_rise, np.round(100 * people.price_rise_pct, 1), np.nan
                ),
            }
        )
        df, k_dup = _duplicate_df(df, mc.duplicate * 0.5, rng)
        self._count("customers", "duplicate", k_dup)
        df.to_csv(self.out / "customers.csv", mode="w" if first else "a", header=first, index=False)
        self.rows["customers"] += len(df)

    def billing(self, ch: _Chunk, rng: np.random.Generator, part: int) -> None:
        mc = self.cfg.mess
        b = ch.billing
        n = len(b["customer"])
        late = rng.random(n) < mc.late_arrival
        delay = np.where(late, rng.uniform(15, 45, n), rng.uniform(0.001, 0.02, n))
        loaded_days = b["time"] + delay
        # Late rows whose load falls after the export have not arrived yet: they are not in the files.
        keep = loaded_days < self.end_day
        self.rows["not_yet_arrived"] += int((~keep).sum())
        b = {k: v[keep] for k, v in b.items()}
        late, loaded_days, n = late[keep], loaded_days[keep], int(keep.sum())
        self._count("billing", "late_arrival", late.sum())
        c_num, orphan = self._orphans(ch.customers.num[b["customer"].astype(np.int64)], rng)
        self._count("billing", "orphan", orphan.sum())
        ids, k_id = _ids_with_drift(c_num, mc.id_format, rng)
        self._count("billing", "id_format", k_id)
        ts = _to_ts(self.start, b["time"])
        ts_s, k_ts = _mixed_timestamps(ts, mc.date_format, rng)
        self._count("billing", "date_format", k_ts)
        kind, k_kind = _spell(b["kind"].astype(np.int64), TXN_TYPES, mc.category_spelling, rng)
        plan_codes = b["plan"].astype(np.int64)
        miss = rng.random(n) < mc.missing
        plan_codes[miss] = -1
        self._count("billing", "missing", miss.sum())
        plan, k_plan = _spell(plan_codes, PLANS, mc.category_spelling, rng)
        self._count("billing", "category_spelling", k_kind + k_plan)
        amount = b["amount"].astype(np.float64).copy()
        u = rng.random(n)
        cents = u < mc.unit_mistake
        outl = (u >= mc.unit_mistake) & (u < mc.unit_mistake + mc.outlier)
        amount[cents] = np.round(amount[cents] * 100)
        amount[outl] = 99999.99
        self._count("billing", "unit_mistake", cents.sum())
        self._count("billing", "outlier", outl.sum())
        txn = np.char.add(f"T{part:05d}-", np.arange(n).astype(str))
        table = pa.table(
            {
                "txn_id": pa.array(txn.tolist()),
                "customer_id": ids,
                "ts": pa.array(ts_s.tolist(), type=pa.string()),
                "loaded_at": pa.array(_to_ts(self.start, loaded_days), type=pa.timestamp("s", tz="UTC")),
                "type": pa.array(kind.tolist(), type=pa.string()),
                "amount": pa.array(amount),
                "discount": pa.array(b["discount"].astype(np.float64)),
                "currency": pa.array(np.full(n, "EUR").tolist()),
                "plan": pa.array(plan.tolist(), type=pa.string()),
            }
        )
        table, k_dup = _duplicate_rows(table, mc.duplicate, rng)
        self._count("billing", "duplicate", k_dup)
        pq.write_table(table, self.out / "billing" / f"part-{part:05d}.parquet")
        self.rows["billing"] += table.num_rows

    def support(self, ch: _Chunk, rng: np.random.Generator, part: int) -> None:
        mc = self.cfg.mess
        t = ch.tickets
        n = len(t["customer"])
        c_num, orphan = self._orphans(ch.customers.num[t["customer"].astype(np.int64)], rng)
        self._count("support", "orphan", orphan.sum())
        ids, k_id = _ids_with_drift(c_num, mc.id_format, rng)
        self._count("support", "id_format", k_id)
        resolved = t["resolved"].copy()
        resolved[resolved >= self.end_day] = np.inf  # not resolved yet at export time
        sat = t["satisfaction"].copy()
        sat[~np.isfinite(resolved)] = np.nan
        esc_at = t["escalated_at"].copy()
        esc_at[esc_at >= self.end_day] = np.nan
        # Outliers: resolved before created.
        outl = (rng.random(n) < mc.outlier) & np.isfinite(resolved)
        resolved[outl] = t["created"][outl] - rng.uniform(1, 5, outl.sum())
        self._count("support", "outlier", outl.sum())
        # Missing satisfaction: at random, and informatively for unhappy customers.
        has = np.isfinite(sat)
        miss = has & ((rng.random(n) < mc.missing) | ((sat <= 2) & (rng.random(n) < mc.informative_missing)))
        sat[miss] = np.nan
        self._count("support", "missing", miss.sum())
        created_ts = _to_ts(self.start, t["created"])
        resolved_ts = _to_ts(self.start, resolved)
        esc_ts = _to_ts(self.start, esc_at)
        created_s, k1 = _mixed_timestamps(created_ts, mc.date_format, rng)
        # Some systems export epoch milliseconds.
        epoch = rng.random(n) < mc.date_format * 0.3
        created_o = created_s.astype(object)
        created_o[epoch] = (created_ts[epoch].astype("datetime64[ms]").astype(np.int64)).tolist()
        k1 = int(((created_s != _iso_utc(created_ts)) | epoch).sum())
        resolved_s, k2 = _mixed_timestamps(resolved_ts, mc.date_format, rng)
        resolved_s[np.isnat(resolved_ts)] = None
        k2 = int((resolved_s[~np.isnat(resolved_ts)] != _iso_utc(resolved_ts[~np.isnat(resolved_ts)])).sum())
        esc_s = _iso_utc(esc_ts).astype(object)
        esc_s[np.isnat(esc_ts)] = None
        self._count("support", "date_format", k1 + k2)
        cat, kc = _spell(t["category"].astype(np.int64), TICKET_CATEGORIES, mc.category_spelling, rng)
        chan, kh = _spell(t["channel"].astype(np.int64), TICKET_CHANNELS, mc.category_spelling, rng)
        self._count("support", "category_spelling", kc + kh)
        subj = np.array(
            [
                SUBJECTS[c][i % len(SUBJECTS[c])]
                for c, i in zip(
                    np.array(TICKET_CATEGORIES)[t["category"].astype(np.int64)],
                    rng.integers(0, 12, n),
                    strict=True,
                )
            ],
            dtype=object,
        )
        tid = np.char.add(f"K{part:05d}-", np.arange(n).astype(str))
        df = pd.DataFrame(
            {
                "ticket_id": tid,
                "customer_id": ids.to_numpy(zero_copy_only=False),
                "created_at": created_o,
                "resolved_at": resolved_s,
                "escalated_at": esc_s,
                "category": cat,
                "channel": chan,
                "satisfaction": sat,
                "subject": subj,
            }
        )
        df, k_dup = _duplicate_df(df, mc.duplicate, rng)
        self._count("support", "duplicate", k_dup)
        df.to_json(self.out / "support" / f"part-{part:05d}.jsonl", orient="records", lines=True)
        self.rows["support"] += len(df)

    def usage(self, ch: _Chunk, rng: np.random.Generator, part: int) -> None:
        mc = self.cfg.mess
        u = ch.usage
        n = len(u["customer"])
        late = rng.random(n) < mc.late_arrival
        loaded = u["day"] + np.where(late, rng.uniform(15, 45, n), rng.uniform(0.9, 0.99, n))
        keep = loaded < self.end_day
        self.rows["not_yet_arrived"] += int((~keep).sum())
        u = {k: v[keep] for k, v in u.items()}
        late, loaded, n = late[keep], loaded[keep], int(keep.sum())
        self._count("usage", "late_arrival", late.sum())
        day = u["day"].astype(np.int64)
        c_num, orphan = self._orphans(ch.customers.num[u["customer"].astype(np.int64)], rng)
        self._count("usage", "orphan", orphan.sum())
        ids, k_id = _ids_with_drift(c_num, mc.id_format, rng)
        self._count("usage", "id_format", k_id)
        minutes = u["minutes"].astype(np.float64).copy()
        sessions = u["sessions"].astype(np.int64).copy()
        r = rng.random(n)
        unit = r < mc.unit_mistake
        outl = (r >= mc.unit_mistake) & (r < mc.unit_mistake + mc.outlier)
        minutes[unit] = minutes[unit] * 60
        neg = outl & (rng.random(n) < 0.5)
        minutes[neg] = -minutes[neg]
        sessions[outl & ~neg] = 9999
        miss_m = (rng.random(n) < mc.missing) & ~unit & ~outl
        minutes[miss_m] = np.nan
        dev_codes = u["device"].astype(np.int64).copy()
        miss_d = rng.random(n) < mc.missing
        dev_codes[miss_d] = -1
        device, k_dev = _spell(dev_codes, DEVICES, mc.category_spelling, rng)
        month = (self.start + np.floor(loaded).astype("timedelta64[D]")).astype("datetime64[M]")
        table = pa.table(
            {
                "customer_id": ids,
                "date": pa.array(self.start + day.astype("timedelta64[D]"), type=pa.date32()),
                "loaded_at": pa.array(_to_ts(self.start, loaded), type=pa.timestamp("s", tz="UTC")),
                "sessions": pa.array(sessions.astype(np.int32)),
                "minutes": pa.array(minutes, from_pandas=True),
                "features_used": pa.array(u["features_used"].astype(np.int16)),
                "device": pa.array(device.tolist(), type=pa.string()),
            }
        )
        self._count("usage", "unit_mistake", unit.sum())
        self._count("usage", "outlier", outl.sum())
        self._count("usage", "missing", miss_m.sum() + miss_d.sum())
        self._count("usage", "category_spelling", k_dev)
        dup_rate = mc.duplicate * 0.5
        for mval in np.unique(month):
            sub = table.filter(pa.array(month == mval))
            sub, k_dup = _duplicate_rows(sub, dup_rate, rng)
            self._count("usage", "duplicate", k_dup)
            folder = self.out / "usage" / f"month={mval!s}"
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(sub, folder / f"part-{part:05d}.parquet", row_group_size=1_000_000)
            self.rows["usage"] += sub.num_rows

    def truth(self, ch: _Chunk, part: int) -> np.ndarray:
        tr = ch.truth
        snap = self.start + tr["day"].astype(np.int64).astype("timedelta64[D]")
        table = pa.table(
            {
                "customer_num": pa.array(tr["num"].astype(np.int32)),
                "snapshot_date": pa.array(snap.astype("datetime64[ns]")),
                "p": pa.array(tr["p"].astype(np.float32)),
                "churned": pa.array(tr["churned"].astype(np.int8)),
            }
        )
        pq.write_table(table, self.out / "_truth" / "hazard" / f"part-{part:05d}.parquet")
        # Per month: (active, churned) counts.
        months = np.searchsorted(self.ms, tr["day"].astype(np.int64))
        M = len(self.ms) - 1
        return np.stack(
            [
                np.bincount(months, minlength=M)[:M],
                np.bincount(months, weights=tr["churned"], minlength=M)[:M],
            ]
        )


def generate(cfg: SimulatorConfig, out_dir: Path, *, progress: bool = True) -> SimulationSummary:
    """Simulate the business and write its messy raw sources plus the hidden truth.

    Customers are simulated and written ``cfg.chunk_size`` at a time, so memory stays bounded
    whatever ``cfg.customers`` is. The folder is built next to `out_dir` and renamed into place
    at the end, so a failed run leaves no half-written data set.

    Args:
        cfg: What to simulate.
        out_dir: Folder to write (replaced if it exists).
        progress: Show a progress bar on stderr.

    Returns:
        Row counts, monthly churn rates and the mess injected per source and kind.
    """
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        for sub in ("billing", "support", "usage", "_truth/hazard"):
            (tmp / sub).mkdir(parents=True, exist_ok=True)
        ms = month_starts(cfg.start, cfg.months)
        writer = _Writer(cfg, tmp, ms)
        n_chunks = -(-cfg.customers // cfg.chunk_size)
        counts = np.zeros((2, cfg.months))
        for part in track(range(n_chunks), "simulate customers", disable=not progress):
            lo = part * cfg.chunk_size
            n = min(cfg.chunk_size, cfg.customers - lo)
            rng = np.random.default_rng([cfg.seed, part])
            ch = _simulate_chunk(cfg, lo, n, ms, rng)
            writer.customers(ch, rng, first=part == 0)
            writer.billing(ch, rng, part)
            writer.support(ch, rng, part)
            writer.usage(ch, rng, part)
            counts += writer.truth(ch, part)
            del ch
        rates = np.divide(counts[1], counts[0], out=np.zeros(cfg.months), where=counts[0] > 0)
        end = (np.datetime64(cfg.start, "D") + int(ms[-1])).astype(date)
        summary = SimulationSummary(
            out_dir=str(out_dir),
            customers=cfg.customers,
            months=cfg.months,
            seed=cfg.seed,
            start=cfg.start,
            end=end,
            rows=writer.rows,
            churn_rate_by_month=[round(float(r), 5) for r in rates],
            monthly_churn_rate=round(float(counts[1].sum() / max(counts[0].sum(), 1)), 5),
            mess=writer.mess,
        )
        atomic_write_json(tmp / "_truth" / "summary.json", json.loads(summary.model_dump_json()))
        atomic_write_json(tmp / "_truth" / "config.json", json.loads(cfg.model_dump_json()))
    return summary


def read_summary(raw_dir: Path) -> SimulationSummary:
    """Read the `SimulationSummary` that `generate` stored under ``raw_dir/_truth``."""
    path = Path(raw_dir) / "_truth" / "summary.json"
    if not path.is_file():
        raise InputFileError(f"simulation summary not found: {path} (was the data made by `generate`?)")
    return SimulationSummary.model_validate_json(path.read_text(encoding="utf-8"))


def oracle_scores(truth_dir: Path, snapshots: pd.DataFrame) -> np.ndarray:
    """The hidden model's probability of churn within 30 days for each snapshot row.

    Args:
        truth_dir: ``raw_dir/_truth`` as written by `generate`.
        snapshots: Rows with ``customer_id`` (canonical ``C0000123``) and ``snapshot_date``.

    Returns:
        Float64 array aligned with the rows of `snapshots`.

    Raises:
        InputFileError: No truth under `truth_dir`.
        DataError: A row has no stored probability (not a simulated customer-month).
    """
    hazard = Path(truth_dir) / "hazard"
    files = sorted(hazard.glob("*.parquet"))
    if not files:
        raise InputFileError(f"no ground truth under {hazard}")
    nums = pd.to_numeric(snapshots["customer_id"].astype(str).str.slice(1), errors="coerce")
    if nums.isna().any():
        raise DataError("oracle_scores: customer_id must be canonical ids like C0000123")
    key = pd.DataFrame(
        {
            "customer_num": nums.to_numpy(np.int64),
            "snapshot_date": pd.to_datetime(snapshots["snapshot_date"]).to_numpy("datetime64[ns]"),
            "_row": np.arange(len(snapshots)),
        }
    )
    lo, hi = int(key["customer_num"].min()), int(key["customer_num"].max())
    dates = pd.unique(key["snapshot_date"])
    truth = pq.read_table(
        files,
        columns=["customer_num", "snapshot_date", "p"],
        filters=[("customer_num", ">=", lo), ("customer_num", "<=", hi)],
    ).to_pandas()
    truth = truth[truth["snapshot_date"].isin(dates)]
    truth["customer_num"] = truth["customer_num"].astype(np.int64)
    truth["snapshot_date"] = truth["snapshot_date"].astype("datetime64[ns]")
    merged = key.merge(truth, on=["customer_num", "snapshot_date"], how="left").sort_values("_row")
    if merged["p"].isna().any():
        n = int(merged["p"].isna().sum())
        raise DataError(
            f"oracle_scores: {n} snapshot rows have no true probability (not simulated customer-months)"
        )
    return merged["p"].to_numpy(np.float64)
