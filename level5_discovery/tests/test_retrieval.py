"""Hybrid retrieval on hand-made corpora: known rankings, exact fusion scores, the on-disk index."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from level5_discovery.corpus import Paper
from level5_discovery.retrieval import (
    HybridIndex,
    RetrievalConfig,
    answer,
    build_or_load,
    reciprocal_rank_fusion,
)
from level5_discovery.retrieval.dense import load_encoder
from level5_discovery.retrieval.text import gene_mentions, split_sentences, stem, tokenize
from shared.errors import ConfigError, DataError, InputFileError


class SpyEncoder:
    """Wraps the real encoder and records how many texts each call embeds."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[int] = []

    def encode(self, sentences: list[str], **kwargs: Any) -> Any:
        self.calls.append(len(sentences))
        return self.inner.encode(sentences, **kwargs)

    @property
    def n_texts(self) -> int:
        return sum(self.calls)


@pytest.fixture(scope="module")
def encoder() -> Any:
    return load_encoder("cpu")


@pytest.fixture
def spy(encoder: Any) -> Iterator[SpyEncoder]:
    yield SpyEncoder(encoder)


PAPERS = [
    Paper(
        "A",
        2001,
        "Hepatocyte transcription",
        "G03 strongly inhibits G07 transcription in hepatocytes. The effect was reproducible across donors.",
    ),
    Paper(
        "B", 2002, "Cell cycle control", "G12 activates G15 during mitosis. Dividing cells doubled faster."
    ),
    Paper("C", 2003, "Coastal weather", "Rainfall patterns changed over the decade in coastal regions."),
    Paper("D", 2004, "Muscle metabolism", "Glucose uptake rises in muscle cells after exercise."),
    Paper("E", 2005, "Immune signalling", "G21 represses G04 in T cells. Cytokine release was measured."),
]


@pytest.fixture(scope="module")
def index(encoder: Any) -> HybridIndex:
    return HybridIndex.build(PAPERS, RetrievalConfig(), encoder=encoder)


def test_tokenize_keeps_gene_names_and_folds_inflections() -> None:
    assert tokenize("G03 up-regulates g07 expression") == ["G03", "up", "regul", "G07", "express"]
    assert {stem(w) for w in ("regulates", "regulated", "regulating", "regulation")} == {"regul"}
    assert stem("inhibition") == stem("inhibits") == "inhibit"
    assert gene_mentions("Loss of G03 reduced g07 and G03 again; TP53 too.") == ["G03", "G07", "TP53"]
    assert split_sentences("G03 acts. It is strong! Is it? 4 replicates.") == [
        "G03 acts.",
        "It is strong!",
        "Is it?",
        "4 replicates.",
    ]


def test_bm25_ranks_the_exact_term_document_first(index: HybridIndex) -> None:
    hits = index.search("G12 G15", k=5, mode="bm25")
    assert [h.paper_id for h in hits] == ["B"]  # only B holds either term; the others score 0 and are dropped
    hits = index.search("rainfall decade", k=5, mode="bm25")
    assert hits[0].paper_id == "C" and hits[0].rank == 1
    assert index.search("completely unrelated vocabulary", k=5, mode="bm25") == []


def test_dense_retrieves_a_paraphrase_bm25_misses(index: HybridIndex) -> None:
    query = "which factor suppresses gene expression in liver?"
    assert "A" not in [h.paper_id for h in index.search(query, k=5, mode="bm25")]  # no shared stem
    dense = index.search(query, k=5, mode="dense")
    assert dense[0].paper_id == "A"
    assert len(dense) == 5 and all(a.score >= b.score for a, b in itertools.pairwise(dense))
    assert index.search(query, k=5, mode="hybrid")[0].paper_id == "A"


def test_rrf_equals_hand_computed_scores() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a", "d"]], k=60)
    expected = [("a", 1 / 61 + 1 / 62), ("c", 1 / 63 + 1 / 61), ("b", 1 / 62), ("d", 1 / 63)]
    assert [d for d, _ in fused] == [d for d, _ in expected]
    assert np.allclose([s for _, s in fused], [s for _, s in expected], rtol=0, atol=1e-15)
    fused0 = dict(reciprocal_rank_fusion([["a", "b", "c"], ["c", "a", "d"]], k=0))
    assert fused0 == pytest.approx({"a": 1.5, "c": 1 / 3 + 1, "b": 0.5, "d": 1 / 3})
    # Equal scores: the better best rank wins, then first appearance.
    assert [d for d, _ in reciprocal_rank_fusion([["x", "y"], ["y", "x"]])] == ["x", "y"]
    with pytest.raises(ValueError, match="rrf k"):
        reciprocal_rank_fusion([["a"]], k=-1)


def test_weighted_rrf_scales_each_ranking() -> None:
    fused = dict(reciprocal_rank_fusion([["a", "b"], ["b", "c"]], k=1, weights=(0.6, 0.4)))
    assert fused == pytest.approx({"a": 0.6 / 2, "b": 0.6 / 3 + 0.4 / 2, "c": 0.4 / 3})
    # The heavier ranking's first hit beats the lighter one's: "x" first, although both are rank 1.
    assert [d for d, _ in reciprocal_rank_fusion([["y"], ["x"]], k=1, weights=(0.4, 0.6))] == ["x", "y"]
    plain = reciprocal_rank_fusion([["a"], ["b"]])
    assert reciprocal_rank_fusion([["a"], ["b"]], weights=(1.0, 1.0)) == plain
    with pytest.raises(ValueError, match="one weight per ranking"):
        reciprocal_rank_fusion([["a"], ["b"]], weights=(1.0,))
    with pytest.raises(ValueError, match="weights must be >= 0"):
        reciprocal_rank_fusion([["a"], ["b"]], weights=(1.0, -0.5))


