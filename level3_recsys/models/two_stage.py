"""Two-stage recommender: candidates from several models, re-ranked by LightGBM lambdarank.

Training needs labels the candidate models have not seen, so `fit` cuts the training data
once more: the candidate models are fitted on the earlier part (``holdout="time"``, the last
``holdout_days`` are held out; or a random per-user share with ``holdout="random"`` when the
evaluation split is not chronological), candidates are generated for the held-out users, and
a candidate is labelled 1 when the user interacted with it in the held-out part. The ranker
learns from the candidate models' scores and ranks plus user, item, user×item and context
features. Then the candidate models are refitted on all the training data for inference.

Features per (user, candidate): for each candidate model its score, its score minus the
user's best score, and its rank (``n_candidates + 1`` when outside its list); item
popularity (distinct users, log), recent popularity (7-day half-life, log), item age in days,
length, category codes of low-cardinality item columns; user history size (log), days since
the user's last interaction, category codes of low-cardinality user columns (device,
country: the context); cosine between the user's genre/tag profile and the item's genres/
tags, for the whole history and for the last days (3-day half-life, taste drifts); share of
the user's history by the item's creator; item trend (1-day half-life clicks); co-visitation
of the item with the user's recent items (cosine item-item).
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from level3_recsys.data import SECONDS_PER_DAY, TIME_COL, USER_COL, InteractionData
from level3_recsys.models.als import ALSConfig, ALSRecommender
from level3_recsys.models.base import NEG_INF, Recommender, top_k
from level3_recsys.models.content import ContentEncoder
from level3_recsys.models.ease import EASEConfig, EASERecommender
from level3_recsys.models.itemknn import ItemKNNConfig, ItemKNNRecommender
from level3_recsys.models.popularity import PopularityConfig, PopularityRecommender
from level3_recsys.models.two_tower import TwoTowerConfig, TwoTowerRecommender
from shared.errors import ConfigError, DataError
from shared.progress import make_progress

CandidateName = Literal["popularity", "itemknn", "als", "ease", "two_tower"]
_BASE_CLASSES: dict[str, type[Recommender]] = {
    "popularity": PopularityRecommender,
    "itemknn": ItemKNNRecommender,
    "als": ALSRecommender,
    "ease": EASERecommender,
    "two_tower": TwoTowerRecommender,
}


class TwoStageConfig(BaseModel):
    """Candidate models, inner split and LightGBM ranker settings."""

    model_config = ConfigDict(extra="forbid")

    candidates: list[CandidateName] = Field(default_factory=lambda: list(get_args(CandidateName)))
    n_candidates: int = Field(30, ge=1, description="candidates taken from each model")
    max_negatives: int = Field(200, ge=1, description="negatives sampled per user for ranker training")
    holdout: Literal["time", "random", "stratified"] = Field(
        "time",
        description=(
            "inner split: time (last days), random (per-user share) or stratified (per-item share, "
            "as the Recommenders MovieLens protocol splits its test set)"
        ),
    )
    holdout_days: float = Field(5.0, gt=0, description="label period for holdout='time'")
    holdout_fraction: float = Field(
        0.2, gt=0, lt=1, description="per-user (random) or per-item (stratified) held-out share"
    )
    holdout_windows: int = Field(
        2, ge=1, description="inner windows labelled for the ranker (earlier days, or other random draws)"
    )
    popularity: PopularityConfig = Field(default_factory=PopularityConfig)
    itemknn: ItemKNNConfig = Field(default_factory=ItemKNNConfig)
    als: ALSConfig = Field(default_factory=ALSConfig)
    ease: EASEConfig = Field(default_factory=EASEConfig)
    two_tower: TwoTowerConfig = Field(default_factory=TwoTowerConfig)
    n_estimators: int = Field(150, ge=1)
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(7, ge=2, description="small trees: a few thousand labelled users")
    min_child_samples: int = Field(100, ge=1)
    user_numeric: list[str] = Field(
        default_factory=list, description="numeric user columns used as features (e.g. MovieLens age)"
    )
    threads: int = Field(1, ge=1)
    seed: int = 42
    show_progress: bool = True


class _Context:
    """Per-user and per-item features computed from one training set."""

    def __init__(
        self, data: InteractionData, recent_half_life_days: float = 3.0, user_numeric: tuple[str, ...] = ()
    ) -> None:
        self.seen = data.matrix("binary").tocsr()
        ref = data.max_time
        self.item_log_pop = np.log1p(np.asarray(self.seen.sum(axis=0)).ravel()).astype(np.float32)
        recent = data.matrix("count", decay_half_life_days=7.0)
        self.item_recent = np.log1p(np.asarray(recent.sum(axis=0)).ravel()).astype(np.float32)
        inter = data.interactions
        items = data.items
        if "publish_time" in items:
            pub = items["publish_time"].to_numpy(dtype=np.float64)
        else:
            first = inter.groupby("item_id")[TIME_COL].min()
            pub = first.reindex(data.item_ids).to_numpy(dtype=np.float64)
        # items published after the training data ends count as brand new (age 0)
        self.item_age = np.clip((ref - pub) / SECONDS_PER_DAY, 0, None).astype(np.float32)
        self.item_length = (
            items["length"].to_numpy(dtype=np.float32) if "length" in items else np.full(data.n_items, np.nan)
        )
        self.item_cats = _category_codes(items, exclude=("item_id", "title", "genres", "tags"))
        self.user_cats = _category_codes(data.users, exclude=("user_id",))
        self.user_nums = [
            (c, data.users[c].to_numpy(dtype=np.float32)) for c in user_numeric if c in data.users
        ]
        n_u = np.asarray(self.seen.sum(axis=1)).ravel()
        self.user_log_n = np.log1p(n_u).astype(np.float32)
        last = inter.groupby(USER_COL)[TIME_COL].max().reindex(data.user_ids).to_numpy(dtype=np.float64)
        self.user_recency = ((ref - last) / SECONDS_PER_DAY).astype(np.float32)
        enc = ContentEncoder(title_buckets=1).fit(items)
        content = enc.transform(items)
        # the last days say more about today's taste than the whole history (taste drifts)
        recent_seen = data.matrix("binary", decay_half_life_days=recent_half_life_days)
        self.profiles: list[tuple[np.ndarray, np.ndarray]] = []
        self.profile_names: list[str] = []
        for block in ("genres", "tags"):
            sl = enc.blocks_[block]
            if sl.stop > sl.start:
                item_m = _unit_rows(content[:, sl].toarray().astype(np.float32))
                for label, hist in (("all", self.seen), ("recent", recent_seen)):
                    user_m = np.asarray((hist @ content[:, sl]).toarray(), dtype=np.float32)
                    self.profiles.append((_unit_rows(user_m), item_m))
                    self.profile_names.append(f"{block}_affinity_{label}")
        trend = data.matrix("count", decay_half_life_days=1.0)
        self.item_trend = np.log1p(np.asarray(trend.sum(axis=0)).ravel()).astype(np.float32)
        # co-visitation with the user's most recent items (cosine item-item on recent affinity)
        x = self.seen.tocsc()
        cooc = (x.T @ x).tocoo()
        diag = np.sqrt(np.maximum(np.asarray(x.sum(axis=0)).ravel(), 1e-9))
        off = cooc.row != cooc.col
        vals = cooc.data[off] / (diag[cooc.row[off]] * diag[cooc.col[off]])
        self.item_sim = sp.csr_matrix(
            (vals.astype(np.float32), (cooc.row[off], cooc.col[off])), shape=cooc.shape
        )
        self.recent_affinity = recent_seen.tocsr()
        sl = enc.blocks_["creator"]
        self.creator_col = None
        if sl.stop > sl.start:
            cm = content[:, sl].tocsr()
            self.creator_col = np.asarray(cm.argmax(axis=1)).ravel()
            self.user_creator = (self.seen @ cm).tocsr()
            self.user_n = np.maximum(n_u, 1).astype(np.float32)

    def features(self, users: np.ndarray, items: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """Named feature columns for (user index, item index) pairs."""
        out = [
            ("item_log_pop", self.item_log_pop[items]),
            ("item_recent_pop", self.item_recent[items]),
            ("item_age_days", self.item_age[items]),
            ("item_length", self.item_length[items].astype(np.float32)),
            *[(f"item_{name}", c[items]) for name, c in self.item_cats],
            ("user_log_n", self.user_log_n[users]),
            ("user_days_inactive", self.user_recency[users]),
            *[(f"user_{name}", c[users]) for name, c in self.user_cats],
            *[(f"user_{name}", c[users]) for name, c in self.user_nums],
        ]
        for name, (user_m, item_m) in zip(self.profile_names, self.profiles, strict=True):
            out.append((name, np.einsum("nd,nd->n", user_m[users], item_m[items])))
        out.append(("item_trend", self.item_trend[items]))
        uniq, inv = np.unique(users, return_inverse=True)
        covisit = np.asarray((self.recent_affinity[uniq] @ self.item_sim).toarray(), dtype=np.float32)
        out.append(("recent_covisit", covisit[inv, items]))
        if self.creator_col is not None:
            dense = self.user_creator[uniq].toarray()
            share = (dense[inv, self.creator_col[items]] / self.user_n[users]).astype(np.float32)
            out.append(("creator_share", share))
        return out


def _sample_negatives(rows: np.ndarray, y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Keep every positive and at most `n` random negatives per row group.

    Lambdarank's cost grows with the square of the group size; a sample of negatives keeps
    training fast while the ranker still sees every positive.
    """
    key = np.where(y, -1.0, rng.random(len(rows)))
    order = np.lexsort((key, rows))
    sorted_rows = rows[order]
    first = np.searchsorted(sorted_rows, sorted_rows, side="left")
    pos_in_group = np.arange(len(rows)) - first
    n_pos = np.bincount(rows, weights=y.astype(float), minlength=rows.max() + 1 if len(rows) else 0)
    keep_sorted = pos_in_group < n_pos[sorted_rows] + n
    keep = np.empty(len(rows), dtype=bool)
    keep[order] = keep_sorted
    return keep


