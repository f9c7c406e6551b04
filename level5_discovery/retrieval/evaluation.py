"""Retrieval quality (recall@k, MRR per mode) and index build / query timings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from level5_discovery.evaluate import mean_reciprocal_rank, recall_at_k
from level5_discovery.retrieval.dense import Encoder
from level5_discovery.retrieval.index import MODES, HybridIndex, RetrievalConfig
from level5_discovery.retrieval.questions import Question, generate_questions
from shared.timing import Timer


def evaluate_retrieval(
    index: HybridIndex, questions: Sequence[Question], k: int = 5
) -> dict[str, dict[str, float]]:
    """Recall@k and MRR of the hybrid index and of each half alone on the same questions.

    Every mode ranks to the same depth (``index.cfg.candidates``) so MRR compares like with like.

    Returns:
        ``{"hybrid": {"recall@k": ..., "mrr": ...}, "bm25": {...}, "dense": {...}}`` (with the actual k).
    """
    texts = [q.text for q in questions]
    relevant = [q.relevant_ids for q in questions]
    depth = max(k, index.cfg.candidates)
    out: dict[str, dict[str, float]] = {}
    for mode in MODES:
        ranked = [[h.paper_id for h in hits] for hits in index.search_many(texts, depth, mode)]
        out[mode] = {
            f"recall@{k}": recall_at_k(ranked, relevant, k),
            "mrr": mean_reciprocal_rank(ranked, relevant),
        }
    return out


def bench_retrieval(
    n_docs: int,
    *,
    n_queries: int = 100,
    seed: int = 0,
    cfg: RetrievalConfig | None = None,
    encoder: Encoder | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Build time and single-query hybrid latency on a generated corpus of ``n_docs`` abstracts.

    The corpus comes from a 200-gene world (`literature.generate_corpus`); queries are generated
    questions, searched one at a time (query embedding included), as an interactive user would.

    Returns:
        ``n_docs``, ``build_s`` (tokenise + BM25 + embed all passages + FAISS), ``save_s``,
        ``load_s``, ``query_ms_p50``, ``query_ms_p99``, ``n_queries``.
    """
    import tempfile
    from pathlib import Path

    from level5_discovery.literature import LiteratureConfig, generate_corpus
    from level5_discovery.retrieval.dense import load_encoder
    from level5_discovery.simulate import WorldConfig, generate_world

    cfg = cfg or RetrievalConfig()
    world = generate_world(WorldConfig(n_genes=200), seed)
    papers = generate_corpus(world, LiteratureConfig(n_papers=n_docs), seed)
    encoder = encoder if encoder is not None else load_encoder(cfg.model_device)
    questions = generate_questions(papers, n=n_queries, seed=seed)
    with Timer() as t_build:
        index = HybridIndex.build(papers, cfg, encoder=encoder, progress=progress)
    with tempfile.TemporaryDirectory() as tmp:
        with Timer() as t_save:
            index.save(Path(tmp) / "index")
        with Timer() as t_load:
            HybridIndex.load(Path(tmp) / "index", cfg, encoder=encoder)
    index.search(questions[0].text)  # warm-up: first call pays one-off allocations
    latencies = []
    for q in questions:
        with Timer() as t:
            index.search(q.text)
        latencies.append(t.seconds * 1000.0)
    return {
        "n_docs": len(papers),
        "build_s": t_build.seconds,
        "save_s": t_save.seconds,
        "load_s": t_load.seconds,
        "query_ms_p50": float(np.percentile(latencies, 50)),
        "query_ms_p99": float(np.percentile(latencies, 99)),
        "n_queries": len(latencies),
    }
