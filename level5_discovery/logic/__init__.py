"""Symbolic reasoning over causal facts with provenance (clingo Answer Set Programming)."""

from level5_discovery.logic.facts import Contradiction, Derived, Fact, support
from level5_discovery.logic.graphs import CandidateSpace, pair_matrix
from level5_discovery.logic.kb import KnowledgeBase

__all__ = ["CandidateSpace", "Contradiction", "Derived", "Fact", "KnowledgeBase", "pair_matrix", "support"]
