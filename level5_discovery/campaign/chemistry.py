"""The compound phase: screen the library on the target, then design better molecules round by round.

Screening assays a seeded sample of library compounds on the chosen target. Each design round
fits a Tanimoto-kernel Gaussian process (`chem.activity.ActivityModel`; with
``campaign.activity_features: morgan+encoder``, Tanimoto on the bits plus an RBF on a SMILES
encoder's embeddings) on every reading so far,
breeds children from the most potent molecules with the graph GA's mutations and crossovers
(`chem.ga.propose`), keeps only children that pass every medicinal-chemistry filter (validity,
Lipinski, Veber, QED, synthetic accessibility, PAINS, Brenk, novelty against the library), and
assays the ``design_batch`` with the highest upper confidence bound (mean + beta * sd). Each round
uses its own seeded random stream, so a resumed campaign repeats exactly the rounds it lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from rdkit import Chem

from level5_discovery.chem.activity import ActivityConfig, ActivityModel, Featurizer, morgan_features
from level5_discovery.chem.filters import FilterConfig, apply_filters
from level5_discovery.chem.ga import GAConfig, propose
from level5_discovery.experiments import ExperimentAPI, Intervention
from level5_discovery.stats import test_intervention

if TYPE_CHECKING:
    from level5_discovery.campaign.assay import Assay
    from level5_discovery.campaign.settings import CampaignConfig
    from level5_discovery.compounds import CompoundLibrary

ASSAY_COLUMNS = [
    "assay", "round", "target", "source", "compound_id", "smiles", "measured_pic50", "predicted_mean",
    "predicted_sd", "model",
]  # fmt: skip
VALIDATION_COLUMNS = [
    "compound_id", "source", "smiles", "measured_pic50", "dose_um", "phenotype_effect",
    "phenotype_ci_low", "phenotype_ci_high", "phenotype_q", "target_effect", "cost",
]  # fmt: skip


def screen(
    library: CompoundLibrary, assay: Assay, target: str, n: int, seed: int, remaining: float
) -> pd.DataFrame:
    """Assay a seeded sample of ``n`` library compounds on ``target`` (round 0)."""
    rng = np.random.default_rng([seed, 8, library.genes.index(target)])
    take = rng.choice(len(library.ids), size=min(n, len(library.ids)), replace=False)
    ids = [library.ids[int(i)] for i in sorted(take)]
    smiles = [library.smiles_of(c) for c in ids]
    first = assay.calls
    measured = assay.measure(smiles, target, remaining)
    return pd.DataFrame(
        {
            "assay": np.arange(first, first + len(ids)),
            "round": 0,
            "target": target,
            "source": "library",
            "compound_id": ids,
            "smiles": smiles,
            "measured_pic50": measured,
            "predicted_mean": np.nan,
            "predicted_sd": np.nan,
            "model": "",
        },
        columns=ASSAY_COLUMNS,
    )


def _children(parents: pd.DataFrame, n: int, floor: float, rng: np.random.Generator) -> list[str]:
    mols = [Chem.MolFromSmiles(s) for s in parents["smiles"]]
    # Mating weights must be positive: potency above the assay floor.
    weights = np.maximum(parents["measured_pic50"].to_numpy() - floor, 0.0) + 0.05
    ga = GAConfig(offspring_size=max(2, len(parents)))
    return [smi for smi, _ in propose(mols, list(weights), n, ga, rng)]


def design_round(
    readings: pd.DataFrame,
    round_no: int,
    camp: CampaignConfig,
    assay: Assay,
    library_fps: Sequence[Any],
    floor: float,
    seed: int,
    remaining: float,
    featurize: Featurizer = morgan_features,
    activity: ActivityConfig | None = None,
) -> pd.DataFrame:
    """One model-guided round on the target of ``readings``; returns the new readings.

    Args:
        readings: Every reading so far on the target (``ASSAY_COLUMNS``).
        round_no: 1, 2, ... (seeds the round's random stream).
        camp: Batch size, candidates per batch, exploration weight.
        assay: The budgeted assay.
        library_fps: Morgan fingerprints of the library (novelty filter).
        floor: The assay's lowest reading (no binding).
        seed: The campaign seed.
        remaining: Budget left for this round's assays.
        featurize: SMILES -> the activity model's features (default Morgan bits).
        activity: The activity model's settings (default a Tanimoto GP).
    """
    target = str(readings["target"].iloc[0])
    rng = np.random.default_rng([seed, 9, round_no])
    seen = set(readings["smiles"])
    parents = readings.sort_values("measured_pic50", ascending=False).head(20)
    children = [
        s for s in _children(parents, camp.design_batch * camp.candidate_factor, floor, rng) if s not in seen
    ]
    if not children:
        return pd.DataFrame(columns=ASSAY_COLUMNS)
    checks = apply_filters(children, FilterConfig(), list(library_fps))
    passing = checks.loc[checks["passes"], "smiles"].tolist()
    n = min(camp.design_batch, len(passing), int((remaining + 1e-9) // assay.cost))
    if n < 1:
        return pd.DataFrame(columns=ASSAY_COLUMNS)
    model = ActivityModel(activity).fit(
        featurize(readings["smiles"].tolist()), readings["measured_pic50"].to_numpy()
    )
    mean, sd = model.predict(featurize(passing))
    order = np.argsort(-(mean + camp.ucb_beta * sd), kind="stable")[:n]
    chosen = [passing[int(i)] for i in order]
    first = assay.calls
    measured = assay.measure(chosen, target, remaining)
    return pd.DataFrame(
        {
            "assay": np.arange(first, first + n),
            "round": round_no,
            "target": target,
            "source": "designed",
            "compound_id": "",
            "smiles": chosen,
            "measured_pic50": measured,
            "predicted_mean": mean[order],
            "predicted_sd": sd[order],
            "model": model.kernel_used,  # the round's GP kernel: did it keep the embeddings?
        },
        columns=ASSAY_COLUMNS,
    )


def best_by_round(readings: pd.DataFrame, rounds: int) -> list[float]:
    """The best measured pIC50 so far after each round 0 (the screen) .. ``rounds``."""
    per_round = readings.groupby("round")["measured_pic50"].max()
    best, out = -np.inf, []
    for k in range(rounds + 1):
        best = max(best, float(per_round.get(k, -np.inf)))
        out.append(best)
    return out


def stop_reason(
    best: Sequence[float], rounds_done: int, max_rounds: int, can_pay: bool, patience: int
) -> str | None:
    """Why the design ends after ``rounds_done`` rounds, or None to run another.

    Args:
        best: Best measured pIC50 after each round 0 .. ``rounds_done`` (`best_by_round`).
        rounds_done: Design rounds finished.
        max_rounds: The most rounds allowed.
        can_pay: Whether the budget left pays for another assay.
        patience: Rounds without a better compound before the design is called converged.
    """
    if rounds_done >= max_rounds:
        return f"reached the most rounds ({max_rounds})"
    if not can_pay:
        return "the budget is spent"
    if rounds_done >= patience and best[rounds_done] <= best[rounds_done - patience]:
        return f"no better compound in {patience} rounds"
    return None


def validation_picks(readings: pd.DataFrame, top: int) -> pd.DataFrame:
    """The best library hit and the ``top`` best designed compounds by measured potency."""
    best_library = readings[readings["source"] == "library"].nlargest(1, "measured_pic50")
    designed = readings[readings["source"] == "designed"].nlargest(top, "measured_pic50")
    return pd.concat([designed, best_library], ignore_index=True)


def cell_test(
    api: ExperimentAPI, picks: pd.DataFrame, target: str, dose: float, alpha: float = 0.05
) -> pd.DataFrame:
    """Treat cells with each pick at ``dose``: the phenotype's and the target's change vs controls."""
    rows = []
    variables = [*api.genes, "phenotype"]
    for pick in picks.itertuples():
        cid = pick.compound_id if pick.source == "library" else api.add_compound(str(pick.smiles))
        result = api.run(Intervention("compound", cid, dose))
        tests = test_intervention(result.data, alpha=alpha, variables=variables).set_index("variable")
        ph = tests.loc["phenotype"]
        rows.append(
            {"compound_id": cid, "source": pick.source, "smiles": pick.smiles,
             "measured_pic50": float(pick.measured_pic50), "dose_um": dose,
             "phenotype_effect": float(ph["effect"]), "phenotype_ci_low": float(ph["ci_low"]),
             "phenotype_ci_high": float(ph["ci_high"]), "phenotype_q": float(ph["q"]),
             "target_effect": float(tests.loc[target, "effect"]), "cost": result.cost}
        )  # fmt: skip
    return pd.DataFrame(rows, columns=VALIDATION_COLUMNS)


def compound_table(
    readings: pd.DataFrame, library: CompoundLibrary, library_fps: Sequence[Any], target: str
) -> pd.DataFrame:
    """Every compound assayed on the final target with its properties, filters and (for evaluation)
    the hidden true pIC50."""
    on_target = readings[readings["target"] == target].copy()
    checks = apply_filters(on_target["smiles"].tolist(), FilterConfig(), list(library_fps))
    keep = ["qed", "sa", "lipinski_violations", "tpsa", "library_similarity", "passes", "reasons"]
    for col in keep:
        on_target[col] = checks[col].to_numpy()
    on_target["true_pic50"] = [library.hidden_activity(s, target) for s in on_target["smiles"]]
    return on_target.sort_values("measured_pic50", ascending=False).reset_index(drop=True)
