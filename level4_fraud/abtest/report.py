"""The A/B test's outputs: the confidence-sequence figure, an HTML report section, a JSON summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from level4_fraud.abtest.calibration import AACalibration, as_dict
from level4_fraud.abtest.experiment import ExperimentResult
from shared.atomic import atomic_path, atomic_write_json, json_safe
from shared.plotting import png_bytes, save_png, set_theme
from shared.report import Report, Section

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SUMMARY_FILE = "abtest.json"
REPORT_FILE = "abtest.html"
FIGURE_FILE = "figures/abtest_sequential.png"
LOOKS_FILE = "abtest_looks.csv"
ARMS_FILE = "abtest_arms.csv"

_LABELS = {
    "savings": "savings per transaction",
    "fraud_caught": "share of frauds caught",
    "false_positive_rate": "false-positive rate",
    "review_load": "alerts per transaction",
}


def sequential_figure(result: ExperimentResult) -> Figure:
    """Three panels over the looks of the primary metric: the difference with its always-valid and
    naive intervals, the two p-values, and |z| against the O'Brien-Fleming and naive boundaries."""
    set_theme()
    import matplotlib.pyplot as plt

    s = result.summary
    looks = result.looks[result.looks["metric"] == s["metric"]]
    looks = looks[looks["ready"]]
    x = looks["time"] if "time" in looks else looks["look"]
    fig, axes = plt.subplots(
        3, 1, figsize=(9, 9.5), sharex=True, gridspec_kw={"height_ratios": [2.2, 1.2, 1.2]}
    )
    ax = axes[0]
    ax.fill_between(x, looks["ci_low"], looks["ci_high"], alpha=0.3, label="always-valid CI (mSPRT)")
    ax.plot(x, looks["naive_low"], "--", color="C1", lw=1, label="naive fixed-horizon CI")
    ax.plot(x, looks["naive_high"], "--", color="C1", lw=1)
    ax.plot(x, looks["delta"], color="C0", lw=1.5, label="difference (challenger - champion)")
    ax.axhline(0, color="black", lw=0.8)
    # The first looks' intervals are very wide: scale the axis to the rest.
    later = looks.iloc[len(looks) // 8 :]
    span = np.concatenate([later[["ci_low", "ci_high", "naive_low", "naive_high"]].to_numpy().ravel(), [0.0]])
    span = span[np.isfinite(span)]
    pad = 0.1 * (span.max() - span.min() or 1.0)
    ax.set_ylim(span.min() - pad, span.max() + pad)
    ax.set_ylabel(f"difference in {_LABELS[s['metric']]}")
    ax.set_title(f"{s['challenger']} (challenger) vs {s['champion']} (champion): {s['verdict']}")
    axes[1].semilogy(x, looks["p_always"], color="C0", label="always-valid p")
    axes[1].semilogy(x, looks["p_naive"], color="C1", ls="--", label="naive p (z-test at each look)")
    axes[1].axhline(s["alpha"], color="C3", lw=0.8, label=f"alpha = {s['alpha']}")
    axes[1].set_ylabel("p-value")
    axes[1].set_ylim(max(1e-6, float(np.nanmin(looks[["p_always", "p_naive"]].to_numpy())) / 2), 1.5)
    axes[2].plot(x, looks["z"].abs(), color="C0", label="|z|")
    axes[2].plot(x, looks["obf_bound"], color="C2", ls="-.", label="O'Brien-Fleming boundary")
    naive_bound = float(stats.norm.isf(s["alpha"] / 2))
    axes[2].axhline(naive_bound, color="C1", ls="--", lw=0.8, label=f"naive {naive_bound:.2f}")
    axes[2].set_ylim(0, max(6.0, float(looks["z"].abs().max()) * 1.1))
    axes[2].set_ylabel("|z|")
    axes[2].set_xlabel("look (end of window)")
    if s["stopped"]:
        stop = result.looks[
            (result.looks["metric"] == s["metric"]) & (result.looks["look"] == s["stop_look"])
        ]
        at = stop["time"].iloc[0] if "time" in stop else s["stop_look"]
        for a in axes:
            a.axvline(at, color="C3", ls=":", lw=1.2, label="mSPRT stops" if a is axes[0] else None)
    for a in axes:
        a.legend(loc="best", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def metrics_table(result: ExperimentResult) -> pd.DataFrame:
    """Every metric at the decision look: both arms, the difference, its intervals and p-values."""
    rows = []
    for name, m in result.summary["metrics_at_decision"].items():
        rows.append(
            {
                "metric": _LABELS.get(name, name),
                "champion": m["mean_champion"],
                "challenger": m["mean_challenger"],
                "difference": m["delta"],
                "always-valid CI": f"[{m['ci'][0]:.4g}, {m['ci'][1]:.4g}]",
                "always-valid p": m["p_always_valid"],
                "naive CI": f"[{m['naive_ci'][0]:.4g}, {m['naive_ci'][1]:.4g}]",
                "naive p": m["p_naive"],
                "verdict": m["verdict"],
            }
        )
    return pd.DataFrame(rows)


def add_section(
    report: Report,
    result: ExperimentResult,
    figure_png: bytes | None = None,
    calibration: AACalibration | None = None,
) -> Section:
    """Append the A/B test's section to a report (another report can embed it too)."""
    s = result.summary
    when = (
        f"at look {s['stop_look']} ({s['decision']['time']})" if s["stopped"] else "by the end of the traffic"
    )
    sec = report.section(
        "Sequential A/B test: champion vs challenger",
        f"Cards are split by a keyed hash of the card id ({s['split']:.0%} to the challenger, "
        f"experiment '{s['experiment']}'); each arm alerts at its model's cost-optimal validation "
        f"threshold. The mSPRT (Johari et al. 2017) tests the {_LABELS[s['metric']]} at every "
        f"{s['look_every']} look with a type-I error of {s['alpha']} over all looks together; the "
        "verdict is on that metric alone, the others are shown with their always-valid intervals "
        "(each valid on its own, not corrected for looking at several).",
    )
    d = s["decision"]
    sec.metrics(
        {
            "verdict": s["verdict"],
            "decided": when,
            "difference": d["delta"],
            "always-valid CI": f"[{d['ci'][0]:.4g}, {d['ci'][1]:.4g}]",
            "looks": s["n_looks"],
            "sample-ratio p": s["sample_ratio_p"],
        }
    )
    sec.table(
        metrics_table(result), "Every metric at the decision look (intervals valid at any look)", index=False
    )
    arms = result.arms.set_index(["at", "arm"])
    sec.table(
        arms, "Per-arm totals at the mSPRT's stop and at the end of the traffic", float_format="{:,.6g}"
    )
    if figure_png is not None:
        sec.image(
            figure_png, "The difference and its intervals over looks; p-values; |z| against the boundaries"
        )
    naive = s["naive_significant_looks"]
    sec.text(
        f"A naive z-test repeated at every look was 'significant' at {naive} of {s['n_looks']} looks"
        + (f", first at look {s['naive_first_significant_look']}" if naive else "")
        + "; each such look is a chance to stop on noise, which is why peeking inflates its error rate. "
        + "The O'Brien-Fleming group-sequential design over the same traffic "
        + (f"stops at look {s['obf_stop_look']}." if s["obf_stop_look"] is not None else "does not stop.")
    )
    if calibration is not None:
        sec.text(
            f"A/A calibration on this traffic ({calibration.runs} re-splits of the cards with the "
            f"champion in both arms): the mSPRT stopped on noise in {calibration.msprt_rate:.1%} "
            f"of them (nominal {s['alpha']:.0%}), the naive z-test peeking at every look in "
            f"{calibration.naive_rate:.1%}."
        )
    return sec


def write_outputs(
    result: ExperimentResult, out_dir: str | Path, calibration: AACalibration | None = None
) -> dict[str, Path]:
    """Write the JSON summary, the looks and arms tables, the figure and the HTML report."""
    out = Path(out_dir)
    (out / FIGURE_FILE).parent.mkdir(parents=True, exist_ok=True)
    fig = sequential_figure(result)
    png = png_bytes(fig, close=False)
    figure = save_png(fig, out / FIGURE_FILE)
    report = Report(
        "Level 4 — sequential A/B test", f"{result.summary['challenger']} vs {result.summary['champion']}"
    )
    add_section(report, result, png, calibration)
    summary = result.summary | ({"aa_calibration": as_dict(calibration)} if calibration is not None else {})
    paths = {
        "summary": atomic_write_json(out / SUMMARY_FILE, json_safe(summary)),
        "report": report.write(out / REPORT_FILE),
        "figure": figure,
    }
    for key, name, frame in (("looks", LOOKS_FILE, result.looks), ("arms", ARMS_FILE, result.arms)):
        with atomic_path(out / name) as tmp:
            frame.to_csv(tmp, index=False)
        paths[key] = out / name
    return paths
