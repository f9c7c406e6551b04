"""Card-transaction simulator in the style of the Fraud Detection Handbook, vectorised and chunked.

The Handbook (Le Borgne et al., chapter 3 "Transaction data simulator") draws, per customer and
per day, a Poisson number of transactions around noon, an amount from the customer's spending
profile and a terminal within a radius of home, then adds three fraud scenarios:

1. every amount above 220 is fraud;
2. each day two terminals are compromised: all their transactions of the next 28 days are fraud;
3. each day three cards are compromised: over the next 14 days a third of their transactions are
   fraud, with the amount multiplied by 5.

With ``handbook=True`` this module does exactly that (customer and terminal tables drawn with the
Handbook's own legacy NumPy seeds 0 and 1, so they are the published tables; the compromised
terminals and cards drawn with ``RandomState(day)`` as the Handbook's ``Series.sample`` does), but
vectorised over customers one day at a time instead of the Handbook's per-customer Python loop.
Two equivalences keep the distribution identical: the Handbook's discarded out-of-day times are a
thinning of the Poisson count (kept count ~ Poisson(lambda * p_keep), kept times a truncated
normal), and its per-customer terminal choice is a uniform pick from the customer's terminals.
With ``handbook_exact=True`` as well (the full profile), `handbook_replay` runs the Handbook's
own per-customer loop with its own seeds instead: the output is the published dataset itself
(1,754,155 transactions, 14,681 frauds, row for row), so its published baselines compare like
for like rather than on another draw of the same distribution.

Without ``handbook`` the simulator adds the richer fields (merchant category, channel, country,
device, currency), three more scenarios (4 card testing, 5 account takeover, 6 merchant
collusion) and a drift event at ``drift_day`` (a new fraud pattern, scenario 7, at a new kind of
merchant, and a spending shift of every customer).

Generation is one day at a time: memory holds the customer/terminal tables, a customers x days
count matrix and one day of transactions, so `simulate_to_folder` writes tens of millions of
transactions in bounded memory. Every random draw comes from a stream keyed by (seed, purpose,
day), so the output depends only on the configuration.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.spatial import cKDTree

from level4_fraud import schema
from level4_fraud.schema import Scenario
from shared.atomic import atomic_dir, atomic_write_json
from shared.errors import ConfigError

SECONDS_PER_DAY = 86_400
TRANSACTIONS_DIR = "transactions"
CUSTOMERS_FILE = "customers.parquet"
TERMINALS_FILE = "terminals.parquet"
SUMMARY_FILE = "simulation.json"

# The Handbook's published dataset (5,000 customers, 10,000 terminals, 183 days, r = 5):
# frauds counted as the Handbook prints them, each scenario adding what earlier ones had not.
HANDBOOK_STATS: dict[str, float] = {
    "n_transactions": 1_754_155,
    "n_frauds": 14_681,
    "fraud_rate": 14_681 / 1_754_155,
    "scenario_1": 978,
    "scenario_2": 9_099,
    "scenario_3": 4_604,
}

COUNTRIES: tuple[str, ...] = ("GB", "FR", "DE", "ES", "IT", "NL", "US", "SG", "BR")
CURRENCY_OF: dict[str, str] = {
    "GB": "GBP",
    "FR": "EUR",
    "DE": "EUR",
    "ES": "EUR",
    "IT": "EUR",
    "NL": "EUR",
    "US": "USD",
    "SG": "SGD",
    "BR": "BRL",
}
CURRENCIES: tuple[str, ...] = tuple(sorted(set(CURRENCY_OF.values())))
POS_CATEGORIES: tuple[str, ...] = (
    "grocery",
    "restaurant",
    "fuel",
    "retail",
    "electronics",
    "travel",
    "health",
)
POS_CATEGORY_P = (0.30, 0.20, 0.12, 0.18, 0.07, 0.05, 0.08)
ECOM_CATEGORIES: tuple[str, ...] = ("online_retail", "digital_goods", "travel", "subscriptions")
ECOM_CATEGORY_P = (0.45, 0.25, 0.10, 0.20)
ATM_CATEGORY = "atm"
DRIFT_CATEGORY = "crypto_exchange"  # merchants that only matter after the drift day
MERCHANT_CATEGORIES: tuple[str, ...] = tuple(
    dict.fromkeys((*POS_CATEGORIES, ATM_CATEGORY, *ECOM_CATEGORIES, DRIFT_CATEGORY))
)
TERMINAL_CHANNEL_P = (0.85, 0.10, 0.05)  # pos, ecom, atm share of terminals (order of schema.CHANNELS)
FRAUD_DEVICE_BASE = 1_000_000_000  # devices a fraudster brings; customers' devices are below

# Random streams (the second entropy word); days add a third.
_STREAM_PROFILES, _STREAM_COUNTS, _STREAM_SCEN2, _STREAM_SCEN3, _STREAM_INJECT, _STREAM_DAY = range(6)
# Added later (the compliance check's age bands): its own stream, so no earlier draw moves.
_STREAM_AGE = 6


class SimulatorConfig(BaseModel):
    """Simulator settings. Defaults are the quick profile's.

    Full profile (and the Handbook's published setup): ``n_customers=5000, n_terminals=10000,
    nb_days=183, radius=5`` from 2018-04-01; `handbook_config` returns it with ``handbook=True``.
    The benchmark's 10 M transactions: ``n_customers=28500`` with the other full values.
    """

    model_config = ConfigDict(extra="forbid")

    handbook: bool = Field(False, description="Pure Handbook setup: its 9 columns, scenarios 1-3 only")
    handbook_exact: bool = Field(
        False,
        description="With handbook: replay the Handbook's own generator draw for draw (its dataset "
        "itself; `seed` unused; in memory, a Python loop)",
    )
    seed: int = 42
    n_customers: int = Field(500, ge=1)
    n_terminals: int = Field(1000, ge=1)
    nb_days: int = Field(60, ge=1)
    start_date: date = date(2018, 4, 1)
    radius: float = Field(5.0, gt=0, description="Customers use terminals within this distance of home")
    grid_size: float = Field(100.0, gt=0)

    # The Handbook's scenarios. Handbook mode uses the per-day counts as they are (whole numbers;
    # its values, 2 terminals and 3 cards, are the defaults there). The richer mode reads every
    # per-day count (these and the ones below) as a mean per 5,000 customers (terminals: per
    # 10,000), so the fraud rate does not depend on the population size; it compromises one
    # terminal a day instead of two and two cards instead of three, so that the added scenarios
    # keep the total under 1 %.
    amount_threshold: float = Field(220.0, gt=0)
    compromised_terminals_per_day: float = Field(1.0, ge=0)
    terminal_compromise_days: int = Field(28, ge=1)
    compromised_cards_per_day: float = Field(2.0, ge=0)
    card_compromise_days: int = Field(14, ge=1)
    card_fraud_share: float = Field(1 / 3, ge=0, le=1)
    card_amount_factor: float = Field(5.0, gt=0)

    # Beyond the Handbook (ignored when handbook=True).
    ecom_share: float = Field(0.2, ge=0, le=0.9, description="Mean share of a customer's tx online")
    atm_share: float = Field(0.05, ge=0, le=0.5)
    max_devices: int = Field(2, ge=1, description="Devices per customer: 1..max_devices")
    card_testing_per_day: float = Field(1.0, ge=0, description="Mean card-testing bursts a day")
    takeover_per_day: float = Field(0.7, ge=0, description="Mean account takeovers started a day")
    collusion_every_days: int = Field(10, ge=1, description="A new colluding merchant every N days")
    collusion_days: int = Field(14, ge=1)
    collusion_tx_per_day: float = Field(3.0, ge=0)
    drift_day: int | None = Field(40, ge=1, description="Day of the drift event (None: no drift)")
    drift_cards_per_day: float = Field(2.0, ge=0, description="Mean cards hit by the new pattern a day")
    drift_amount_factor: float = Field(1.1, gt=0, description="Spending shift: amounts x this")
    drift_rate_factor: float = Field(1.15, gt=0, description="Spending shift: tx per day x this")
    drift_ecom_shift: float = Field(0.10, ge=0, le=0.5, description="Spending shift: ecom share +")

    @model_validator(mode="before")
    @classmethod
    def _handbook_counts(cls, data: Any) -> Any:
        # handbook=True means the Handbook's setup: its 2 terminals and 3 cards a day unless given.
        if isinstance(data, dict) and data.get("handbook"):
            data = {"compromised_terminals_per_day": 2, "compromised_cards_per_day": 3, **data}
        return data

    @model_validator(mode="after")
    def _check(self) -> SimulatorConfig:
        if self.handbook_exact and not self.handbook:
            raise ValueError("handbook_exact needs handbook=True")
        if self.handbook_exact and abs(self.card_fraud_share - 1 / 3) > 1e-12:
            # The Handbook's int(n / 3): any other share would not be its draw.
            raise ValueError("handbook_exact replays the Handbook's card_fraud_share of 1/3 only")
        if self.handbook:
            for name in ("compromised_terminals_per_day", "compromised_cards_per_day"):
                if float(getattr(self, name)) != int(getattr(self, name)):
                    raise ValueError(f"{name} must be a whole number in handbook mode")
            if self.compromised_terminals_per_day > self.n_terminals:
                raise ValueError("compromised_terminals_per_day exceeds n_terminals")
            if self.compromised_cards_per_day > self.n_customers:
                raise ValueError("compromised_cards_per_day exceeds n_customers")
        return self

    @property
    def drift_active(self) -> bool:
        """Whether a drift event happens inside the simulated period (never in Handbook mode)."""
        return (not self.handbook) and self.drift_day is not None and self.drift_day < self.nb_days


def handbook_config(**overrides: Any) -> SimulatorConfig:
    """The Handbook's published setup: 5,000 customers, 10,000 terminals, 183 days, r = 5."""
    values: dict[str, Any] = {
        "handbook": True,
        "n_customers": 5000,
        "n_terminals": 10000,
        "nb_days": 183,
        "start_date": date(2018, 4, 1),
        "radius": 5.0,
        "compromised_terminals_per_day": 2,
        "compromised_cards_per_day": 3,
    }
    values.update(overrides)
    return SimulatorConfig(**values)


@dataclass
class SimulationSummary:
    """What a simulation produced (also written to ``simulation.json``)."""

    n_transactions: int
    n_frauds: int
    fraud_rate: float
    scenario_counts: dict[str, int]
    n_days: int
    first_day: str
    last_day: str
    seconds: float = 0.0
    path: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return dict(self.__dict__)


# ----------------------------------------------------------------------------------------------
# Profiles
# ----------------------------------------------------------------------------------------------


def _rng(cfg: SimulatorConfig, stream: int, day: int = 0) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, stream, day])


