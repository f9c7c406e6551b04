"""A discovery campaign as a `gymnasium` environment: pick experiments, learn what drives the phenotype.

Each episode is a fresh hidden world (`simulate.generate_world`) behind a budgeted
`experiments.ExperimentAPI`. An action is one intervention (by default a knockout) on one gene;
its wells are tested exactly as the investigation loop does (`stats.test_intervention`, Welch +
Benjamini-Hochberg, ``min_effect`` 0.8 expression units for a powered null) and the facts enter an
`beliefs.EdgeBeliefs` over the genes plus one extra node, the **phenotype** (the last index):

* a gene whose wells shifted significantly is a descendant of the target; a powered null is a
  non-descendant (as in ``investigate._record_tests``);
* the phenotype column is tested the same way, with its own smallest effect of interest
  (``phenotype_min_effect``, phenotype units): a significant shift makes the target an ancestor of
  the phenotype, a powered null rules that out;
* `EdgeBeliefs` closes these facts logically, so ancestry of the phenotype is also *inferred*:
  ``g`` reaches ``h`` and ``h`` reaches the phenotype => ``g`` does; ``g`` does not reach the phenotype
  and ``g`` reaches ``h`` => ``h`` does not. The phenotype is a sink (it regulates no gene).

**Information** ``I`` is the share of genes whose phenotype ancestry is decided (either way): the
genes that are causal drivers of the phenotype, or upstream of one, are exactly the phenotype's
ancestors, so ``I`` measures how much of "what drives the disease" is known. Facts are never
retracted (a contradicting one is skipped), so ``I`` never decreases.

**Reward** of a step that spends ``c`` (the experiment's cost)::

    r_t = (I_{t+1} - I_t) - reward_lambda * c

so an episode's rewards sum exactly to ``(I_final - I_initial) - reward_lambda * total_cost``.
The episode terminates when every gene is decided or the budget left cannot pay for any action
(there is no truncation). The hidden truth (`truth.Evaluator`) is used only by
:meth:`DiscoveryEnv.truth_summary`, for evaluation; it never enters observation or reward.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import pandas as pd
from gymnasium import spaces
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import stats as sps

from level5_discovery.beliefs import BeliefConfig, EdgeBeliefs
from level5_discovery.experiments import ExperimentAPI, ExperimentResult, Intervention
from level5_discovery.rl.features import belief_features, decided_mask, observation_size
from level5_discovery.simulate import World, WorldConfig, generate_world
from level5_discovery.stats import bh_qvalues
from level5_discovery.truth import Evaluator

PHENOTYPE = "phenotype"
GeneKind = Literal["knockout", "knockdown", "overexpress"]


class EnvConfig(BaseModel):
    """Settings of the environment (defaults = the quick profile)."""

    model_config = ConfigDict(extra="forbid")

    world: WorldConfig = Field(default_factory=lambda: WorldConfig(n_genes=10))
    budget: float | None = Field(None, gt=0, description="Cost per episode; None = a knockout per gene")
    kinds: tuple[GeneKind, ...] = ("knockout",)
    reward_lambda: float = Field(0.02, ge=0.0, description="Information units given up per cost unit")
    n_replicates: int = Field(4, ge=2)
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    min_effect: float = Field(0.8, gt=0.0, description="Expression change a powered null must exclude")
    phenotype_min_effect: float = Field(0.2, gt=0.0, description="Phenotype change a null must exclude")
    seed_range: tuple[int, int] = (0, 100_000)  # worlds drawn by reset() without an explicit world seed

    @model_validator(mode="after")
    def _check(self) -> EnvConfig:
        if not self.kinds or len(set(self.kinds)) != len(self.kinds):
            raise ValueError("kinds must be a non-empty tuple without repeats")
        if not 0 <= self.seed_range[0] < self.seed_range[1]:
            raise ValueError("seed_range must be (low, high) with 0 <= low < high")
        return self


def api_seed(world_seed: int) -> int:
    """The measurement seed of a world's lab (derived, so one world seed fixes the whole episode)."""
    return int(np.random.SeedSequence([int(world_seed), 7]).generate_state(1)[0])