def test_hybrid_is_the_fusion_of_both_halves(index: HybridIndex) -> None:
    query = "G03 represses G07 in the liver"
    b_idx, _ = index.bm25.top(query, index.cfg.candidates)
    qv = index.encoder.encode([query], normalize_embeddings=True)
    d_idx, _ = index.dense.top(np.asarray(qv), index.cfg.candidates)
    cfg = index.cfg
    assert index.fusion_weights == pytest.approx((cfg.bm25_weight, 1 - cfg.bm25_weight))
    rankings = [b_idx.tolist(), d_idx[0].tolist()]
    expected = reciprocal_rank_fusion(rankings, cfg.rrf_k, index.fusion_weights)[:3]
    hits = index.search(query, k=3)
    assert [h.paper_id for h in hits] == [index.ids[i] for i, _ in expected]
    assert [h.score for h in hits] == pytest.approx([s for _, s in expected])
    assert [h.rank for h in hits] == [1, 2, 3]
    assert hits[0].paper_id == "A" and hits[0].text.startswith("Hepatocyte transcription. G03")
    with pytest.raises(ConfigError, match="unknown retrieval mode"):
        index.search(query, mode="sparse")  # type: ignore[arg-type]


def test_answer_quotes_the_gene_sentences_and_cites_them(index: HybridIndex) -> None:
    ans = answer(index, "Does G03 dampen G07?", k=3)
    assert ans.citations == ("A",)
    assert ans.text == "G03 strongly inhibits G07 transcription in hepatocytes. [A]"
    assert [e.paper_id for e in ans.evidence] == ["A"]
    none = answer(index, "What does G99 do?", k=3)
    assert none.citations == () and "G99" in none.text


def _results(index: HybridIndex, queries: list[str]) -> list[list[tuple[str, float]]]:
    return [
        [(h.paper_id, round(h.score, 6)) for h in hits]
        for mode in ("hybrid", "bm25", "dense")
        for hits in index.search_many(queries, k=5, mode=mode)  # type: ignore[arg-type]
    ]


def test_save_load_round_trip_and_build_once(tmp_path: Path, spy: SpyEncoder) -> None:
    queries = ["G12 drives G15", "suppression of a gene in liver", "weather by the sea"]
    built = build_or_load(PAPERS, tmp_path / "idx", RetrievalConfig(), encoder=spy)
    n_sentences = 13  # titles count as sentences: 3 + 3 + 2 + 2 + 3
    assert spy.n_texts == n_sentences  # the corpus was encoded once
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert (
        manifest["n_docs"] == 5
        and manifest["n_sentences"] == n_sentences
        and manifest["dim"] == 384
        and manifest["corpus_hash"] == built.corpus_hash
    )

    spy.calls.clear()
    again = build_or_load(PAPERS, tmp_path / "idx", RetrievalConfig(), encoder=spy)
    assert spy.calls == []  # same corpus: reloaded, nothing re-encoded
    np.testing.assert_array_equal(again.dense.embeddings, built.dense.embeddings)
    assert again.ids == built.ids and again.texts == built.texts
    expected = _results(built, queries)
    spy.calls.clear()
    assert _results(again, queries) == expected
    assert spy.calls == [3, 3]  # only the queries: the hybrid and the dense batch

    changed = [
        *PAPERS[:-1],
        Paper("E", 2005, "Immune signalling", "G21 activates G04 in natural killer cells."),
    ]
    spy.calls.clear()
    rebuilt = build_or_load(changed, tmp_path / "idx", RetrievalConfig(), encoder=spy)
    assert spy.n_texts == n_sentences - 1  # changed corpus: rebuilt (E now has one sentence fewer)
    assert rebuilt.corpus_hash != built.corpus_hash
    assert rebuilt.search("natural killer", k=1, mode="bm25")[0].paper_id == "E"
    reloaded = HybridIndex.load(tmp_path / "idx", encoder=spy)
    assert reloaded.corpus_hash == rebuilt.corpus_hash


def test_bad_index_inputs(tmp_path: Path, spy: SpyEncoder) -> None:
    with pytest.raises(InputFileError, match="no retrieval index"):
        HybridIndex.load(tmp_path / "missing")
    with pytest.raises(DataError, match="empty corpus"):
        HybridIndex.build([], encoder=spy)
    with pytest.raises(DataError, match="unique"):
        HybridIndex.build([PAPERS[0], PAPERS[0]], encoder=spy)
    folder = HybridIndex.build(PAPERS[:2], encoder=spy).save(tmp_path / "idx")
    (folder / "docs.jsonl").write_text('{"id": "A", "text": "tampered"}\n{"id": "B", "text": "x"}\n')
    with pytest.raises(DataError, match="corrupt"):
        HybridIndex.load(folder, encoder=spy)