def _region_country(x: np.ndarray, y: np.ndarray, grid: float) -> np.ndarray:
    # The grid is split into 3x3 regions, one country each: nearby terminals share the home country.
    ix = np.minimum((x / grid * 3).astype(np.int64), 2)
    iy = np.minimum((y / grid * 3).astype(np.int64), 2)
    return ix * 3 + iy


@dataclass
class _Profiles:
    customers: pd.DataFrame
    terminals: pd.DataFrame
    mean_amount: np.ndarray
    std_amount: np.ndarray
    rate: np.ndarray
    home_country: np.ndarray  # index into COUNTRIES
    ecom_p: np.ndarray
    atm_p: np.ndarray
    n_devices: np.ndarray
    first_device: np.ndarray
    near_ptr: np.ndarray  # CSR over card-present terminals (all terminals in Handbook mode)
    near_idx: np.ndarray
    atm_ptr: np.ndarray
    atm_idx: np.ndarray
    term_country: np.ndarray  # index into COUNTRIES
    term_channel: np.ndarray  # index into schema.CHANNELS
    term_category: np.ndarray  # index into MERCHANT_CATEGORIES
    ecom_terms: np.ndarray
    ecom_weights: np.ndarray
    crypto_terms: np.ndarray


def _ages(cfg: SimulatorConfig, n: int) -> np.ndarray:
    """Cardholders' ages in years (adults, centred on the mid-forties). Nothing else depends on
    them: they exist so the fairness check has an age band to compare false-positive rates on."""
    return np.clip(np.round(_rng(cfg, _STREAM_AGE).normal(45.0, 15.0, n)), 18, 90).astype(np.int64)