def intervention_calls(
    data: pd.DataFrame,
    variables: Sequence[str],
    target: str,
    *,
    alpha: float,
    min_effects: Sequence[float],
) -> tuple[list[str], list[str]]:
    """Which variables one experiment shifted, and which it showed unchanged (a powered null).

    The same decisions as ``stats.test_intervention`` followed by ``investigate._record_tests``
    (Welch's t-test of treated against control per variable, Benjamini-Hochberg across the
    variables, a ``1 - alpha`` confidence interval; a powered null when that interval lies inside
    ``(-min_effect, +min_effect)``), vectorised over the variables because the environment runs it
    at every step. The target itself is tested (it shares the BH family) but never returned.

    Args:
        data: The experiment's wells (columns ``variables`` and ``arm``).
        variables: Tested columns (the genes, then the phenotype).
        target: The intervened gene.
        alpha: Significance level (q < alpha) and CI level ``1 - alpha``.
        min_effects: Smallest effect of interest per variable.

    Returns:
        ``(shifted, powered_null)`` variable names, target excluded.
    """
    cols = list(variables)
    arm = data["arm"].to_numpy()
    values = data[cols].to_numpy(dtype=float)
    control, treated = values[arm == "control"], values[arm == "treated"]
    n1, n2 = len(control), len(treated)
    effect = treated.mean(axis=0) - control.mean(axis=0)
    v1, v2 = control.var(axis=0, ddof=1), treated.var(axis=0, ddof=1)
    se = np.sqrt(v1 / n1 + v2 / n2)
    exact = se == 0.0
    safe_se = np.where(exact, 1.0, se)
    df = safe_se**4 / np.maximum((v1 / n1) ** 2 / (n1 - 1) + (v2 / n2) ** 2 / (n2 - 1), 1e-300)
    t = effect / safe_se
    p = np.where(exact, np.where(effect == 0, 1.0, 0.0), 2 * sps.t.sf(np.abs(t), df))
    half = np.where(exact, 0.0, sps.t.ppf(0.5 + (1 - alpha) / 2, df) * safe_se)
    significant = bh_qvalues(p) < alpha
    bound = np.asarray(min_effects, dtype=float)
    powered = (effect - half > -bound) & (effect + half < bound) & ~significant
    keep = np.array([c != target for c in cols])
    return (
        [c for c, s in zip(cols, significant & keep, strict=True) if s],
        [c for c, s in zip(cols, powered & keep, strict=True) if s],
    )


