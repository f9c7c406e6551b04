"""The hidden in-silico biology: a gene-regulatory DAG with saturating responses and a phenotype.

Each gene ``j`` has a reference level ``ref_j = softplus(basal_j)`` (its noise-free unperturbed
expression). Genes are evaluated in a topological order::

    x_j = softplus(basal_j + sum_i W[i, j] * h(x_i - ref_i) + eps_j),   eps_j ~ N(0, noise_sd)

``h`` has slope ``response_gain`` at 0 (below 1, so fluctuations fade along chains) and saturates:
a parent rising above its reference gives at most ``saturation_up`` of push, a parent falling gives
at most ``saturation_down`` (larger, so losing a regulator matters more than gaining extra of it, as
with receptors and enzymes near saturation). The soft floor keeps
expression non-negative. A do-intervention replaces ``x_j`` by a constant (knockout = 0,
over-expression = ref + delta); a scale multiplies the gene's own structural value (knock-down,
compound inhibition). Both act before the gene's children are computed, so descendants respond and
non-descendants do not. The phenotype is a sigmoid of the drivers' deviations from reference.

Agents never see a :class:`World`; they get an :class:`~level5_discovery.experiments.ExperimentAPI`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class WorldConfig(BaseModel):
    """Settings of a generated world; defaults are the quick profile."""

    model_config = ConfigDict(extra="forbid")

    n_genes: int = Field(20, ge=2, le=1000)
    expected_parents: float = Field(1.4, ge=0.0)
    max_parents: int = Field(3, ge=0)
    weight_low: float = Field(0.8, gt=0.0)
    weight_high: float = Field(2.0, gt=0.0)
    negative_share: float = Field(0.35, ge=0.0, le=1.0)
    noise_sd: float = Field(0.15, ge=0.0)
    n_drivers: int = Field(3, ge=1)
    basal_low: float = Field(2.0, gt=0.0)
    basal_high: float = Field(5.0, gt=0.0)
    # Saturation of a parent's push on its children (expression units): upward gains saturate
    # sooner than losses, so over-expression moves children less than a knockout does.
    saturation_up: float = Field(1.2, gt=0.0)
    saturation_down: float = Field(3.5, gt=0.0)
    # Slope of a parent's push at its reference: below 1, so small fluctuations fade along chains
    # of strong edges instead of amplifying (observational spread stays near the noise level).
    response_gain: float = Field(0.6, gt=0.0)
    floor_sharpness: float = Field(4.0, gt=0.0)
    knockdown_scale: float = Field(0.3, ge=0.0, le=1.0)
    overexpress_delta: float = Field(3.0, gt=0.0)
    driver_weight_low: float = Field(0.6, gt=0.0)
    driver_weight_high: float = Field(1.2, gt=0.0)
    phenotype_bias: float = 1.0
    phenotype_noise_sd: float = Field(0.02, ge=0.0)

    @model_validator(mode="after")
    def _ranges_ordered(self) -> WorldConfig:
        for low, high in (("weight_low", "weight_high"), ("basal_low", "basal_high")):
            if getattr(self, high) < getattr(self, low):
                raise ValueError(f"{high} must be >= {low}")
        if self.driver_weight_high < self.driver_weight_low:
            raise ValueError("driver_weight_high must be >= driver_weight_low")
        return self


def softplus(z: np.ndarray | float, sharpness: float) -> np.ndarray:
    """A smooth ``max(0, z)``: ``log1p(exp(k z)) / k``, numerically stable for large ``|z|``."""
    kz = sharpness * np.asarray(z, dtype=float)
    return np.asarray((np.maximum(kz, 0.0) + np.log1p(np.exp(-np.abs(kz)))) / sharpness)


def saturate(d: np.ndarray, up: float, down: float, gain: float = 1.0) -> np.ndarray:
    """Push of a parent deviating by ``d`` from its reference (slope ``gain`` at 0, bounded by up/down)."""
    return np.where(d >= 0.0, up * np.tanh(gain * d / up), down * np.tanh(gain * d / down))


# eq=False: the array fields make field-wise == ambiguous; compare worlds by to_json().
@dataclass(frozen=True, eq=False)
class World:
    """A hidden gene-regulatory world (see the module docstring for the model).

    Attributes:
        genes: Gene names, ``G00``, ``G01``, ...
        weights: ``(n, n)`` signed weights, ``W[i, j] != 0`` iff ``i -> j``.
        order: A topological order of gene indices.
        basal: ``(n,)`` basal drive of each gene.
        phenotype_weights: ``(n,)`` driver weights on the phenotype logit (0 for non-drivers).
        config: The settings the world was generated with (its response constants are used).
        seed: The seed it was generated from.
    """

    genes: tuple[str, ...]
    weights: np.ndarray
    order: tuple[int, ...]
    basal: np.ndarray
    phenotype_weights: np.ndarray
    config: WorldConfig
    seed: int
    _parents: tuple[np.ndarray, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.genes)
        w = np.asarray(self.weights, dtype=float)
        if w.shape != (n, n) or self.basal.shape != (n,) or self.phenotype_weights.shape != (n,):
            raise ValueError(f"weights, basal and phenotype_weights must match {n} genes")
        if sorted(self.order) != list(range(n)):
            raise ValueError("order must be a permutation of the gene indices")
        position = np.empty(n, dtype=int)
        position[list(self.order)] = np.arange(n)
        src, dst = np.nonzero(w)
        if np.any(position[src] >= position[dst]):
            raise ValueError("weights contain an edge against the topological order (a cycle or self-loop)")
        object.__setattr__(self, "_parents", tuple(np.flatnonzero(w[:, j]) for j in range(n)))

    @property
    def n_genes(self) -> int:
        """Number of genes."""
        return len(self.genes)

    @property
    def reference(self) -> np.ndarray:
        """Noise-free unperturbed expression of each gene, ``softplus(basal)``."""
        return softplus(self.basal, self.config.floor_sharpness)

    def index(self, gene: str) -> int:
        """Index of a gene name.

        Raises:
            KeyError: Unknown gene.
        """
        return self.genes.index(gene)

    def sample(
        self,
        n: int,
        rng: np.random.Generator,
        *,
        do: Mapping[int, float] | None = None,
        scale: Mapping[int, float] | None = None,
    ) -> np.ndarray:
        """Draw ``n`` cells (or wells) from the world, optionally under interventions.

        Args:
            n: Number of samples.
            rng: Source of the biological noise.
            do: Gene index -> clamped expression (knockout 0, over-expression high); overrides ``scale``.
            scale: Gene index -> multiplier of the gene's own structural value (knock-down 0.3,
                compound inhibition ``1 - occupancy``).

        Returns:
            ``(n, n_genes + 1)``: expression of each gene, then the phenotype.
        """
        do, scale = dict(do or {}), dict(scale or {})
        g = self.n_genes
        for key in (*do, *scale):
            if not 0 <= int(key) < g:
                raise ValueError(f"gene index {key} out of range 0..{g - 1}")
        cfg = self.config
        ref = self.reference
        # All noise is drawn up front so the same rng state gives the same noise whatever is
        # intervened on (common random numbers make do-effects exact differences).
        noise = rng.normal(0.0, cfg.noise_sd, size=(n, g))
        pheno_noise = rng.normal(0.0, cfg.phenotype_noise_sd, size=n)
        x = np.empty((n, g + 1))
        for j in self.order:
            if j in do:
                x[:, j] = float(do[j])
                continue
            z = self.basal[j] + noise[:, j]
            parents = self._parents[j]
            if parents.size:
                push = saturate(
                    x[:, parents] - ref[parents], cfg.saturation_up, cfg.saturation_down, cfg.response_gain
                )
                z = z + push @ self.weights[parents, j]
            value = softplus(z, cfg.floor_sharpness)
            x[:, j] = value * float(scale[j]) if j in scale else value
        logit = cfg.phenotype_bias + (x[:, :g] - ref) @ self.phenotype_weights
        x[:, g] = 1.0 / (1.0 + np.exp(-logit)) + pheno_noise
        return x

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (floats survive a JSON round trip exactly)."""
        return {
            "genes": list(self.genes),
            "weights": self.weights.tolist(),
            "order": list(self.order),
            "basal": self.basal.tolist(),
            "phenotype_weights": self.phenotype_weights.tolist(),
            "config": self.config.model_dump(),
            "seed": self.seed,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> World:
        """Rebuild a world written by :meth:`to_json`."""
        return cls(
            genes=tuple(d["genes"]),
            weights=np.asarray(d["weights"], dtype=float),
            order=tuple(int(i) for i in d["order"]),
            basal=np.asarray(d["basal"], dtype=float),
            phenotype_weights=np.asarray(d["phenotype_weights"], dtype=float),
            config=WorldConfig.model_validate(d["config"]),
            seed=int(d["seed"]),
        )


def gene_names(n: int) -> tuple[str, ...]:
    """``G00``... zero-padded to 2 digits, or more when ``n > 100``."""
    width = max(2, len(str(n - 1)))
    return tuple(f"G{i:0{width}d}" for i in range(n))


def _random_dag(cfg: WorldConfig, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, ...]]:
    n = cfg.n_genes
    order = rng.permutation(n)
    w = np.zeros((n, n))
    p = min(1.0, cfg.expected_parents / cfg.max_parents) if cfg.max_parents else 0.0
    for pos in range(1, n):
        k = min(int(rng.binomial(cfg.max_parents, p)), pos)
        if k == 0:
            continue
        parents = rng.choice(order[:pos], size=k, replace=False)
        magnitude = rng.uniform(cfg.weight_low, cfg.weight_high, size=k)
        sign = np.where(rng.random(k) < cfg.negative_share, -1.0, 1.0)
        w[parents, order[pos]] = sign * magnitude
    return w, tuple(int(i) for i in order)


