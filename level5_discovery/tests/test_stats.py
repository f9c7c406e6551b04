"""Per-experiment tests: known q-values, detection of a large shift, CI coverage, bad input."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from level5_discovery import stats
from shared.errors import DataError, EmptyDataError, SchemaError

GENES = ["G00", "G01", "G02", "G03"]


def experiment_frame(
    rng: np.random.Generator, shifts: dict[str, float], *, n: int = 4, sd: float = 0.2, exp_id: int = 1
) -> pd.DataFrame:
    """A knockout-like experiment: n controls and n treated in one batch, with given mean shifts."""
    batch_offset = rng.normal(0, 0.1, size=len(GENES))  # shared by both arms of the batch
    rows = []
    for arm in ("control", "treated"):
        for _ in range(n):
            x = 2.0 + batch_offset + rng.normal(0, sd, size=len(GENES))
            if arm == "treated":
                x = x + np.array([shifts.get(g, 0.0) for g in GENES])
            rows.append([*x, float(x[:2].sum()), arm, 0, exp_id, "knockout", "G00"])
    return pd.DataFrame(
        rows, columns=[*GENES, "phenotype", "arm", "batch", "experiment", "intervention", "target"]
    )


def test_bh_qvalues_match_hand_computed_values() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.2])
    # sorted: 0.005*5/1=.025, 0.01*5/2=.025, 0.03*5/3=.05, 0.04*5/4=.05, 0.2*5/5=.2 (already monotone)
    expected = np.array([0.025, 0.05, 0.05, 0.025, 0.2])
    np.testing.assert_allclose(stats.bh_qvalues(p), expected)
    np.testing.assert_allclose(stats.bh_qvalues(p), sps.false_discovery_control(p))
    # The running minimum: 0.04*3/2 = 0.06 > 0.045*3/3, so the second q drops to 0.045.
    np.testing.assert_allclose(stats.bh_qvalues(np.array([0.001, 0.04, 0.045])), [0.003, 0.045, 0.045])
    np.testing.assert_allclose(stats.adjust(np.array([0.01, 0.5]), "bonferroni"), [0.02, 1.0])


def test_welch_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 5), rng.normal(1, 2, 7)
    res = stats.welch(a, b)
    ref = sps.ttest_ind(b, a, equal_var=False)
    assert res["p"] == pytest.approx(ref.pvalue) and res["t"] == pytest.approx(ref.statistic)
    ci = ref.confidence_interval(0.95)
    assert (res["ci_low"], res["ci_high"]) == (pytest.approx(ci.low), pytest.approx(ci.high))


def test_flags_a_five_sd_shift_and_not_a_zero_shift() -> None:
    frame = experiment_frame(np.random.default_rng(3), {"G02": 5 * 0.2})
    out = stats.test_intervention(frame).set_index("variable")
    assert list(out.index) == [*GENES, "phenotype"]
    assert out.loc["G02", "significant"] and out.loc["G02", "q"] < 0.05
    assert out.loc["G02", "effect"] == pytest.approx(1.0, abs=0.3)
    assert out.loc["G02", "std_effect"] > 2.0
    assert not out.loc[["G00", "G01", "G03", "phenotype"], "significant"].any()
    assert bool(out.loc["G00", "is_target"]) and out["n_treated"].eq(4).all()


def test_ci_covers_the_true_difference_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(11)
    covered = 0
    for _ in range(200):
        control, treated = rng.normal(0.0, 0.3, 4), rng.normal(0.7, 0.6, 5)  # unequal variances
        res = stats.welch(control, treated)
        covered += res["ci_low"] <= 0.7 <= res["ci_high"]
    assert 0.91 <= covered / 200 <= 0.99


def test_power_ok_marks_only_precise_nulls() -> None:
    precise = stats.test_intervention(
        experiment_frame(np.random.default_rng(4), {}, n=30, sd=0.1), min_effect=0.3
    )
    assert precise["power_ok"].all() and not precise["significant"].any()
    vague = stats.test_intervention(
        experiment_frame(np.random.default_rng(4), {}, n=3, sd=1.0), min_effect=0.3
    )
    assert not vague["power_ok"].any()


def test_experiments_are_corrected_separately_and_results_accepted() -> None:
    rng = np.random.default_rng(5)
    both = pd.concat([experiment_frame(rng, {"G01": 2.0}, exp_id=1), experiment_frame(rng, {}, exp_id=2)])
    out = stats.test_intervention(SimpleNamespace(data=both))
    assert out["experiment"].tolist() == [1] * 5 + [2] * 5
    for _, group in out.groupby("experiment"):
        np.testing.assert_allclose(group["q"], stats.bh_qvalues(group["p"].to_numpy()))
    assert out.query("experiment == 1 and variable == 'G01'")["significant"].item()


def test_bad_frames_raise_clear_errors() -> None:
    frame = experiment_frame(np.random.default_rng(6), {})
    with pytest.raises(EmptyDataError):
        stats.test_intervention(frame.iloc[:0])
    with pytest.raises(DataError, match="experiment 1: a test needs >= 2 control and >= 2 treated"):
        stats.test_intervention(frame[frame["arm"] == "control"])
    with pytest.raises(SchemaError, match="'arm'"):
        stats.test_intervention(frame.drop(columns="arm"))
    with pytest.raises(SchemaError, match="not in the experiment frame"):
        stats.test_intervention(frame, variables=["G99"])


def test_knockout_in_the_simulated_world_flags_children_not_ancestors() -> None:
    from level5_discovery.experiments import ExperimentAPI, Intervention
    from level5_discovery.simulate import WorldConfig, generate_world
    from level5_discovery.truth import Evaluator

    world = generate_world(WorldConfig(n_genes=12), seed=2)
    truth = Evaluator(world)
    adj = truth.true_adjacency()
    source = int(np.argmax(adj.sum(axis=1)))  # the gene with most children
    gene = world.genes[source]
    api = ExperimentAPI(world, budget=10, seed=0)
    out = stats.test_intervention(api.run(Intervention("knockout", gene))).set_index("variable")
    children = [world.genes[j] for j in np.flatnonzero(adj[source])]
    unaffected = [g for g in world.genes if g != gene and g not in truth.descendants(gene)]
    assert out.loc[children, "significant"].mean() >= 0.5
    assert out.loc[unaffected, "significant"].mean() <= 0.2
    with pytest.raises(DataError, match="control"):
        stats.test_intervention(api.run(Intervention("observe")))
