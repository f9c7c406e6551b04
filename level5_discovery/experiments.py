"""The experiment API: the only way an agent touches the hidden world.

Every experiment is one batch: ``n`` treated wells and ``n`` paired control wells measured
together, so they share the batch offset (a per-gene shift drawn per experiment) and differ only by
the intervention, biological noise and measurement noise. ``observe`` returns ``2n`` untreated
wells. Each call costs budget; a call that would overspend raises :class:`BudgetExceededError`
and costs nothing. Measurements of one experiment depend only on the API seed and the experiment
id, so the same seed and the same sequence of calls give the same data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from shared.errors import UserError

if TYPE_CHECKING:
    from level5_discovery.compounds import CompoundLibrary
    from level5_discovery.simulate import World

Kind = Literal["observe", "knockout", "knockdown", "overexpress", "compound"]
KINDS: tuple[str, ...] = get_args(Kind)
# The phenotype is a 0..1 score, expression is in log-ish units: its batch and measurement noise
# are this share of the expression ones.
_PHENOTYPE_NOISE_SCALE = 0.2


class BudgetExceededError(UserError):
    """The experiment would spend more than the remaining budget."""


class UnknownTargetError(UserError):
    """An intervention names a gene or compound the world does not have, or is malformed."""


class CostConfig(BaseModel):
    """Cost of one experiment of each kind at the API's default number of replicates."""

    model_config = ConfigDict(extra="forbid")

    observe: float = Field(0.5, ge=0.0)
    knockout: float = Field(1.0, ge=0.0)
    knockdown: float = Field(1.0, ge=0.0)
    overexpress: float = Field(1.0, ge=0.0)
    compound: float = Field(1.5, ge=0.0)


@dataclass(frozen=True)
class Intervention:
    """One experiment to run.

    Attributes:
        kind: ``observe``, ``knockout``, ``knockdown``, ``overexpress`` or ``compound``.
        target: Gene name; compound id for ``compound``; ``None`` for ``observe``.
        dose: Compound concentration (micromolar); ignored for the other kinds.
    """

    kind: Kind
    target: str | None = None
    dose: float = 1.0


@dataclass
class ExperimentResult:
    """Measurements of one experiment.

    ``data`` has one row per well: the gene columns, ``phenotype``, ``arm`` (``control`` or
    ``treated``), ``batch``, ``experiment``, ``intervention`` (the kind) and ``target`` ("" for none).
    """

    intervention: Intervention
    data: pd.DataFrame
    cost: float
    experiment_id: int

    @property
    def treated(self) -> pd.DataFrame:
        """The treated wells."""
        return self.data[self.data["arm"] == "treated"]

    @property
    def control(self) -> pd.DataFrame:
        """The control wells."""
        return self.data[self.data["arm"] == "control"]


