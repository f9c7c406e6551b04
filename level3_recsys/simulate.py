"""Seeded media-platform simulator with a known click model (so every policy has an oracle).

The hidden world:

* genres and tags have latent vectors in R^d (each tag belongs to a genre); creators have a
  main genre and a latent vector near it;
* an item's latent vector mixes its content (genres, tags, creator) with item-specific noise
  (``content_weight`` sets the share), so content features predict tastes and help on cold
  start, but collaborative signal still adds something content cannot see;
* users have latent tastes (a few favourite genres plus noise), an activity level, and a taste
  that drifts slowly day by day;
* every day new items arrive; freshly published items get a decaying boost;
* the platform's logging policy shows slates mixing recent popularity (rich-get-richer, hence a
  power-law popularity), a noisy view of the user's taste and exploration;
* a click happens with ``examination(position) * sigmoid(beta * taste·item + quality + fresh +
  bias)`` where ``examination(p) = (1 + p) ** -position_eta`` is the position bias; a click's
  watch time is the item's length times a fraction that grows with affinity.

`SimulatedWorld.click_probability` exposes the true CTR of any (user, item, position) with the
users' final tastes, so `expected_ctr` of a model's slates and the `oracle_ctr` of the best
possible slates can be compared.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from level3_recsys.data import (
    ITEM_COL,
    RANK_COL,
    SECONDS_PER_DAY,
    TIME_COL,
    USER_COL,
    WEIGHT_COL,
    InteractionData,
)
from shared.errors import DataError, SchemaError
from shared.progress import track

#: Day 0 of the simulation (2023-11-14 00:00 UTC): timestamps look like real epoch seconds.
ORIGIN = 1_699_920_000

GENRE_NAMES = [
    "Action",
    "Comedy",
    "Drama",
    "Documentary",
    "News",
    "Music",
    "Sports",
    "Science",
    "Cooking",
    "Travel",
    "Gaming",
    "Kids",
    "Horror",
    "Romance",
    "History",
    "Fashion",
    "Finance",
    "Nature",
]
_SYLLABLES = ["ka", "lo", "mi", "ra", "ven", "tor", "sa", "qui", "ne", "dor", "pa", "zu", "fel", "gri", "on"]


class SimulatorConfig(BaseModel):
    """Size and behaviour of the simulated platform (the quick profile's defaults)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 42
    n_users: int = Field(2000, ge=10, description="users on the platform")
    n_items: int = Field(1500, ge=20, description="items already in the catalogue on day 0")
    new_items_per_day: int = Field(15, ge=0, description="items published every simulated day")
    days: int = Field(30, ge=2, description="simulated days of impressions")
    n_genres: int = Field(14, ge=2, le=len(GENRE_NAMES))
    n_tags: int = Field(60, ge=2)
    n_creators: int = Field(200, ge=1)
    latent_dim: int = Field(16, ge=2)
    content_weight: float = Field(0.8, ge=0, le=1, description="share of item latent from content")
    taste_beta: float = Field(5.0, gt=0, description="how sharply taste drives clicks")
    quality_std: float = Field(0.6, ge=0, description="spread of item quality (popularity skew)")
    ctr_bias: float = Field(-3.3, description="logit offset setting the overall CTR")
    fresh_boost: float = Field(0.8, ge=0, description="logit boost of a just-published item")
    fresh_tau_days: float = Field(3.0, gt=0)
    taste_drift: float = Field(0.03, ge=0, description="daily std of taste drift")
    sessions_per_user_day: float = Field(0.6, gt=0, description="mean sessions per user and day")
    slate_size: int = Field(10, ge=1)
    position_eta: float = Field(0.8, ge=0, description="examination(p) = (1+p)^-eta")
    policy_popularity: float = Field(1.0, ge=0, description="logging policy weight of recent clicks")
    policy_taste: float = Field(2.0, ge=0, description="logging policy weight of (noisy) taste")
    policy_fresh: float = Field(1.0, ge=0, description="logging policy weight of freshness")
    policy_temperature: float = Field(1.0, gt=0, description="Gumbel noise scale (exploration)")
    show_progress: bool = True


@dataclass
class SimulatedWorld:
    """Output of `simulate`: observable frames plus the hidden truth.

    Attributes:
        config: The config that produced it.
        items: ``item_id, title, genres, tags, creator_id, kind, length, publish_day,
            publish_time`` (genres/tags pipe-joined).
        users: ``user_id, country, device, signup_day``.
        impressions: ``user_id, item_id, day, timestamp, session_id, position, clicked,
            watch_time`` sorted by time.
        item_latent: Hidden item vectors (n_items × d).
        item_quality: Hidden item logit offsets.
        user_taste: Users' final hidden tastes (n_users × d).
    """

    config: SimulatorConfig
    items: pd.DataFrame
    users: pd.DataFrame
    impressions: pd.DataFrame
    item_latent: np.ndarray
    item_quality: np.ndarray
    user_taste: np.ndarray

    # ------------------------------------------------------------------ observable data
    def interactions(self) -> pd.DataFrame:
        """Clicks as implicit feedback: weight = 1 + fraction of the item watched."""
        clicks = self.impressions[self.impressions["clicked"]]
        length = self.items.set_index(ITEM_COL)["length"]
        frac = clicks["watch_time"].to_numpy() / length.loc[clicks[ITEM_COL]].to_numpy()
        return pd.DataFrame(
            {
                USER_COL: clicks[USER_COL].to_numpy(),
                ITEM_COL: clicks[ITEM_COL].to_numpy(),
                TIME_COL: clicks[TIME_COL].to_numpy(),
                WEIGHT_COL: 1.0 + np.clip(frac, 0, 1),
            }
        )

    def interaction_data(self) -> InteractionData:
        """Clicks plus the full catalogue and user table as `InteractionData`."""
        return InteractionData.from_frames(
            self.interactions(), self.items, self.users, name="simulated", extend_catalogue=False
        )

    # ------------------------------------------------------------------ ground truth
    @property
    def final_day(self) -> int:
        """The day right after the simulation: where tastes and freshness are evaluated."""
        return self.config.days

    def _idx(self, ids: np.ndarray, col: str) -> np.ndarray:
        frame = self.users if col == USER_COL else self.items
        idx = pd.Index(frame[col].to_numpy()).get_indexer(np.asarray(ids))
        if (idx < 0).any():
            raise DataError(f"unknown {col} value(s) for the simulator: {np.asarray(ids)[idx < 0][:5]}")
        return idx

    def examination(self, positions: np.ndarray) -> np.ndarray:
        """Probability a slot at 0-based `positions` is looked at (position bias)."""
        return np.power(1.0 + np.asarray(positions, dtype=np.float64), -self.config.position_eta)

    def _logits(self, u_idx: np.ndarray, i_idx: np.ndarray, day: int) -> np.ndarray:
        cfg = self.config
        affinity = np.einsum("nd,nd->n", self.user_taste[u_idx], self.item_latent[i_idx])
        age = day - self.items["publish_day"].to_numpy()[i_idx]
        fresh = cfg.fresh_boost * np.exp(-np.clip(age, 0, None) / cfg.fresh_tau_days)
        logit = cfg.taste_beta * affinity + self.item_quality[i_idx] + fresh + cfg.ctr_bias
        return np.where(age >= 0, logit, -np.inf)

    def click_probability(
        self,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        positions: np.ndarray | int = 0,
        day: int | None = None,
    ) -> np.ndarray:
        """True click probability of each (user, item, 0-based position), final tastes.

        Items not yet published on `day` (default: the day after the simulation) have 0.
        """
        u_idx = self._idx(np.asarray(user_ids), USER_COL)
        i_idx = self._idx(np.asarray(item_ids), ITEM_COL)
        d = self.final_day if day is None else day
        rel = _sigmoid(self._logits(u_idx, i_idx, d))
        return rel * self.examination(np.broadcast_to(positions, rel.shape))

    def relevance_matrix(self, user_ids: np.ndarray, day: int | None = None) -> np.ndarray:
        """Click probability at the top position of every catalogue item (users × items)."""
        cfg = self.config
        u_idx = self._idx(np.asarray(user_ids), USER_COL)
        d = self.final_day if day is None else day
        age = d - self.items["publish_day"].to_numpy()
        fresh = cfg.fresh_boost * np.exp(-np.clip(age, 0, None) / cfg.fresh_tau_days)
        logit = cfg.taste_beta * (self.user_taste[u_idx] @ self.item_latent.T)
        logit = logit + (self.item_quality + fresh + cfg.ctr_bias)[None, :]
        logit[:, age < 0] = -np.inf
        return _sigmoid(logit)

    def expected_ctr(self, recs: pd.DataFrame) -> float:
        """Mean true click probability over all slots of the given slates.

        Args:
            recs: ``user_id, item_id, rank`` (rank 1 = top slot).
        """
        for col in (USER_COL, ITEM_COL, RANK_COL):
            if col not in recs.columns:
                raise SchemaError(f"recommendations are missing column {col!r}")
        if len(recs) == 0:
            return float("nan")
        p = self.click_probability(recs[USER_COL].to_numpy(), recs[ITEM_COL].to_numpy(), recs[RANK_COL] - 1)
        return float(p.mean())

    def oracle_ctr(
        self,
        user_ids: np.ndarray,
        k: int = 10,
        exclude: InteractionData | None = None,
        batch_size: int = 2048,
    ) -> float:
        """Expected CTR of the best possible top-`k` slates (items sorted by true relevance).

        Sorting by relevance is optimal because examination decreases with position
        (rearrangement inequality). Items the user interacted with in `exclude` are skipped,
        as the models skip seen items.
        """
        user_ids = np.asarray(user_ids)
        exam = self.examination(np.arange(k))
        seen = None
        if exclude is not None:
            seen = exclude.matrix("binary")
            rows = exclude.user_index(user_ids)
            item_map = pd.Index(exclude.item_ids).get_indexer(self.items[ITEM_COL].to_numpy())
            # translate the training data's item index into the world's item order
            inv = np.full(len(exclude.item_ids), -1)
            inv[item_map[item_map >= 0]] = np.nonzero(item_map >= 0)[0]
        total, count = 0.0, 0
        for start in range(0, len(user_ids), batch_size):
            batch = user_ids[start : start + batch_size]
            rel = self.relevance_matrix(batch)
            if seen is not None:
                sub = seen[np.clip(rows[start : start + batch_size], 0, None)]
                sub = sp.csr_matrix(sub)
                known = rows[start : start + batch_size] >= 0
                r, c = sub.nonzero()
                keep = known[r]
                cols = inv[c[keep]]
                ok = cols >= 0
                rel[r[keep][ok], cols[ok]] = -1.0
            kk = min(k, rel.shape[1])
            top = -np.sort(-np.partition(rel, rel.shape[1] - kk, axis=1)[:, -kk:], axis=1)
            top = np.clip(top, 0, None)
            total += float((top * exam[:kk]).sum())
            count += top.size
        return total / max(count, 1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True).clip(1e-12)


def _words(rng: np.random.Generator, n: int) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        w = "".join(rng.choice(_SYLLABLES, size=int(rng.integers(2, 4))))
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


def _catalogue(
    cfg: SimulatorConfig, rng: np.random.Generator
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    d, g = cfg.latent_dim, cfg.n_genres
    genre_vec = _normalize(rng.normal(size=(g, d)))
    tag_genre = rng.integers(0, g, size=cfg.n_tags)
    tag_vec = _normalize(genre_vec[tag_genre] + 0.8 * _normalize(rng.normal(size=(cfg.n_tags, d))))
    tag_names = _words(rng, cfg.n_tags)
    genre_words = [_words(rng, 6) for _ in range(g)]
    creator_genre = rng.integers(0, g, size=cfg.n_creators)
    creator_vec = _normalize(
        genre_vec[creator_genre] + 0.7 * _normalize(rng.normal(size=(cfg.n_creators, d)))
    )
    creator_weight = rng.pareto(1.5, size=cfg.n_creators) + 0.2
    creator_weight /= creator_weight.sum()

    n = cfg.n_items + cfg.new_items_per_day * cfg.days
    publish_day = np.concatenate(
        [rng.integers(-180, 0, size=cfg.n_items), np.repeat(np.arange(cfg.days), cfg.new_items_per_day)]
    )
    creators = rng.choice(cfg.n_creators, size=n, p=creator_weight)
    latent = np.empty((n, d))
    genres_col, tags_col, titles = [], [], []
    tags_by_genre = [np.nonzero(tag_genre == k)[0] for k in range(g)]
    for i in range(n):
        c = creators[i]
        main = creator_genre[c] if rng.random() < 0.8 else int(rng.integers(0, g))
        extra = rng.choice(g, size=int(rng.integers(0, 3)), replace=False)
        gs = list(dict.fromkeys([int(main), *map(int, extra)]))
        pool = np.concatenate([tags_by_genre[k] for k in gs])
        n_tags = int(rng.integers(2, 5))
        ts = []
        for _ in range(n_tags):
            if len(pool) and rng.random() < 0.75:
                ts.append(int(rng.choice(pool)))
            else:
                ts.append(int(rng.integers(0, cfg.n_tags)))
        ts = list(dict.fromkeys(ts))
        content = _normalize(
            genre_vec[gs].mean(axis=0) + 0.6 * tag_vec[ts].mean(axis=0) + 0.6 * creator_vec[c]
        )
        noise = _normalize(rng.normal(size=d))
        latent[i] = _normalize(cfg.content_weight * content + (1 - cfg.content_weight) * noise)
        genres_col.append("|".join(GENRE_NAMES[k] for k in gs))
        tags_col.append("|".join(tag_names[t] for t in ts))
        words = [str(rng.choice(genre_words[main])), tag_names[ts[0]], str(rng.choice(genre_words[gs[-1]]))]
        titles.append(" ".join(w.capitalize() for w in words))
    kind = np.where(rng.random(n) < 0.7, "video", "article")
    length = np.where(kind == "video", rng.lognormal(2.2, 0.6, n), rng.lognormal(1.4, 0.4, n)).round(2)
    quality = cfg.quality_std * rng.normal(size=n)
    items = pd.DataFrame(
        {
            ITEM_COL: np.arange(n, dtype=np.int64),
            "title": titles,
            "genres": genres_col,
            "tags": tags_col,
            "creator_id": creators.astype(np.int64),
            "kind": kind,
            "length": length,
            "publish_day": publish_day.astype(np.int64),
            "publish_time": (ORIGIN + publish_day * SECONDS_PER_DAY).astype(np.int64),
        }
    )
    return items, latent, quality, genre_vec


def simulate(cfg: SimulatorConfig | None = None) -> SimulatedWorld:
    """Run the simulator.

    Args:
        cfg: Sizes and behaviour; the quick defaults when ``None``.

    Returns:
        The world with its impressions, catalogue, users and hidden truth.
    """
    cfg = cfg or SimulatorConfig()
    ss = np.random.SeedSequence(cfg.seed)
    rng_cat, rng_users, rng_days = (np.random.default_rng(s) for s in ss.spawn(3))
    items, latent, quality, genre_vec = _catalogue(cfg, rng_cat)
    n_items = len(items)

    # users: a few favourite genres plus noise; heavy-tailed activity
    nu, d = cfg.n_users, cfg.latent_dim
    taste = np.zeros((nu, d))
    for u in range(nu):
        fav = rng_users.choice(cfg.n_genres, size=int(rng_users.integers(1, 4)), replace=False)
        w = rng_users.dirichlet(np.ones(len(fav)))
        taste[u] = w @ genre_vec[fav]
    taste = _normalize(taste + 0.35 * rng_users.normal(size=(nu, d)) / np.sqrt(d))
    activity = rng_users.lognormal(0.0, 0.8, size=nu)
    activity *= cfg.sessions_per_user_day / activity.mean()
    users = pd.DataFrame(
        {
            USER_COL: np.arange(nu, dtype=np.int64),
            "country": rng_users.choice(["US", "GB", "DE", "FR", "IN", "BR"], size=nu),
            "device": rng_users.choice(["mobile", "desktop", "tv"], size=nu, p=[0.6, 0.3, 0.1]),
            "signup_day": rng_users.integers(-365, 0, size=nu),
        }
    )

    publish_day = items["publish_day"].to_numpy()
    recent_clicks = np.zeros(n_items)
    exam = np.power(1.0 + np.arange(cfg.slate_size), -cfg.position_eta)
    frames = []
    session_offset = 0
    days = range(cfg.days)
    for day in track(days, "simulating days", disable=not cfg.show_progress):
        taste = _normalize(taste + cfg.taste_drift * rng_days.normal(size=taste.shape) / np.sqrt(d) * 4)
        avail = np.nonzero(publish_day <= day)[0]
        n_sessions = rng_days.poisson(activity)
        s_user = np.repeat(np.arange(nu), n_sessions)
        n_s = len(s_user)
        if n_s == 0:
            continue
        age = day - publish_day[avail]
        fresh = np.exp(-age / cfg.fresh_tau_days)
        pop = np.log1p(recent_clicks[avail])
        pop = (pop - pop.mean()) / (pop.std() + 1e-9)
        aff = taste[s_user] @ latent[avail].T  # sessions × available items
        noisy_aff = aff + 0.3 * rng_days.normal(size=aff.shape)
        policy = (
            cfg.policy_popularity * pop[None, :]
            + cfg.policy_taste * noisy_aff * 3.0
            + cfg.policy_fresh * fresh[None, :]
            + cfg.policy_temperature * rng_days.gumbel(size=aff.shape)
        )
        k = min(cfg.slate_size, len(avail))
        top = np.argpartition(-policy, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(policy, top, axis=1), axis=1, kind="stable")
        slate = np.take_along_axis(top, order, axis=1)  # sessions × k, positions 0..k-1
        slate_aff = np.take_along_axis(aff, slate, axis=1)
        item_idx = avail[slate]
        logit = cfg.taste_beta * slate_aff + quality[item_idx] + cfg.fresh_boost * fresh[slate] + cfg.ctr_bias
        p_click = exam[None, :k] * _sigmoid(logit)
        clicked = rng_days.random(p_click.shape) < p_click
        watch_frac = _sigmoid(3.0 * slate_aff + 0.5 + 0.5 * rng_days.normal(size=slate_aff.shape))
        watch = np.where(clicked, items["length"].to_numpy()[item_idx] * watch_frac, 0.0)
        start = rng_days.integers(0, SECONDS_PER_DAY - 1200, size=n_s)
        positions = np.broadcast_to(np.arange(k), (n_s, k))
        frames.append(
            pd.DataFrame(
                {
                    USER_COL: np.repeat(s_user, k),
                    ITEM_COL: item_idx.ravel(),
                    "day": day,
                    TIME_COL: (ORIGIN + day * SECONDS_PER_DAY + start[:, None] + 30 * positions).ravel(),
                    "session_id": np.repeat(session_offset + np.arange(n_s), k),
                    "position": positions.ravel(),
                    "clicked": clicked.ravel(),
                    "watch_time": watch.ravel().round(3),
                }
            )
        )
        session_offset += n_s
        recent_clicks *= 0.85
        np.add.at(recent_clicks, item_idx[clicked], 1.0)
    impressions = pd.concat(frames, ignore_index=True)
    impressions = impressions.sort_values([TIME_COL, "session_id", "position"], kind="stable")
    impressions = impressions.reset_index(drop=True)
    impressions["day"] = impressions["day"].astype(np.int64)
    return SimulatedWorld(
        config=cfg,
        items=items,
        users=users,
        impressions=impressions,
        item_latent=latent,
        item_quality=quality,
        user_taste=taste,
    )