def _neighbours(
    cust_xy: np.ndarray, term_xy: np.ndarray, term_ids: np.ndarray, r: float, block: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr, terminal ids) of the terminals strictly within `r` of each customer.

    Customers are queried in blocks so that the KD-tree's Python lists stay small.
    """
    n = len(cust_xy)
    ptr = np.zeros(n + 1, dtype=np.int64)
    if len(term_xy) == 0 or n == 0:
        return ptr, np.zeros(0, dtype=np.int64)
    tree = cKDTree(term_xy)
    pieces: list[np.ndarray] = []
    for lo in range(0, n, block):
        xy = cust_xy[lo : lo + block]
        lists = tree.query_ball_point(xy, r=r, return_sorted=True)
        counts = np.fromiter((len(a) for a in lists), dtype=np.int64, count=len(xy))
        flat = np.fromiter((i for a in lists for i in a), dtype=np.int64, count=int(counts.sum()))
        owner = np.repeat(np.arange(len(xy)), counts)
        # query_ball_point includes distance == r; the Handbook keeps only dist < r.
        keep = np.sqrt(((xy[owner] - term_xy[flat]) ** 2).sum(axis=1)) < r
        pieces.append(flat[keep])
        ptr[lo + 1 : lo + len(xy) + 1] = np.bincount(owner[keep], minlength=len(xy))
    np.cumsum(ptr, out=ptr)
    return ptr, term_ids[np.concatenate(pieces)]


def generate_profiles(cfg: SimulatorConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The customer and terminal tables (what `simulate` also returns)."""
    p = _profiles(cfg)
    return p.customers, p.terminals


def _profiles(cfg: SimulatorConfig) -> _Profiles:
    nc, nt, g = cfg.n_customers, cfg.n_terminals, cfg.grid_size
    if cfg.handbook:
        # The Handbook's generate_customer_profiles_table / generate_terminal_profiles_table:
        # np.random.seed(0) (resp. 1), then per row uniform draws in this order. One vectorised
        # random_sample call consumes the same doubles in the same order, so the tables are equal.
        u = np.random.RandomState(0).random_sample((nc, 4))
        cx, cy = g * u[:, 0], g * u[:, 1]
        mean_amount = 5 + 95 * u[:, 2]
        rate = 4 * u[:, 3]
        t = np.random.RandomState(1).random_sample((nt, 2))
        tx_, ty_ = g * t[:, 0], g * t[:, 1]
        rng = _rng(cfg, _STREAM_PROFILES)
    else:
        rng = _rng(cfg, _STREAM_PROFILES)
        cx, cy = rng.uniform(0, g, nc), rng.uniform(0, g, nc)
        mean_amount = rng.uniform(5, 100, nc)
        rate = rng.uniform(0, 4, nc)
        tx_, ty_ = rng.uniform(0, g, nt), rng.uniform(0, g, nt)
    std_amount = mean_amount / 2
    cust_xy = np.column_stack([cx, cy])
    term_xy = np.column_stack([tx_, ty_])
    term_ids = np.arange(nt, dtype=np.int64)

    home_country = _region_country(cx, cy, g)
    term_country = _region_country(tx_, ty_, g)
    if cfg.handbook:
        term_channel = np.zeros(nt, dtype=np.int64)
        near_ptr, near_idx = _neighbours(cust_xy, term_xy, term_ids, cfg.radius)
        atm_ptr, atm_idx = np.zeros(nc + 1, dtype=np.int64), np.zeros(0, dtype=np.int64)
        ecom_p = atm_p = np.zeros(nc)
        n_devices = np.zeros(nc, dtype=np.int64)
        term_category = np.zeros(nt, dtype=np.int64)
        ecom_terms = crypto_terms = np.zeros(0, dtype=np.int64)
        ecom_weights: np.ndarray = np.zeros(0)
    else:
        term_channel = rng.choice(3, size=nt, p=TERMINAL_CHANNEL_P)
        term_category = np.empty(nt, dtype=np.int64)
        cat_pos = {c: i for i, c in enumerate(MERCHANT_CATEGORIES)}
        pos, ecom, atm = (term_channel == k for k in range(3))
        term_category[pos] = rng.choice(
            [cat_pos[c] for c in POS_CATEGORIES], size=pos.sum(), p=POS_CATEGORY_P
        )
        term_category[atm] = cat_pos[ATM_CATEGORY]
        ecom_cat = rng.choice([cat_pos[c] for c in ECOM_CATEGORIES], size=ecom.sum(), p=ECOM_CATEGORY_P)
        # One ecom merchant in twenty is a crypto exchange, used only once the drift begins.
        crypto = rng.random(ecom.sum()) < 0.05
        if not crypto.any() and ecom.sum() >= 2:
            crypto[rng.integers(ecom.sum())] = True  # a small world still gets its drift merchant
        ecom_cat[crypto] = cat_pos[DRIFT_CATEGORY]
        term_category[ecom] = ecom_cat
        # Online merchants sell worldwide: their country is not their grid cell.
        term_country[ecom] = rng.integers(0, len(COUNTRIES), ecom.sum())
        near_ptr, near_idx = _neighbours(cust_xy, term_xy[pos], term_ids[pos], cfg.radius)
        atm_ptr, atm_idx = _neighbours(cust_xy, term_xy[atm], term_ids[atm], cfg.radius)
        ecom_all = term_ids[ecom]
        crypto_terms = ecom_all[crypto]
        ecom_terms = ecom_all[~crypto]
        # Popularity of online merchants: a long tail (a few large shops, many small ones).
        w = 1.0 / (rng.permutation(len(ecom_terms)) + 5.0)
        ecom_weights = w / w.sum() if len(w) else w
        ecom_p = np.clip(rng.beta(2, 8, nc) * (cfg.ecom_share / 0.2), 0, 0.9)
        atm_p = np.clip(rng.beta(2, 38, nc) * (cfg.atm_share / 0.05), 0, 0.5)
        n_devices = rng.integers(1, cfg.max_devices + 1, nc)
    first_device = np.concatenate([[0], np.cumsum(n_devices)[:-1]]).astype(np.int64)

    nb_terminals = np.diff(near_ptr)
    customers = pd.DataFrame(
        {
            schema.CUSTOMER_ID: np.arange(nc, dtype=np.int64),
            schema.X_CUSTOMER: cx,
            schema.Y_CUSTOMER: cy,
            "mean_amount": mean_amount,
            "std_amount": std_amount,
            "mean_nb_tx_per_day": rate,
            "nb_terminals": nb_terminals,
        }
    )
    terminals = pd.DataFrame({schema.TERMINAL_ID: term_ids, schema.X_TERMINAL: tx_, schema.Y_TERMINAL: ty_})
    if not cfg.handbook:
        customers["home_country"] = pd.Categorical.from_codes(home_country, COUNTRIES)
        customers["ecom_share"] = ecom_p
        customers["atm_share"] = atm_p
        customers["n_devices"] = n_devices
        customers["first_device_id"] = first_device
        customers["age"] = _ages(cfg, nc)
        terminals["channel"] = pd.Categorical.from_codes(term_channel, schema.CHANNELS)
        terminals["merchant_category"] = pd.Categorical.from_codes(term_category, MERCHANT_CATEGORIES)
        terminals["country"] = pd.Categorical.from_codes(term_country, COUNTRIES)
        terminals["currency"] = pd.Categorical(
            [CURRENCY_OF[COUNTRIES[i]] for i in term_country], categories=CURRENCIES
        )
    return _Profiles(
        customers=customers,
        terminals=terminals,
        mean_amount=mean_amount,
        std_amount=std_amount,
        rate=rate,
        home_country=home_country,
        ecom_p=ecom_p,
        atm_p=atm_p,
        n_devices=n_devices,
        first_device=first_device,
        near_ptr=near_ptr,
        near_idx=near_idx,
        atm_ptr=atm_ptr,
        atm_idx=atm_idx,
        term_country=term_country,
        term_channel=term_channel,
        term_category=term_category,
        ecom_terms=ecom_terms,
        ecom_weights=ecom_weights,
        crypto_terms=crypto_terms,
    )


