"""Content-aware two-tower model (PyTorch): it can score new items that nobody has clicked.

* Item tower: an MLP over the item's content (genres, tags, hashed title words, creator,
  length) plus an item-id embedding. The id embedding is randomly dropped during training and
  is zero for items without training interactions, so the content path alone must place an
  item well: that is what recommends cold-start items.
* User tower: an MLP over the user's content profile (mean content of the items in their
  history, leave-one-out during training so the target never leaks into its own profile)
  plus a user-id embedding.
* Training: full softmax over the items that have training interactions, cosine similarity
  divided by a temperature, cross-entropy weighted by interaction weight.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from level3_recsys.data import ITEM_COL, USER_COL, WEIGHT_COL, InteractionData
from level3_recsys.models.base import Recommender
from level3_recsys.models.content import ContentEncoder
from shared.progress import make_progress

if TYPE_CHECKING:
    import torch


class TwoTowerConfig(BaseModel):
    """Architecture and training settings."""

    model_config = ConfigDict(extra="forbid")

    embedding_dim: int = Field(64, ge=2)
    hidden_dim: int = Field(128, ge=2)
    epochs: int = Field(4, ge=1)
    batch_size: int = Field(1024, ge=1)
    learning_rate: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-6, ge=0)
    temperature: float = Field(0.1, gt=0)
    id_dropout: float = Field(0.5, ge=0, le=1, description="share of item ids hidden per batch")
    use_user_id: bool = True
    title_buckets: int = Field(256, ge=1)
    threads: int = Field(1, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 42
    show_progress: bool = True


class _TwoTowerNet(Protocol):
    """What training uses of the network `_build_net` returns.

    Its class is defined inside `_build_net` (torch is imported only when a model trains),
    so it cannot be named here.
    """

    def to(self, device: str) -> _TwoTowerNet: ...
    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]: ...
    def train(self, mode: bool = True) -> _TwoTowerNet: ...
    def eval(self) -> _TwoTowerNet: ...
    def items(self, feats: torch.Tensor, id_mask: torch.Tensor) -> torch.Tensor: ...
    def users(self, profile: torch.Tensor, user_idx: torch.Tensor) -> torch.Tensor: ...


def _build_net(n_users: int, n_items: int, n_features: int, cfg: TwoTowerConfig) -> _TwoTowerNet:
    from torch import nn

    class TwoTowerNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            d, h = cfg.embedding_dim, cfg.hidden_dim
            self.item_mlp = nn.Sequential(nn.Linear(n_features, h), nn.ReLU(), nn.Linear(h, d))
            self.user_mlp = nn.Sequential(nn.Linear(n_features, h), nn.ReLU(), nn.Linear(h, d))
            self.item_id = nn.Embedding(n_items, d)
            self.user_id = nn.Embedding(n_users, d)
            nn.init.normal_(self.item_id.weight, std=0.01)
            nn.init.normal_(self.user_id.weight, std=0.01)

        def items(self, feats: torch.Tensor, id_mask: torch.Tensor) -> torch.Tensor:
            v = self.item_mlp(feats) + self.item_id.weight * id_mask[:, None]
            return nn.functional.normalize(v, dim=-1)

        def users(self, profile: torch.Tensor, user_idx: torch.Tensor) -> torch.Tensor:
            u = self.user_mlp(profile)
            if cfg.use_user_id:
                u = u + self.user_id(user_idx)
            return nn.functional.normalize(u, dim=-1)

    return TwoTowerNet()


class TwoTowerRecommender(Recommender):
    """score(u, i) = cos(user_tower(u), item_tower(i)) / temperature."""

    name = "two_tower"
    config_cls = TwoTowerConfig

    def _device(self) -> str:
        import torch

        cfg: TwoTowerConfig = self.config  # type: ignore[assignment]
        if cfg.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return cfg.device

    def _fit(self, data: InteractionData) -> None:
        import torch

        cfg: TwoTowerConfig = self.config  # type: ignore[assignment]
        torch.manual_seed(cfg.seed)
        torch.set_num_threads(cfg.threads)
        device = self._device()
        self.encoder_ = ContentEncoder(title_buckets=cfg.title_buckets).fit(data.items)
        content = self.encoder_.transform(data.items)
        x = data.matrix("binary")
        warm = np.asarray(x.sum(axis=0)).ravel() > 0
        profile_sum = np.asarray((x @ content).toarray(), dtype=np.float32)
        n_hist = np.asarray(x.sum(axis=1), dtype=np.float32).ravel()

        inter = data.interactions
        pairs_u = data.user_index(inter[USER_COL])
        pairs_i = data.item_index(inter[ITEM_COL])
        weights = inter[WEIGHT_COL].to_numpy(dtype=np.float32)

        feats = torch.as_tensor(content.toarray(), device=device)
        prof_t = torch.as_tensor(profile_sum, device=device)
        nh_t = torch.as_tensor(n_hist, device=device)
        warm_t = torch.as_tensor(warm, device=device)
        net = _build_net(data.n_users, data.n_items, content.shape[1], cfg).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        gen = torch.Generator().manual_seed(cfg.seed)
        pu = torch.as_tensor(pairs_u, device=device)
        pi = torch.as_tensor(pairs_i, device=device)
        pw = torch.as_tensor(weights, device=device)
        n = len(pairs_u)
        steps = (n + cfg.batch_size - 1) // cfg.batch_size
        cold_penalty = torch.where(warm_t, 0.0, -1e9)
        self.loss_history_: list[float] = []
        with make_progress(disable=not cfg.show_progress) as progress:
            task = progress.add_task("two-tower epochs", total=cfg.epochs)
            for epoch in range(cfg.epochs):
                perm = torch.randperm(n, generator=gen).to(device)
                total = 0.0
                net.train()
                for s in range(steps):
                    b = perm[s * cfg.batch_size : (s + 1) * cfg.batch_size]
                    u, i, w = pu[b], pi[b], pw[b]
                    keep = torch.rand(data.n_items, generator=gen).to(device) >= cfg.id_dropout
                    v = net.items(feats, (keep & warm_t).float())
                    # leave-one-out profile: the target item never describes its own user
                    denom = (nh_t[u] - 1).clamp(min=1.0)[:, None]
                    prof = (prof_t[u] - feats[i]) / denom
                    q = net.users(prof, u)
                    logits = q @ v.T / cfg.temperature + cold_penalty[None, :]
                    loss = (
                        torch.nn.functional.cross_entropy(logits, i, reduction="none") * w
                    ).sum() / w.sum()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    total += float(loss.detach())
                self.loss_history_.append(total / max(steps, 1))
                progress.update(
                    task,
                    advance=1,
                    description=f"two-tower epoch {epoch + 1} loss {self.loss_history_[-1]:.3f}",
                )
        net.eval()
        with torch.no_grad():
            v = net.items(feats, warm_t.float())
            prof = prof_t / nh_t.clamp(min=1.0)[:, None]
            q = net.users(prof, torch.arange(data.n_users, device=device))
        self.item_vectors_ = v.cpu().numpy().astype(np.float32)
        self.user_vectors_ = (q.cpu().numpy() / cfg.temperature).astype(np.float32)
        self.content_ = content
        self.warm_items_ = warm

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        return self.user_vectors_[user_idx] @ self.item_vectors_.T

    def item_content(self) -> sp.csr_matrix:
        """The encoded content matrix of the training catalogue."""
        return self.content_
