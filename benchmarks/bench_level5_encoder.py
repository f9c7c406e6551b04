"""Level 5 benchmark: the self-supervised SMILES encoder — pretraining, inference speed, learning curves.

Workload (quick profile; ``--profile full`` scales it up):

* pretraining: `chem.encoder.pretrain_encoder` on 20,000 unlabelled SMILES in quick (14,000 MOSES
  training molecules and 6,000 from RDKit's NCI and WEHI sets, whose longer SMILES cover the
  lengths of ChEMBL molecules) with the profile's `EncoderConfig`; wall time, and the held-out
  masked-token loss against the unigram (token-frequency) baseline at the same masked positions;
* inference: embeddings of held-out MOSES molecules, eager PyTorch vs ``torch.compile`` vs the
  ONNX graph in onnxruntime (molecules per second, median of repeats; compile/export time
  apart), and the achieved GFLOP/s against the machine's measured ``torch.mm`` peak;
* learning curves: the activity GP on encoder embeddings vs Morgan fingerprints (radius 2,
  2,048 bits, Tanimoto kernel) vs both (a summed Tanimoto + RBF kernel) at the same labelled
  budgets, on ChEMBL assay CHEMBL2321810 (from
  RDKit's wheel) and on a hidden synthetic activity (RDKit QED of MOSES molecules unseen in
  pretraining); R^2 and Spearman on a held-out 20 %, mean over seeds.

``run(profile) -> dict`` measures; ``main`` writes ``benchmarks/work/level5/encoder.json`` and
the section ``benchmarks/sections/level5_encoder.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from shared.atomic import atomic_write_json, atomic_write_text, json_safe  # noqa: E402
from shared.runtime import configure_environment  # noqa: E402

WORK = HERE / "work" / "level5"
SECTION = HERE / "sections" / "level5_encoder.md"
PROFILES: dict[str, dict[str, Any]] = {
    "quick": {
        "n_pretrain": 14_000,
        "n_extra": 6_000,
        "n_infer": 5_000,
        "sizes": [50, 200, 800],
        "seeds": [0, 1, 2],
        "n_synthetic": 1_500,
        "repeats": 3,
        "encoder": {},
    },
    "full": {
        "n_pretrain": 200_000,
        "n_extra": 14_000,
        "n_infer": 20_000,
        "sizes": [50, 100, 200, 400, 800],
        "seeds": [0, 1, 2, 3, 4],
        "n_synthetic": 3_000,
        "repeats": 5,
        "encoder": "full",
    },
}


def _throughput(runner: Any, vocab: Any, smiles: list[str], repeats: int) -> float:
    from level5_discovery.chem.encoder import embed

    embed(runner, vocab, smiles[:512], batch_size=256)  # warm-up: allocations, compiled shapes
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        embed(runner, vocab, smiles, batch_size=256)
        times.append(time.perf_counter() - t)
    return len(smiles) / statistics.median(times)


def _inference(model: Any, vocab: Any, smiles: list[str], repeats: int) -> dict[str, Any]:
    from level5_discovery.chem.encoder import embed, encoder_flops, make_runner, matmul_peak_gflops
    from level5_discovery.chem.smiles_tokens import tokenize

    peak = matmul_peak_gflops()
    mean_tokens = float(np.mean([len(tokenize(s)) + 1 for s in smiles]))
    flops = encoder_flops(model.cfg, mean_tokens)
    eager_emb = embed(model, vocab, smiles[:256])
    out: dict[str, Any] = {
        "matmul_peak_gflops": peak,
        "mean_tokens": mean_tokens,
        "flops_per_molecule": flops,
        "device": str(next(model.parameters()).device),
    }
    for backend in ("eager", "onnx", "compile"):
        try:
            t = time.perf_counter()
            runner = make_runner(model, backend, WORK / "encoder.onnx" if backend == "onnx" else None)
            max_diff = float(np.abs(embed(runner, vocab, smiles[:256]) - eager_emb).max())
            setup_s = time.perf_counter() - t
            rate = _throughput(runner, vocab, smiles, repeats)
            out[backend] = {
                "molecules_per_s": rate,
                "setup_s": setup_s,
                "max_abs_diff_vs_eager": max_diff,
                "gflops": rate * flops / 1e9,
                "fraction_of_peak": rate * flops / 1e9 / peak,
            }
        except Exception as exc:  # a backend unavailable here (no C++ compiler for inductor) is reported
            out[backend] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    return out


def _curves(
    model: Any, vocab: Any, synthetic_smiles: list[str], sizes: list[int], seeds: list[int]
) -> dict[str, Any]:
    from rdkit import Chem
    from rdkit.Chem import QED

    from level5_discovery.chem.activity import ActivityConfig, learning_curve, morgan_features
    from level5_discovery.chem.datasets import chembl_activity_set
    from level5_discovery.chem.encoder import bits_and_embeddings, embed

    def encoder_features(batch: Any) -> np.ndarray:
        return embed(model, vocab, list(batch))

    def hidden_qed(s: str) -> float:
        return float(QED.qed(Chem.MolFromSmiles(s)))  # type: ignore[no-untyped-call]

    featurizers: dict[str, Callable[[Any], np.ndarray]] = {
        "morgan": morgan_features,
        "encoder": encoder_features,
        "both": bits_and_embeddings(model, vocab),
    }
    # Fingerprint bits then embeddings: the summed Tanimoto + RBF kernel (chem.activity).
    models = {"both": ActivityConfig(kernel="tanimoto+rbf")}
    out: dict[str, Any] = {}
    smiles, y = chembl_activity_set()
    sets: dict[str, tuple[list[str], Any]] = {
        "chembl": (smiles, y),
        "synthetic_qed": (synthetic_smiles, hidden_qed),
    }
    for name, (mols, target) in sets.items():
        t = time.perf_counter()
        df = learning_curve(mols, target, featurizers, sizes=sizes, seeds=seeds, models=models)
        agg = df.groupby(["featurizer", "n_labelled"])[["r2", "spearman"]].agg(["mean", "std"]).reset_index()
        agg.columns = ["_".join(c).strip("_") for c in agg.columns]
        out[name] = {
            "n_molecules": len(mols),
            "seconds": time.perf_counter() - t,
            "rows": agg.to_dict("records"),
        }
    return out


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def run(profile: str = "quick") -> dict[str, Any]:
    """Measure pretraining, inference speed and learning curves for one profile; a JSON-ready dict."""
    configure_environment()
    from level5_discovery.chem.datasets import moses_train_smiles, nci_wehi_sample
    from level5_discovery.chem.encoder import (
        EncoderConfig,
        describe,
        masked_token_loss,
        pretrain_encoder,
        unigram_masked_loss,
    )

    p = PROFILES[profile]
    cfg = EncoderConfig.full() if p["encoder"] == "full" else EncoderConfig(**p["encoder"])
    n_pre, n_inf, n_syn = p["n_pretrain"], p["n_infer"], p["n_synthetic"]  # MOSES counts
    smiles = moses_train_smiles(n_pre + n_inf + n_syn, seed=0)
    pre, infer, synthetic = smiles[:n_pre], smiles[n_pre : n_pre + n_inf], smiles[n_pre + n_inf :]
    pre = pre + nci_wehi_sample(p["n_extra"])
    t = time.perf_counter()
    model, vocab, history = pretrain_encoder(pre, cfg, seed=0)
    pretrain_s = time.perf_counter() - t
    held = infer[:2000]
    result: dict[str, Any] = {
        "profile": profile,
        "config": cfg.model_dump(),
        "model": describe(model),
        "load_avg_before": os.getloadavg(),
        "torch_threads": _torch_threads(),
        "pretrain": {
            "n_molecules": len(pre),
            "n_moses": n_pre,
            "seconds": pretrain_s,
            "steps": history[-1]["step"],
            "initial_loss": history[0]["mlm_loss"],
            "final_train_loss": history[-1]["mlm_loss"],
            "heldout_masked_loss": masked_token_loss(model, vocab, held, seed=1),
            "heldout_unigram_loss": unigram_masked_loss(vocab, pre, held, seed=1),
        },
    }
    result["inference"] = _inference(model, vocab, infer, p["repeats"])
    result["curves"] = _curves(model, vocab, synthetic, p["sizes"], p["seeds"])
    result["load_avg_after"] = os.getloadavg()
    return result


def section(r: dict[str, Any]) -> str:
    """The Markdown section for results.md from a `run` result."""
    pre, inf, m = r["pretrain"], r["inference"], r["model"]
    lines = [
        "## Level 5 — self-supervised SMILES encoder",
        "",
        f"**Pretraining** ({r['profile']} profile): a {m['n_layers']}-layer, {m['d_model']}-wide transformer "
        f"({m['parameters']:,} parameters) trained by masked-token prediction on "
        f"{pre['n_molecules']:,} SMILES ({pre.get('n_moses', pre['n_molecules']):,} MOSES, the rest "
        "NCI + WEHI; "
        f"{pre['steps']:.0f} steps): **{pre['seconds']:.0f} s** on {inf['device']}, "
        f"{r.get('torch_threads')} torch thread(s). Masked-token loss "
        f"{pre['initial_loss']:.2f} → {pre['final_train_loss']:.2f} nats (train); held out "
        f"{pre['heldout_masked_loss']:.2f} vs {pre['heldout_unigram_loss']:.2f} for the token-frequency "
        "baseline.",
        "",
        f"**Inference** (embeddings of {r['profile']} held-out MOSES molecules, batch 256, "
        f"{inf['mean_tokens']:.1f} tokens per molecule, {inf['flops_per_molecule'] / 1e6:.1f} MFLOP each); "
        f"measured `torch.mm` peak **{inf['matmul_peak_gflops']:.0f} GFLOP/s**:",
        "",
        "| path | molecules/s | vs eager | GFLOP/s | share of matmul peak | set-up s | max diff vs eager |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    eager = inf.get("eager", {}).get("molecules_per_s")
    for name, label in (
        ("eager", "PyTorch eager"),
        ("compile", "`torch.compile`"),
        ("onnx", "ONNX + onnxruntime"),
    ):
        b = inf.get(name, {})
        if "error" in b or not b:
            lines.append(f"| {label} | — | — | — | — | — | {b.get('error', 'not run')} |")
            continue
        ratio = b["molecules_per_s"] / eager if eager else float("nan")
        lines.append(
            f"| {label} | {b['molecules_per_s']:,.0f} | {ratio:.2f}× | {b['gflops']:.1f} | "
            f"{100 * b['fraction_of_peak']:.0f} % | {b['setup_s']:.1f} | {b['max_abs_diff_vs_eager']:.1e} |"
        )
    lines += [
        "",
        "**Learning curves** (activity GP; R² / Spearman on a held-out 20 %, mean ± sd over seeds). "
        "*Both*: Morgan bits and the embeddings under a summed Tanimoto + RBF kernel, kept only "
        "where its leave-one-out error beats the Tanimoto kernel alone (`chem.activity.TanimotoRbfGP`):",
        "",
        "| set | labelled | Morgan R² | encoder R² | both R² | Morgan Spearman | encoder Spearman "
        "| both Spearman |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, c in r["curves"].items():
        rows = {(row["featurizer"], row["n_labelled"]): row for row in c["rows"]}
        for n in sorted({k[1] for k in rows}):
            mo, en = rows[("morgan", n)], rows[("encoder", n)]
            bo = rows.get(("both", n))  # absent from JSON written before the summed kernel
            both_r2 = f"{bo['r2_mean']:.3f} ± {bo['r2_std']:.3f}" if bo else "—"
            both_rho = f"{bo['spearman_mean']:.3f}" if bo else "—"
            lines.append(
                f"| {name} ({c['n_molecules']}) | {n} | {mo['r2_mean']:.3f} ± {mo['r2_std']:.3f} | "
                f"{en['r2_mean']:.3f} ± {en['r2_std']:.3f} | {both_r2} | "
                f"{mo['spearman_mean']:.3f} | {en['spearman_mean']:.3f} | {both_rho} |"
            )
    lines += [
        "",
        f"torch threads {r.get('torch_threads')}; load average before/after: "
        f"{r['load_avg_before'][0]:.1f} / {r['load_avg_after'][0]:.1f}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--section-only", action="store_true", help="rebuild the section from the last JSON")
    args = parser.parse_args(argv)
    out = WORK / f"encoder_{args.profile}.json"
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.section_only:
        result = json.loads(out.read_text(encoding="utf-8"))
    else:
        result = json_safe(run(args.profile))
        atomic_write_json(out, result)
    atomic_write_text(SECTION, section(result))
    print(section(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