# ----------------------------------------------------------------------------------------------
# The plan: everything decided before the first day is written
# ----------------------------------------------------------------------------------------------


def _p_keep() -> float:
    # The Handbook keeps int(N(43200, 20000)) only when 0 < t < 86400, i.e. N in [1, 86400).
    phi = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))  # noqa: E731
    return phi((SECONDS_PER_DAY - 43_200) / 20_000) - phi((1 - 43_200) / 20_000)


def _day_times(rng: np.random.Generator, n: int) -> np.ndarray:
    """Seconds in the day: int(N(noon, 20000)) kept when inside (0, 86400), as the Handbook."""
    out = np.empty(0, dtype=np.int64)
    while len(out) < n:
        x = rng.normal(SECONDS_PER_DAY / 2, 20_000, int((n - len(out)) * 1.05) + 16)
        x = x[(x >= 1) & (x < SECONDS_PER_DAY)]
        out = np.concatenate([out, x.astype(np.int64)])
    return out[:n]


@dataclass
class _Plan:
    counts: np.ndarray  # (n_customers, nb_days) genuine tx per customer and day (no days: replay)
    term_comp_start: np.ndarray  # scenario 2: compromise start day of each event
    term_comp_id: np.ndarray  # scenario 2: terminal of each event
    card_keys: np.ndarray  # scenario 3: sorted keys (customer, day, rank) of the fraud tx
    card_mult: np.ndarray  # scenario 3: how many times each key was picked (amount x factor^m)
    card_comp_id: np.ndarray  # scenario 3: card of each compromise
    card_comp_start: np.ndarray  # scenario 3: its start day
    injected: pd.DataFrame  # scenarios 4-7: extra rows, with their day


def _key(cust: np.ndarray, day: np.ndarray | int, rank: np.ndarray, nb_days: int) -> np.ndarray:
    return (cust.astype(np.int64) * nb_days + day) * 4096 + rank


def _per_population(cfg: SimulatorConfig) -> float:
    """Richer mode: per-day counts are given per 5,000 customers (the Handbook's population)."""
    return cfg.n_customers / 5_000


def _spread(rng: np.random.Generator, mean: float, n_days: int) -> np.ndarray:
    """Whole counts per day averaging `mean` (as the Handbook's fixed counts, not Poisson).

    A fractional mean is spread evenly from a random phase: 0.25 gives one every fourth day.
    Fixed counts keep the fraud rate of a small population close to a large one's.
    """
    phase = rng.random()
    edges = np.floor(np.arange(n_days + 1) * mean + phase)
    return np.diff(edges).astype(np.int64)


def _rate_factor(cfg: SimulatorConfig) -> np.ndarray:
    f = np.ones(cfg.nb_days)
    if cfg.drift_active:
        assert cfg.drift_day is not None
        f[cfg.drift_day :] = cfg.drift_rate_factor
    return f