def _phenotype_weights(cfg: WorldConfig, w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = cfg.n_genes
    k = min(cfg.n_drivers, n)
    # Drivers are regulated genes where possible, so upstream genes matter to the disease.
    regulated = np.flatnonzero(np.any(w != 0, axis=0))
    pool = regulated if regulated.size >= k else np.arange(n)
    drivers = rng.choice(pool, size=k, replace=False)
    pw = np.zeros(n)
    pw[drivers] = rng.uniform(cfg.driver_weight_low, cfg.driver_weight_high, size=k) * np.where(
        rng.random(k) < 0.5, -1.0, 1.0
    )
    return pw


def generate_world(cfg: WorldConfig, seed: int) -> World:
    """Generate a random world.

    Args:
        cfg: World settings.
        seed: Same seed and config -> identical world.

    Returns:
        The hidden :class:`World`.
    """
    rng = np.random.default_rng(seed)
    w, order = _random_dag(cfg, rng)
    basal = rng.uniform(cfg.basal_low, cfg.basal_high, size=cfg.n_genes)
    pw = _phenotype_weights(cfg, w, rng)
    return World(
        genes=gene_names(cfg.n_genes),
        weights=w,
        order=order,
        basal=basal,
        phenotype_weights=pw,
        config=cfg,
        seed=seed,
    )
