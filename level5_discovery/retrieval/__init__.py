"""Hybrid retrieval over the literature: BM25 + MiniLM embeddings fused by weighted reciprocal rank.

Public API: `RetrievalConfig`, `HybridIndex` (build / save / load / search), `build_or_load`,
`Hit`, `answer` / `Answer` (extractive, cited), `reciprocal_rank_fusion`, `load_encoder`,
`generate_questions` / `Question` and `evaluate_retrieval` / `bench_retrieval`.
"""

from level5_discovery.retrieval.answer import Answer, Evidence, answer
from level5_discovery.retrieval.dense import MODEL_NAME, load_encoder
from level5_discovery.retrieval.fusion import reciprocal_rank_fusion
from level5_discovery.retrieval.index import Hit, HybridIndex, RetrievalConfig, build_or_load, passage_text

__all__ = [
    "MODEL_NAME",
    "Answer",
    "Evidence",
    "Hit",
    "HybridIndex",
    "RetrievalConfig",
    "answer",
    "build_or_load",
    "load_encoder",
    "passage_text",
    "reciprocal_rank_fusion",
]
