"""A level-5 dataset on disk: the hidden world, the literature, and where the truth is kept.

``generate`` writes a folder an agent can be pointed at::

    DATA/
      corpus.jsonl          the literature, in the real-corpus layout {"id","title","abstract","year"}
      truth/world.json      the hidden world (graph, weights, phenotype): evaluation only
      truth/corpus_labels.jsonl   each paper's hidden kind and stated relations: evaluation only
      manifest.json         seed, sizes, profile

A real corpus is read through the same reader (`corpus.read_corpus_jsonl`); without a
``truth/`` folder there is nothing to score against, and commands say so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from level5_discovery.corpus import Paper, read_corpus_jsonl, write_corpus_jsonl
from level5_discovery.literature import LiteratureConfig, generate_corpus
from level5_discovery.simulate import World, WorldConfig, generate_world
from shared.atomic import atomic_write_json
from shared.errors import InputFileError

CORPUS = "corpus.jsonl"
WORLD = "truth/world.json"
LABELS = "truth/corpus_labels.jsonl"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset: the literature always, the hidden world when the folder has it."""

    folder: Path
    papers: list[Paper]
    world: World | None

    def require_world(self) -> World:
        """The hidden world, or a clear error for a real corpus that has none.

        Raises:
            InputFileError: The folder has no ``truth/world.json``.
        """
        if self.world is None:
            raise InputFileError(f"{self.folder / WORLD}: no hidden world here (a real corpus has no truth)")
        return self.world


def generate(
    out: Path, world_cfg: WorldConfig, literature_cfg: LiteratureConfig, seed: int, profile: str = "quick"
) -> Dataset:
    """Simulate a world and its literature and write them to ``out``.

    Args:
        out: Dataset folder (created).
        world_cfg: The world's settings.
        literature_cfg: The corpus's settings.
        seed: One seed for both (the corpus draws from its own child stream).
        profile: Recorded in the manifest.
    """
    world = generate_world(world_cfg, seed)
    papers = generate_corpus(world, literature_cfg, seed + 1)
    out.mkdir(parents=True, exist_ok=True)
    write_corpus_jsonl(papers, out / CORPUS)
    write_corpus_jsonl(papers, out / LABELS, include_hidden=True)
    atomic_write_json(out / WORLD, world.to_json())
    atomic_write_json(
        out / MANIFEST,
        {"seed": seed, "profile": profile, "n_genes": world.n_genes, "n_papers": len(papers)},
    )
    return Dataset(out, papers, world)


def load(folder: Path) -> Dataset:
    """Read a dataset folder (the hidden labels and world when present).

    Raises:
        InputFileError: The folder or its corpus is missing.
        DataError, SchemaError, EmptyDataError: The corpus is malformed (from the reader).
    """
    if not folder.is_dir():
        raise InputFileError(f"{folder}: no such dataset folder")
    labels = folder / LABELS
    papers = read_corpus_jsonl(labels if labels.is_file() else folder / CORPUS)
    world_path = folder / WORLD
    world = World.from_json(json.loads(world_path.read_text())) if world_path.is_file() else None
    return Dataset(folder, papers, world)