def _unit_rows(m: np.ndarray) -> np.ndarray:
    return m / np.linalg.norm(m, axis=1, keepdims=True).clip(1e-9)


def _category_codes(df: pd.DataFrame, exclude: tuple[str, ...]) -> list[tuple[str, np.ndarray]]:
    out = []
    for col in df.columns:
        if col in exclude:
            continue
        s = df[col]
        if (s.dtype == object or isinstance(s.dtype, pd.CategoricalDtype)) and s.nunique() <= 20:
            codes = pd.Categorical(s.astype(str), categories=sorted(s.astype(str).unique())).codes
            out.append((str(col), codes.astype(np.float32)))
    return out


class TwoStageRecommender(Recommender):
    """Union of the candidate models' top lists, ordered by a LightGBM lambdarank model."""

    name = "two_stage"
    config_cls = TwoStageConfig

    # ------------------------------------------------------------------ training
    def _base_models(self, data: InteractionData, stage: str) -> dict[str, Recommender]:
        cfg: TwoStageConfig = self.config  # type: ignore[assignment]
        models: dict[str, Recommender] = {}
        for name in cfg.candidates:
            sub = getattr(cfg, name).model_copy()
            if "show_progress" in type(sub).model_fields:
                sub = sub.model_copy(update={"show_progress": cfg.show_progress})
            models[name] = _BASE_CLASSES[name](sub).fit(data)
        return models

    def _inner_split(self, data: InteractionData, window: int = 0) -> tuple[InteractionData, InteractionData]:
        """Fit part and label part of inner window `window` (0 = the most recent)."""
        cfg: TwoStageConfig = self.config  # type: ignore[assignment]
        inter = data.interactions
        ts = inter[TIME_COL].to_numpy()
        if cfg.holdout == "time":
            end = data.max_time - window * cfg.holdout_days * SECONDS_PER_DAY
            cutoff = end - cfg.holdout_days * SECONDS_PER_DAY
            label_mask = (ts > cutoff) & (ts <= end)
            fit_mask = ts <= cutoff
        elif cfg.holdout == "stratified":
            from level3_recsys.split import python_stratified_split

            # the same per-item cut as the evaluation protocol, so the ranker learns on labels
            # distributed like the test's (e.g. items with 1-2 ratings never get a label)
            _, held = python_stratified_split(
                inter, ratio=1 - cfg.holdout_fraction, filter_by="item", seed=cfg.seed + 1000 + window
            )
            label_mask = inter.index.isin(held.index)
            fit_mask = ~label_mask
        else:
            rng = np.random.default_rng([cfg.seed, window])
            r = pd.Series(rng.random(len(inter)), index=inter.index)
            pct = r.groupby(inter[USER_COL]).rank(pct=True)
            size = inter.groupby(USER_COL)[USER_COL].transform("size")
            label_mask = ((pct <= cfg.holdout_fraction) & (size >= 2)).to_numpy()
            fit_mask = ~label_mask
        fit_part, label_part = inter[fit_mask], inter[label_mask]
        if len(fit_part) == 0 or len(label_part) == 0:
            raise DataError("two-stage: the inner holdout leaves no data to fit or to label; change holdout")
        return data.with_interactions(fit_part), data.with_interactions(label_part)

    def _fit(self, data: InteractionData) -> None:
        import lightgbm as lgb

        cfg: TwoStageConfig = self.config  # type: ignore[assignment]
        if not cfg.candidates:
            raise ConfigError("two-stage needs at least one candidate model")
        xs, ys, groups = [], [], []
        rng = np.random.default_rng(cfg.seed)
        windows_used = 0
        for window in range(cfg.holdout_windows):
            try:
                fit_part, label_part = self._inner_split(data, window)
            except DataError:
                if window == 0:
                    raise
                break  # the history is too short for more windows: train on the ones we have
            windows_used += 1
            bases = self._base_models(fit_part, "inner")
            ctx = _Context(fit_part, user_numeric=tuple(cfg.user_numeric))
            labels = label_part.matrix("binary").tocsr()
            users = np.unique(label_part.user_index(label_part.interactions[USER_COL]))
            users = users[np.asarray(ctx.seen[users].sum(axis=1)).ravel() > 0]
            for start in range(0, len(users), 512):
                ub = users[start : start + 512]
                rows, cols, x = self._candidates(bases, ctx, ub)
                y = np.asarray(labels[ub[rows], cols]).ravel() > 0
                has_pos = np.bincount(rows, weights=y, minlength=len(ub)) > 0
                keep = has_pos[rows] & _sample_negatives(rows, y, cfg.max_negatives, rng)
                xs.append(x[keep])
                ys.append(y[keep].astype(np.int32))
                groups.append(np.bincount(rows[keep], minlength=len(ub))[has_pos])
            del bases, ctx
        x_all, y_all = np.concatenate(xs), np.concatenate(ys)
        group = np.concatenate(groups)
        if y_all.sum() == 0:
            raise DataError("two-stage: no held-out interaction is among the candidates; cannot train")
        self.train_rows_ = len(y_all)
        self.windows_used_ = windows_used
        self.train_positive_rate_ = float(y_all.mean())
        ranker = lgb.LGBMRanker(
            objective="lambdarank",
            n_estimators=cfg.n_estimators,
            learning_rate=cfg.learning_rate,
            num_leaves=cfg.num_leaves,
            min_child_samples=cfg.min_child_samples,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.8,
            random_state=cfg.seed,
            n_jobs=cfg.threads,
            deterministic=True,
            force_col_wise=True,
            verbose=-1,
        )
        with make_progress(disable=not cfg.show_progress) as progress:
            task = progress.add_task("LightGBM lambdarank", total=cfg.n_estimators)
            ranker.fit(
                x_all,
                y_all,
                group=group,
                feature_name=self.feature_names_,
                callbacks=[lambda env: progress.advance(task)],
            )
        self.ranker_ = ranker.booster_
        # refit the candidate models on all the training data for inference
        self.bases_ = self._base_models(data, "full")
        self.ctx_ = _Context(data, user_numeric=tuple(cfg.user_numeric))

    # ------------------------------------------------------------------ candidates
    def _candidates(
        self, bases: dict[str, Recommender], ctx: _Context, user_idx: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Union of the models' top lists for `user_idx` and its feature matrix.

        Two passes over the candidate models (top lists, then scores of the union) keep at most
        one users × items score matrix alive, so large catalogues fit in memory.
        """
        cfg: TwoStageConfig = self.config  # type: ignore[assignment]
        b = len(user_idx)
        n_items = len(self.item_ids_)
        seen = ctx.seen[user_idx]
        seen_r = np.repeat(np.arange(b), np.diff(seen.indptr))

        def scores(name: str) -> np.ndarray:
            s = bases[name]._score(user_idx).astype(np.float32, copy=True)
            s[seen_r, seen.indices] = NEG_INF
            return s

        tops = []
        for name in cfg.candidates:
            top, _ = top_k(scores(name), cfg.n_candidates)
            tops.append(top)
        keys = np.unique(np.concatenate([(np.arange(b)[:, None] * n_items + t).ravel() for t in tops]))
        rows, cols = keys // n_items, keys % n_items
        feats: list[np.ndarray] = []
        names: list[str] = []
        for name, top in zip(cfg.candidates, tops, strict=True):
            s = scores(name)
            sc = s[rows, cols]
            best = s[np.arange(b), top[:, 0]] if top.shape[1] else np.zeros(b, np.float32)
            # rank of each candidate in this model's list (n_candidates + 1 when absent)
            top_keys = (np.arange(b)[:, None] * n_items + top).ravel()
            top_rank = np.tile(np.arange(1, top.shape[1] + 1, dtype=np.float32), b)
            order = np.argsort(top_keys, kind="stable")
            pos = np.searchsorted(top_keys[order], keys).clip(0, len(top_keys) - 1)
            hit = top_keys[order][pos] == keys
            rank = np.where(hit, top_rank[order][pos], cfg.n_candidates + 1).astype(np.float32)
            feats += [sc, sc - best[rows], rank]
            names += [f"{name}_score", f"{name}_gap", f"{name}_rank"]
        users = user_idx[rows]
        for fname, values in ctx.features(users, cols):
            feats.append(values)
            names.append(fname)
        self.feature_names_ = names
        x = np.column_stack([f.astype(np.float32) for f in feats])
        return rows, cols, x

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        cfg: TwoStageConfig = self.config  # type: ignore[assignment]
        rows, cols, x = self._candidates(self.bases_, self.ctx_, user_idx)
        # non-candidates keep the order of the last candidate model, below every candidate
        fallback = self.bases_[cfg.candidates[-1]]._score(user_idx).astype(np.float32)
        lo = fallback.min(axis=1, keepdims=True)
        hi = fallback.max(axis=1, keepdims=True)
        out = (fallback - lo) / np.maximum(hi - lo, 1e-9)
        if len(rows):
            # Booster.predict is typed as "array, sparse matrix or list" (its contribution
            # modes); a plain prediction is an ndarray, which asarray keeps as it is.
            scores = np.asarray(self.ranker_.predict(x, num_threads=cfg.threads))
            out[rows, cols] = 1e3 + scores.astype(np.float32)
        return out

    def feature_importance(self) -> pd.Series:
        """Gain importance of each ranker feature, largest first."""
        gain = self.ranker_.feature_importance(importance_type="gain")
        return pd.Series(gain, index=self.ranker_.feature_name()).sort_values(ascending=False)