class DiscoveryEnv(gym.Env[np.ndarray, np.int64]):
    """One discovery campaign per episode (see the module docstring for observation and reward).

    Actions: ``Discrete(len(kinds) * n_genes)``, action ``a`` = kind ``kinds[a // n]`` on gene ``a % n``.
    ``reset(seed=s)`` seeds the world draw (uniform over ``seed_range``);
    ``reset(options={"world_seed": w})`` plays world ``w`` exactly (held-out evaluation);
    ``reset(options={"world": world})`` plays a given world (a campaign's), its lab seeded from
    ``world.seed``.

    Args:
        cfg: Environment settings.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium declares it so)

    def __init__(self, cfg: EnvConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or EnvConfig()
        n = self.cfg.world.n_genes
        self.n_genes = n
        self.n_actions = len(self.cfg.kinds) * n
        self.action_space = spaces.Discrete(self.n_actions)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(observation_size(n),), dtype=np.float32)
        self._world: World | None = None
        self._api: ExperimentAPI | None = None
        self.beliefs = EdgeBeliefs(())
        self.tested = np.zeros(n, dtype=int)
        self.world_seed = -1
        self.information = 0.0
        self.initial_information = 0.0
        self.total_cost = 0.0
        self._done = True

    # ------------------------------------------------------------------ gym API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a campaign on a new world; returns the observation and ``info``."""
        super().reset(seed=seed)
        low, high = self.cfg.seed_range
        world = (options or {}).get("world")
        if world is not None:
            if world.n_genes != self.n_genes:
                raise ValueError(f"the environment plays {self.n_genes}-gene worlds, not {world.n_genes}")
            self.world_seed = int(world.seed)
        elif options and "world_seed" in options:
            self.world_seed = int(options["world_seed"])
        else:
            self.world_seed = int(self.np_random.integers(low, high))
        self._world = world if world is not None else generate_world(self.cfg.world, self.world_seed)
        self._api = ExperimentAPI(
            self._world,
            budget=self.budget,
            seed=api_seed(self.world_seed),
            n_replicates=self.cfg.n_replicates,
        )
        self.beliefs = self._fresh_beliefs(self._world.genes)
        self.tested = np.zeros(self.n_genes, dtype=int)
        self.information = self._information()
        self.initial_information = self.information
        self.total_cost = 0.0
        self._done = False
        return self._observation(), self._info(None, 0.0, 0.0)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Run one experiment; reward = information gained - ``reward_lambda`` * its cost.

        Raises:
            ValueError: ``action`` is not in the action space.
            RuntimeError: The episode has ended (call :meth:`reset`).
        """
        if self._done or self._api is None:
            raise RuntimeError("the episode has ended: call reset() first")
        a = self._check_action(action)
        kind, gene = self.decode(a)
        result = self._api.run(Intervention(kind, gene))
        self._record(gene, result)
        self.tested[a % self.n_genes] += 1
        before, self.information = self.information, self._information()
        gain = self.information - before
        self.total_cost += result.cost
        reward = gain - self.cfg.reward_lambda * result.cost
        self._done = bool(decided_mask(*self._reach()).all()) or self._api.remaining < self._min_cost() - 1e-9
        return (
            self._observation(),
            float(reward),
            self._done,
            False,
            self._info((kind, gene), result.cost, gain),
        )

    # ------------------------------------------------------------------ helpers

    @property
    def budget(self) -> float:
        """Cost units per episode."""
        return float(self.cfg.budget) if self.cfg.budget is not None else float(self.n_genes)

    @property
    def genes(self) -> tuple[str, ...]:
        """Gene names of the current world."""
        return self.beliefs.genes[: self.n_genes]

    @property
    def history(self) -> tuple[ExperimentResult, ...]:
        """The experiments of the current episode, in order (their wells and costs)."""
        return tuple(self._api.history) if self._api is not None else ()

    @property
    def remaining(self) -> float:
        """Budget left in the current episode."""
        return self._api.remaining if self._api is not None else 0.0

    def decode(self, action: int) -> tuple[GeneKind, str]:
        """``(kind, gene)`` of an action index."""
        a = self._check_action(action)
        return self.cfg.kinds[a // self.n_genes], self.genes[a % self.n_genes]

    def action_cost(self, action: int) -> float:
        """The cost of an action in the current lab."""
        kind, _ = self.decode(action)
        assert self._api is not None
        return float(getattr(self._api.costs, kind))

    def truth_summary(self) -> dict[str, float]:
        """Evaluation only (hidden truth): how right the decided phenotype ancestries are.

        Returns:
            ``decided_share``, ``correct_share`` (decided and right, over all genes), ``wrong``
            (decided and wrong, a count) and ``n_upstream`` (true ancestors of the phenotype).
        """
        if self._world is None:
            raise RuntimeError("no world yet: call reset() first")
        ev = Evaluator(self._world)
        upstream = ev.phenotype_ancestors()
        truth = np.array([g in upstream for g in self.genes])
        req, forb = self._reach()
        n = self.n_genes
        known_up, known_not = req[:n, n], forb[:n, n]
        right = (known_up & truth) | (known_not & ~truth)
        wrong = (known_up & ~truth) | (known_not & truth)
        return {
            "decided_share": float((known_up | known_not).mean()),
            "correct_share": float(right.mean()),
            "wrong": float(wrong.sum()),
            "n_upstream": float(truth.sum()),
        }

    def _check_action(self, action: Any) -> int:
        try:
            a = int(action)
        except (TypeError, ValueError):
            raise ValueError(f"action must be an integer in [0, {self.n_actions}), got {action!r}") from None
        if a != action or not 0 <= a < self.n_actions:
            raise ValueError(f"action must be an integer in [0, {self.n_actions}), got {action!r}")
        return a

    def _min_cost(self) -> float:
        assert self._api is not None
        return min(float(getattr(self._api.costs, k)) for k in self.cfg.kinds)

    def _fresh_beliefs(self, genes: tuple[str, ...]) -> EdgeBeliefs:
        beliefs = EdgeBeliefs((*genes, PHENOTYPE), BeliefConfig())
        n = self.n_genes
        # The phenotype regulates no gene; its parents (the drivers) are ~n_drivers of n genes.
        beliefs.forbidden_reach[n, :] = True
        p = min(0.9, self.cfg.world.n_drivers / n)
        beliefs.edge_logit[:n, n] = np.log(p) - np.log1p(-p)
        return beliefs

    def _reach(self) -> tuple[np.ndarray, np.ndarray]:
        return self.beliefs.required_reach, self.beliefs.forbidden_reach

    def _information(self) -> float:
        return float(decided_mask(*self._reach()).mean())

    def _record(self, target: str, result: ExperimentResult) -> None:
        shifted, null = intervention_calls(
            result.data,
            (*self.genes, PHENOTYPE),
            target,
            alpha=self.cfg.alpha,
            min_effects=(self.cfg.min_effect,) * self.n_genes + (self.cfg.phenotype_min_effect,),
        )
        self.beliefs.observe_intervention(target, shifted, null)

    def _observation(self) -> np.ndarray:
        req, forb = self._reach()
        return belief_features(req, forb, self.tested, self.remaining / self.budget)

    def _info(self, action: tuple[str, str] | None, cost: float, gain: float) -> dict[str, Any]:
        return {
            "world_seed": self.world_seed,
            "information": self.information,
            "initial_information": self.initial_information,
            "info_gain": gain,
            "cost": cost,
            "spent": self.total_cost,
            "kind": action[0] if action else "",
            "target": action[1] if action else "",
        }