def _compromises(
    cfg: SimulatorConfig, prof: _Profiles
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Start days, and per start day the terminals (scenario 2) and cards (scenario 3) compromised."""
    nc, nd = cfg.n_customers, cfg.nb_days
    # The Handbook loops `for day in range(max TX_TIME_DAYS)`: compromises start on days 0..nd-2.
    start_days = np.arange(max(nd - 1, 0))
    if cfg.handbook:
        n_t, n_c = int(cfg.compromised_terminals_per_day), int(cfg.compromised_cards_per_day)
        # pandas Series.sample(n, random_state=day) == RandomState(day).choice(len, n, replace=False)
        terms = [np.random.RandomState(d).choice(cfg.n_terminals, n_t, replace=False) for d in start_days]
        cards = [np.random.RandomState(d).choice(nc, n_c, replace=False) for d in start_days]
    else:
        rng2 = _rng(cfg, _STREAM_SCEN2)
        present = np.flatnonzero(prof.term_channel != 1)  # skimming needs a card-present terminal
        mean_t = cfg.compromised_terminals_per_day * cfg.n_terminals / 10_000
        mean_c = cfg.compromised_cards_per_day * _per_population(cfg)
        kt = np.minimum(_spread(rng2, mean_t, len(start_days)), len(present))
        kc = np.minimum(_spread(rng2, mean_c, len(start_days)), nc)
        terms = [rng2.choice(present, k, replace=False) for k in kt]
        cards = [rng2.choice(nc, k, replace=False) for k in kc]
    return start_days, terms, cards


def _plan(cfg: SimulatorConfig, prof: _Profiles) -> _Plan:
    nd = cfg.nb_days
    start_days, terms, cards = _compromises(cfg, prof)
    term_comp_id = np.concatenate(terms).astype(np.int64) if len(terms) else np.zeros(0, np.int64)
    term_comp_start = np.repeat(start_days, [len(t) for t in terms]) if len(terms) else np.zeros(0, np.int64)
    card_comp_id = np.concatenate(cards).astype(np.int64) if len(cards) else np.zeros(0, np.int64)
    card_comp_start = np.repeat(start_days, [len(c) for c in cards]) if len(cards) else np.zeros(0, np.int64)
    if cfg.handbook_exact:  # the replay draws the transactions and picks the card frauds itself
        none = np.zeros(0, np.int64)
        return _Plan(
            np.zeros((cfg.n_customers, 0), np.int32), term_comp_start, term_comp_id, none, none,
            card_comp_id, card_comp_start, _empty_injected(),
        )  # fmt: skip
    lam = prof.rate * _p_keep()
    # A customer with no terminal in reach makes no transaction (the Handbook drops them).
    lam = np.where(np.diff(prof.near_ptr) > 0, lam, 0.0)
    counts = _rng(cfg, _STREAM_COUNTS).poisson(lam[:, None] * _rate_factor(cfg)[None, :]).astype(np.int32)

    rng3 = _rng(cfg, _STREAM_SCEN3)
    keys: list[np.ndarray] = []
    for d, day_cards in zip(start_days, cards, strict=True):
        end = min(d + cfg.card_compromise_days, nd)
        for c in day_cards:
            window = counts[c, d:end].astype(np.int64)
            n = int(window.sum())
            k = int(n * cfg.card_fraud_share + 1e-9)
            if k == 0:
                continue
            pos = rng3.choice(n, k, replace=False)
            cum = np.cumsum(window)
            off = np.searchsorted(cum, pos, side="right")
            rank = pos - (cum[off] - window[off])
            keys.append(_key(np.full(k, c), d + off, rank, nd))
    if keys:
        card_keys, card_mult = np.unique(np.concatenate(keys), return_counts=True)
    else:
        card_keys, card_mult = np.zeros(0, np.int64), np.zeros(0, np.int64)
    injected = _empty_injected() if cfg.handbook else _inject(cfg, prof)
    return _Plan(
        counts, term_comp_start, term_comp_id, card_keys, card_mult, card_comp_id, card_comp_start, injected
    )


_INJECTED_COLS = ("day", "seconds", "customer", "terminal", "amount", "scenario", "device")


def _empty_injected() -> pd.DataFrame:
    return pd.DataFrame(
        {c: np.zeros(0, dtype=np.float64 if c == "amount" else np.int64) for c in _INJECTED_COLS}
    )


def _inject(cfg: SimulatorConfig, prof: _Profiles) -> pd.DataFrame:
    """Rows of scenarios 4-7 (all fraud), drawn once for the whole period (they are few)."""
    rng = _rng(cfg, _STREAM_INJECT)
    nc, nd = cfg.n_customers, cfg.nb_days
    parts: list[dict[str, np.ndarray]] = []
    next_device = FRAUD_DEVICE_BASE

    def add(
        day: int | np.ndarray,
        sec: np.ndarray,
        cust: np.ndarray,
        term: np.ndarray,
        amount: np.ndarray,
        scen: int,
        device: int | np.ndarray,
    ) -> None:
        n = len(cust)
        parts.append(
            {
                "day": np.broadcast_to(np.asarray(day, np.int64), n).copy(),
                "seconds": np.asarray(sec, np.int64),
                "customer": np.asarray(cust, np.int64),
                "terminal": np.asarray(term, np.int64),
                "amount": np.round(np.asarray(amount, np.float64), 2),
                "scenario": np.full(n, int(scen), np.int64),
                "device": np.broadcast_to(np.asarray(device, np.int64), n).copy(),
            }
        )

    ecom, w = prof.ecom_terms, prof.ecom_weights
    scale = _per_population(cfg)
    for d in range(nd):
        # 4. Card testing: a stolen card number tried with a burst of tiny online payments.
        for _ in range(rng.poisson(cfg.card_testing_per_day * scale) if len(ecom) else 0):
            c = int(rng.integers(nc))
            m = int(rng.integers(3, 9))
            start = int(rng.integers(0, SECONDS_PER_DAY - 1800))
            sec = start + np.sort(rng.integers(0, 1800, m))
            term = np.full(m, rng.choice(ecom, p=w))
            add(d, sec, np.full(m, c), term, rng.uniform(0.5, 3.0, m), Scenario.CARD_TESTING, next_device)
            next_device += 1
        # 5. Account takeover: a new device abroad spends several times the usual amounts.
        for _ in range(rng.poisson(cfg.takeover_per_day * scale) if len(ecom) else 0):
            c = int(rng.integers(nc))
            foreign = ecom[prof.term_country[ecom] != prof.home_country[c]]
            if len(foreign) == 0:
                continue
            m = int(rng.integers(2, 6))
            days = np.minimum(d + rng.integers(0, 3, m), nd - 1)
            amount = prof.mean_amount[c] * rng.uniform(2.0, 5.0, m)
            term = rng.choice(foreign, m)
            add(
                days,
                rng.integers(0, SECONDS_PER_DAY, m),
                np.full(m, c),
                term,
                amount,
                Scenario.ACCOUNT_TAKEOVER,
                next_device,
            )
            next_device += 1
        # 7. Drift pattern: night-time payments to crypto exchanges from the customer's own device.
        if cfg.drift_active and d >= (cfg.drift_day or 0) and len(prof.crypto_terms):
            for _ in range(rng.poisson(cfg.drift_cards_per_day * scale)):
                c = int(rng.integers(nc))
                m = int(rng.integers(1, 4))
                amount = np.maximum(rng.normal(prof.mean_amount[c] * 1.5, prof.std_amount[c], m), 5.0)
                dev = prof.first_device[c] + rng.integers(0, prof.n_devices[c], m)
                sec = rng.integers(3600, 5 * 3600, m)
                add(
                    d,
                    sec,
                    np.full(m, c),
                    rng.choice(prof.crypto_terms, m),
                    amount,
                    Scenario.DRIFT_PATTERN,
                    dev,
                )
    # 6. Merchant collusion: a card-present merchant runs fictitious charges on cards from anywhere.
    pos_terms = np.flatnonzero(prof.term_channel == 0)
    for start in range(0, nd, cfg.collusion_every_days):
        if len(pos_terms) == 0:
            break
        t = int(rng.choice(pos_terms))
        for d in range(start, min(start + cfg.collusion_days, nd)):
            m = int(rng.poisson(cfg.collusion_tx_per_day * scale))
            if m == 0:
                continue
            sec = np.clip(rng.normal(SECONDS_PER_DAY / 2, 10_000, m), 1, SECONDS_PER_DAY - 1)
            # Round amounts, a tell of made-up charges.
            amount = np.round(rng.uniform(80, 200, m))
            add(
                d,
                sec,
                rng.integers(0, nc, m),
                np.full(m, t),
                amount,
                Scenario.MERCHANT_COLLUSION,
                schema.NO_DEVICE,
            )
    if not parts:
        return _empty_injected()
    return pd.DataFrame({c: np.concatenate([p[c] for p in parts]) for c in _INJECTED_COLS})


# ----------------------------------------------------------------------------------------------
# One day
# ----------------------------------------------------------------------------------------------


def _pick(rng: np.random.Generator, ptr: np.ndarray, idx: np.ndarray, cust: np.ndarray) -> np.ndarray:
    deg = ptr[cust + 1] - ptr[cust]
    off = np.floor(rng.random(len(cust)) * deg).astype(np.int64)
    return idx[ptr[cust] + np.minimum(off, np.maximum(deg - 1, 0))]


def _day(cfg: SimulatorConfig, prof: _Profiles, plan: _Plan, day: int, first_id: int) -> pd.DataFrame:
    rng = _rng(cfg, _STREAM_DAY, day)
    nc, nd = cfg.n_customers, cfg.nb_days
    counts = plan.counts[:, day].astype(np.int64)
    n = int(counts.sum())
    cust = np.repeat(np.arange(nc, dtype=np.int64), counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(n, dtype=np.int64) - np.repeat(starts, counts)
    seconds = _day_times(rng, n)

    drifted = cfg.drift_active and day >= (cfg.drift_day or 0)
    mean = prof.mean_amount[cust] * (cfg.drift_amount_factor if drifted else 1.0)
    std = prof.std_amount[cust] * (cfg.drift_amount_factor if drifted else 1.0)
    amount = rng.normal(mean, std)
    neg = amount < 0
    amount[neg] = rng.uniform(0, 2 * mean[neg])  # the Handbook redraws negatives uniformly
    amount = np.round(amount, 2)

    device = np.full(n, schema.NO_DEVICE, dtype=np.int64)
    if cfg.handbook:
        term = _pick(rng, prof.near_ptr, prof.near_idx, cust)
    else:
        u = rng.random(n)
        atm_ok = (prof.atm_ptr[cust + 1] - prof.atm_ptr[cust]) > 0
        ecom_p = prof.ecom_p[cust] + (cfg.drift_ecom_shift if drifted else 0.0)
        is_atm = (u < prof.atm_p[cust]) & atm_ok
        is_ecom = ~is_atm & (u < prof.atm_p[cust] + ecom_p) & (len(prof.ecom_terms) > 0)
        term = _pick(rng, prof.near_ptr, prof.near_idx, cust)
        if is_atm.any():
            term[is_atm] = _pick(rng, prof.atm_ptr, prof.atm_idx, cust[is_atm])
            # Cash comes in notes of 20.
            amount[is_atm] = np.maximum(np.round(amount[is_atm] / 20.0) * 20.0, 20.0)
        k = int(is_ecom.sum())
        if k:
            ecom_term = rng.choice(prof.ecom_terms, size=k, p=prof.ecom_weights)
            if drifted and len(prof.crypto_terms):
                # After the drift, some genuine customers buy crypto too (the new pattern's cover).
                crypto = rng.random(k) < 0.02
                ecom_term[crypto] = rng.choice(prof.crypto_terms, int(crypto.sum()))
            term[is_ecom] = ecom_term
            ce = cust[is_ecom]
            device[is_ecom] = prof.first_device[ce] + np.floor(rng.random(k) * prof.n_devices[ce]).astype(
                np.int64
            )

    # Scenario 1: amount above the threshold (on the amount before scenario 3's multiplication).
    scen = np.where(amount > cfg.amount_threshold, Scenario.AMOUNT_OVER_220, Scenario.GENUINE).astype(np.int8)
    # Scenario 2: terminals compromised within the last `terminal_compromise_days` days.
    live = (plan.term_comp_start <= day) & (day < plan.term_comp_start + cfg.terminal_compromise_days)
    if live.any():
        scen[np.isin(term, plan.term_comp_id[live])] = Scenario.COMPROMISED_TERMINAL
    # Scenario 3: the planned share of compromised cards' transactions, amount x factor per pick.
    if len(plan.card_keys) and n:
        keys = _key(cust, day, rank, nd)
        pos = np.minimum(np.searchsorted(plan.card_keys, keys), len(plan.card_keys) - 1)
        hit = plan.card_keys[pos] == keys
        if hit.any():
            amount[hit] = np.round(amount[hit] * cfg.card_amount_factor ** plan.card_mult[pos[hit]], 2)
            scen[hit] = Scenario.COMPROMISED_CARD

    if not cfg.handbook:
        inj = plan.injected[plan.injected["day"].to_numpy() == day]
        if len(inj):
            cust = np.concatenate([cust, inj["customer"].to_numpy()])
            seconds = np.concatenate([seconds, inj["seconds"].to_numpy()])
            term = np.concatenate([term, inj["terminal"].to_numpy()])
            amount = np.concatenate([amount, inj["amount"].to_numpy()])
            scen = np.concatenate([scen, inj["scenario"].to_numpy().astype(np.int8)])
            device = np.concatenate([device, inj["device"].to_numpy()])

    # Time order within the day; ties (same second) by customer then generation order.
    order = np.lexsort((np.arange(len(cust)), cust, seconds))
    cust, seconds, term, amount = cust[order], seconds[order], term[order], amount[order]
    scen, device = scen[order], device[order]
    tx_seconds = seconds + day * SECONDS_PER_DAY
    start = np.datetime64(cfg.start_date.isoformat(), "ns")
    out = pd.DataFrame(
        {
            schema.TRANSACTION_ID: np.arange(first_id, first_id + len(cust), dtype=np.int64),
            schema.TX_DATETIME: start + tx_seconds.astype("timedelta64[s]").astype("timedelta64[ns]"),
            schema.CUSTOMER_ID: cust,
            schema.TERMINAL_ID: term.astype(np.int64),
            schema.TX_AMOUNT: amount,
            schema.TX_TIME_SECONDS: tx_seconds.astype(np.int64),
            schema.TX_TIME_DAYS: np.full(len(cust), day, dtype=np.int64),
            schema.TX_FRAUD: (scen > 0).astype(np.int8),
            schema.TX_FRAUD_SCENARIO: scen.astype(np.int8),
        }
    )
    if not cfg.handbook:
        out[schema.MERCHANT_CATEGORY] = pd.Categorical.from_codes(
            prof.term_category[term], MERCHANT_CATEGORIES
        )
        out[schema.CHANNEL] = pd.Categorical.from_codes(prof.term_channel[term], schema.CHANNELS)
        tc = prof.term_country[term]
        out[schema.COUNTRY] = pd.Categorical.from_codes(tc, COUNTRIES)
        out[schema.DEVICE_ID] = device
        cur_code = np.array([CURRENCIES.index(CURRENCY_OF[c]) for c in COUNTRIES])
        out[schema.CURRENCY] = pd.Categorical.from_codes(cur_code[tc], CURRENCIES)
    return out


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------


def _day_frames(cfg: SimulatorConfig, prof: _Profiles, plan: _Plan) -> Iterator[pd.DataFrame]:
    """One frame per day (every day, empty ones too), ids continuing across days."""
    if cfg.handbook_exact:
        yield from _replayed_days(cfg, prof, plan)
        return
    next_id = 0
    for day in range(cfg.nb_days):
        frame = _day(cfg, prof, plan, day, next_id)
        next_id += len(frame)
        yield frame


def _replayed_days(cfg: SimulatorConfig, prof: _Profiles, plan: _Plan) -> Iterator[pd.DataFrame]:
    from level4_fraud.handbook_replay import handbook_transactions

    starts = range(max(cfg.nb_days - 1, 0))
    tx = handbook_transactions(
        prof.customers,
        prof.near_ptr,
        prof.near_idx,
        [plan.term_comp_id[plan.term_comp_start == d] for d in starts],
        [plan.card_comp_id[plan.card_comp_start == d] for d in starts],
        cfg.nb_days,
        pd.Timestamp(cfg.start_date),
        threshold=cfg.amount_threshold,
        terminal_days=cfg.terminal_compromise_days,
        card_days=cfg.card_compromise_days,
        factor=cfg.card_amount_factor,
    )
    tx = tx.astype({c: schema.DTYPES[c] for c in tx.columns if c in schema.DTYPES})
    bounds = np.searchsorted(tx[schema.TX_TIME_DAYS].to_numpy(), np.arange(cfg.nb_days + 1))
    for day in range(cfg.nb_days):
        yield tx.iloc[bounds[day] : bounds[day + 1]].reset_index(drop=True)


def iter_days(cfg: SimulatorConfig) -> Iterator[pd.DataFrame]:
    """Yield one transactions frame per day, in time order, with ids continuing across days.

    Memory holds one day of transactions plus the customer/terminal tables and the plan (with
    ``handbook_exact``, the whole replayed table: see `level4_fraud.handbook_replay`).
    """
    prof = _profiles(cfg)
    yield from _day_frames(cfg, prof, _plan(cfg, prof))


def simulate(cfg: SimulatorConfig) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Simulate in memory (small configurations): ``(transactions, customers, terminals)``."""
    prof = _profiles(cfg)
    tx = pd.concat(list(_day_frames(cfg, prof, _plan(cfg, prof))), ignore_index=True)
    return tx, prof.customers, prof.terminals


def compromise_events(cfg: SimulatorConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The planned compromises of scenarios 2 and 3: ``(terminals, cards)``.

    Each frame has one row per compromise: ``TERMINAL_ID`` (resp. ``CUSTOMER_ID``) and
    ``start_day``; the window is ``[start_day, start_day + terminal_compromise_days)`` (resp.
    ``card_compromise_days``). For audits, tests and per-scenario reports.
    """
    prof = _profiles(cfg)
    plan = _plan(cfg, prof)
    terminals = pd.DataFrame({schema.TERMINAL_ID: plan.term_comp_id, "start_day": plan.term_comp_start})
    cards = pd.DataFrame({schema.CUSTOMER_ID: plan.card_comp_id, "start_day": plan.card_comp_start})
    return terminals, cards


def scenario_counts(tx: pd.DataFrame) -> dict[str, int]:
    """Number of transactions per ``TX_FRAUD_SCENARIO`` name (genuine included)."""
    vc = tx[schema.TX_FRAUD_SCENARIO].value_counts()
    return {schema.SCENARIO_NAMES.get(int(k), str(k)): int(v) for k, v in sorted(vc.items())}


def _summary(
    n_tx: int, n_fraud: int, counts: dict[str, int], cfg: SimulatorConfig, seconds: float
) -> SimulationSummary:
    last = (pd.Timestamp(cfg.start_date) + pd.Timedelta(days=cfg.nb_days - 1)).date()
    return SimulationSummary(
        n_transactions=n_tx,
        n_frauds=n_fraud,
        fraud_rate=n_fraud / n_tx if n_tx else 0.0,
        scenario_counts=counts,
        n_days=cfg.nb_days,
        first_day=cfg.start_date.isoformat(),
        last_day=last.isoformat(),
        seconds=round(seconds, 3),
    )


def summarize(tx: pd.DataFrame, cfg: SimulatorConfig) -> SimulationSummary:
    """Counts of an in-memory simulation (the same fields `simulate_to_folder` writes)."""
    return _summary(len(tx), int(tx[schema.TX_FRAUD].sum()), scenario_counts(tx), cfg, 0.0)


def day_file_name(day: date | pd.Timestamp, fmt: str) -> str:
    """``YYYY-MM-DD.pkl`` or ``YYYY-MM-DD.parquet``, the Handbook's daily file names."""
    return f"{pd.Timestamp(day).date().isoformat()}.{fmt}"


def simulate_to_folder(
    cfg: SimulatorConfig,
    out: str | os.PathLike[str],
    fmt: Literal["parquet", "pkl"] = "parquet",
    *,
    progress: bool = False,
) -> SimulationSummary:
    """Simulate day by day into a folder in the Handbook's layout, in bounded memory (not with
    ``handbook_exact``, which replays the whole table in memory first).

    Layout (published atomically: a reader sees the old folder or the complete new one)::

        out/transactions/2018-04-01.parquet ...   one file per day (Handbook columns [+ richer])
        out/customers.parquet, out/terminals.parquet
        out/simulation.json                       config and summary

    Args:
        cfg: The simulator configuration.
        out: The folder to create (replaced if it exists).
        fmt: ``parquet`` or ``pkl`` (pandas pickle, as the Handbook publishes its files).
        progress: Show a progress bar on stderr.

    Returns:
        The summary (counts, fraud rate, per-scenario counts, seconds taken, path).
    """
    if fmt not in ("parquet", "pkl"):
        raise ConfigError(f"unknown format {fmt!r}: use parquet or pkl")
    t0 = time.perf_counter()
    prof = _profiles(cfg)
    plan = _plan(cfg, prof)
    n_tx = n_fraud = 0
    counts: dict[int, int] = {}
    frames: Any = _day_frames(cfg, prof, plan)
    if progress:
        from shared.progress import track

        frames = track(frames, "simulate days", total=cfg.nb_days)
    with atomic_dir(out) as tmp:
        tx_dir = tmp / TRANSACTIONS_DIR
        tx_dir.mkdir()
        for day, frame in enumerate(frames):
            name = day_file_name(pd.Timestamp(cfg.start_date) + pd.Timedelta(days=day), fmt)
            if fmt == "parquet":
                frame.to_parquet(tx_dir / name, index=False)
            else:
                frame.to_pickle(tx_dir / name)
            n_tx += len(frame)
            n_fraud += int(frame[schema.TX_FRAUD].sum())
            for k, v in np.stack(
                np.unique(frame[schema.TX_FRAUD_SCENARIO].to_numpy(), return_counts=True), 1
            ):
                counts[int(k)] = counts.get(int(k), 0) + int(v)
            del frame
        prof.customers.to_parquet(tmp / CUSTOMERS_FILE, index=False)
        prof.terminals.to_parquet(tmp / TERMINALS_FILE, index=False)
        named = {schema.SCENARIO_NAMES.get(k, str(k)): v for k, v in sorted(counts.items())}
        summary = _summary(n_tx, n_fraud, named, cfg, time.perf_counter() - t0)
        atomic_write_json(
            tmp / SUMMARY_FILE, {"config": json.loads(cfg.model_dump_json()), "summary": summary.as_dict()}
        )
    summary.path = str(Path(out))
    return summary