class ExperimentAPI:
    """Budgeted, noisy access to a hidden world (see the module docstring).

    Args:
        world: The hidden world (kept private; never exposed).
        budget: Total budget in cost units.
        seed: Seed of all measurement randomness.
        costs: Price list; default :class:`CostConfig`.
        n_replicates: Treated (and control) wells per experiment by default.
        batch_sd: Sd of the per-experiment, per-gene batch offset.
        measurement_sd: Sd of the per-well measurement noise.
        compounds: Compound library for ``compound`` experiments (hidden activities stay private).
    """

    def __init__(
        self,
        world: World,
        *,
        budget: float,
        seed: int,
        costs: CostConfig | None = None,
        n_replicates: int = 4,
        batch_sd: float = 0.1,
        measurement_sd: float = 0.1,
        compounds: CompoundLibrary | None = None,
    ) -> None:
        if budget < 0 or n_replicates < 1 or batch_sd < 0 or measurement_sd < 0:
            raise UserError("budget, batch_sd and measurement_sd must be >= 0 and n_replicates >= 1")
        self._world = world
        self._compounds = compounds
        self._seed = int(seed)
        self.costs = costs or CostConfig()
        self.n_replicates = int(n_replicates)
        self.batch_sd = float(batch_sd)
        self.measurement_sd = float(measurement_sd)
        self.genes: tuple[str, ...] = tuple(world.genes)
        self.budget = float(budget)
        self.spent = 0.0
        self.history: list[ExperimentResult] = []
        self._designed: dict[str, str] = {}

    @property
    def remaining(self) -> float:
        """Budget not yet spent."""
        return self.budget - self.spent

    @property
    def compound_ids(self) -> tuple[str, ...]:
        """Ids of testable compounds: the library's, then those added (empty without a library)."""
        return (*self._compounds.ids, *self._designed) if self._compounds is not None else ()

    def compound_smiles(self, compound_id: str) -> str:
        """The (public) structure of a compound in the library or added with :meth:`add_compound`."""
        self._check_compound(compound_id)
        assert self._compounds is not None
        if compound_id in self._designed:
            return self._designed[compound_id]
        return str(self._compounds.smiles_of(compound_id))

    def add_compound(self, smiles: str) -> str:
        """Make a new molecule testable (a designed compound sent to the wet lab); returns its id.

        Its effect on the cells follows the same hidden structure-activity function as the
        library's; the same SMILES added twice gets the same id.

        Raises:
            UnknownTargetError: No compound library, or a SMILES that does not parse.
        """
        if self._compounds is None:
            raise UnknownTargetError("compound experiments need an ExperimentAPI with a compound library")
        for cid, known in self._designed.items():
            if known == smiles:
                return cid
        try:
            self._compounds.occupancy_of_smiles(smiles, 1.0)
        except UserError as exc:
            raise UnknownTargetError(str(exc)) from None
        cid = f"D{len(self._designed) + 1:04d}"
        self._designed[cid] = smiles
        return cid

    def cost_of(self, intervention: Intervention, n_replicates: int | None = None) -> float:
        """Price of an experiment: the kind's cost scaled by replicates / the default replicates."""
        n = self.n_replicates if n_replicates is None else int(n_replicates)
        return float(getattr(self.costs, intervention.kind)) * n / self.n_replicates

    def run(self, intervention: Intervention, n_replicates: int | None = None) -> ExperimentResult:
        """Run one experiment (n treated + n paired controls in one batch).

        Args:
            intervention: What to do.
            n_replicates: Wells per arm (default: the API's ``n_replicates``); cost scales with it.

        Returns:
            The measurements, also appended to :attr:`history`.

        Raises:
            UnknownTargetError: Unknown kind, gene or compound, or a bad dose.
            BudgetExceededError: The experiment costs more than what remains.
        """
        n = self.n_replicates if n_replicates is None else int(n_replicates)
        if n < 1:
            raise UnknownTargetError(f"n_replicates must be >= 1, got {n}")
        do, scale = self._resolve(intervention)
        cost = self.cost_of(intervention, n)
        self._charge(cost)
        exp_id = len(self.history)
        rng = np.random.default_rng([self._seed, exp_id])
        world = self._world
        if intervention.kind == "observe":
            values = world.sample(2 * n, rng)
            arms = ["control"] * (2 * n)
        else:
            values = np.vstack([world.sample(n, rng), world.sample(n, rng, do=do, scale=scale)])
            arms = ["control"] * n + ["treated"] * n
        result = ExperimentResult(
            intervention, self._measure(values, arms, exp_id, intervention, rng), cost, exp_id
        )
        self.history.append(result)
        return result

    def observational(self, n_samples: int) -> pd.DataFrame:
        """One batch of ``n_samples`` untreated wells (cost: observe cost * n / (2 * n_replicates)).

        The wells are recorded in :attr:`history` as an ``observe`` experiment.
        """
        if n_samples < 1:
            raise UnknownTargetError(f"n_samples must be >= 1, got {n_samples}")
        intervention = Intervention("observe")
        cost = self.costs.observe * n_samples / (2 * self.n_replicates)
        self._charge(cost)
        exp_id = len(self.history)
        rng = np.random.default_rng([self._seed, exp_id])
        values = self._world.sample(n_samples, rng)
        data = self._measure(values, ["control"] * n_samples, exp_id, intervention, rng)
        self.history.append(ExperimentResult(intervention, data, cost, exp_id))
        return data

    def _charge(self, cost: float) -> None:
        if self.spent + cost > self.budget + 1e-9:
            raise BudgetExceededError(
                f"experiment costs {cost:g} but only {self.remaining:g} of budget {self.budget:g} remains"
            )
        self.spent += cost

    def _check_gene(self, gene: str | None) -> int:
        if gene is None or gene not in self.genes:
            raise UnknownTargetError(
                f"unknown gene {gene!r}: the world's genes are {self.genes[0]}..{self.genes[-1]}"
            )
        return self.genes.index(gene)

    def _check_compound(self, compound_id: str | None) -> None:
        if self._compounds is None:
            raise UnknownTargetError(
                "compound experiments need an ExperimentAPI built with a compound library"
            )
        known = compound_id in self._compounds.ids or compound_id in self._designed
        if compound_id is None or not known:
            raise UnknownTargetError(f"unknown compound {compound_id!r}: not in the library")

    def _resolve(self, iv: Intervention) -> tuple[dict[int, float], dict[int, float]]:
        """The world's ``do`` and ``scale`` maps for an intervention (validating it)."""
        if iv.kind not in KINDS:
            raise UnknownTargetError(f"unknown intervention kind {iv.kind!r}; use one of {', '.join(KINDS)}")
        cfg = self._world.config
        if iv.kind == "observe":
            if iv.target:
                raise UnknownTargetError(f"observe takes no target, got {iv.target!r}")
            return {}, {}
        if iv.kind == "compound":
            self._check_compound(iv.target)
            if not np.isfinite(iv.dose) or iv.dose < 0:
                raise UnknownTargetError(f"compound dose must be a finite number >= 0, got {iv.dose}")
            assert self._compounds is not None and iv.target is not None
            occupancy = (
                self._compounds.occupancy_of_smiles(self._designed[iv.target], iv.dose)
                if iv.target in self._designed
                else self._compounds.occupancy(iv.target, iv.dose)
            )
            return {}, {self._check_gene(g): 1.0 - occ for g, occ in occupancy.items() if occ > 0}
        i = self._check_gene(iv.target)
        if iv.kind == "knockout":
            return {i: 0.0}, {}
        if iv.kind == "knockdown":
            return {}, {i: cfg.knockdown_scale}
        return {i: float(self._world.reference[i]) + cfg.overexpress_delta}, {}

    def _measure(
        self, values: np.ndarray, arms: list[str], exp_id: int, iv: Intervention, rng: np.random.Generator
    ) -> pd.DataFrame:
        """Add the experiment's batch offset and per-well measurement noise; label the wells."""
        g = len(self.genes)
        noise_scale = np.ones(g + 1)
        noise_scale[g] = _PHENOTYPE_NOISE_SCALE
        batch = rng.normal(0.0, self.batch_sd, size=g + 1) * noise_scale
        measured = values + batch + rng.normal(0.0, self.measurement_sd, size=values.shape) * noise_scale
        data = pd.DataFrame(measured, columns=[*self.genes, "phenotype"])
        data["arm"] = arms
        data["batch"] = exp_id
        data["experiment"] = exp_id
        data["intervention"] = iv.kind
        data["target"] = iv.target or ""
        return data
