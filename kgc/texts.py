"""The text of every entity and relation, SimKGC-style.

An entity reads ``name: description`` (the description cut to a number of words); a
relation reads its words, and the inverse relation ``inverse <words>``. Entities whose
description is short get the names of some training-graph neighbours appended (neighbour
augmentation); the neighbour lists live here, the token assembly in :mod:`kgc.tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass

from kgc.data import KnowledgeGraph
from kgc.graph import TrainingGraph


def entity_text(name: str, description: str, max_words: int) -> str:
    """``name: description`` with the description cut to ``max_words`` words."""
    description = description.strip()
    if description.lower().startswith(name.lower()):
        # descriptions that open with the entity's own name would repeat it
        rest = description[len(name) :].lstrip(" ,:;-")
        description = rest if rest else description
    words = description.split()[:max_words]
    return f"{name}: {' '.join(words)}" if words else name


@dataclass
class Texts:
    """All strings the encoders see, indexed by entity / relation id."""

    entities: list[str]  # base text of each entity
    names: list[str]  # entity names (what neighbour augmentation appends)
    relations: list[str]  # 2R texts: forward relations then their inverses
    neighbours: list[list[int]]  # per entity: neighbours whose names are appended ([] = none)

    @classmethod
    def build(cls, kg: KnowledgeGraph, *, description_words: int = 50, augment: bool = True,
              neighbor_max: int = 10, neighbor_min_words: int = 20, seed: int = 0,
              graph: TrainingGraph | None = None) -> "Texts":
        entities = [entity_text(n, d, description_words)
                    for n, d in zip(kg.entity_names, kg.entity_descriptions)]
        relations = [kg.relation_text(r) for r in range(2 * kg.num_relations)]
        neighbours: list[list[int]] = [[] for _ in entities]
        if augment and neighbor_max > 0:
            graph = graph or TrainingGraph(kg.triples("train"), kg.num_entities)
            sampled = graph.neighbours(neighbor_max, seed=seed)
            for e, d in enumerate(kg.entity_descriptions):
                if len(d.split()) < neighbor_min_words:
                    neighbours[e] = sampled[e]
        return cls(entities, list(kg.entity_names), relations, neighbours)

    def augmented(self, entity: int, exclude: int | None = None) -> str:
        """The entity's text with its neighbours' names, never the name of ``exclude``."""
        names = [self.names[n] for n in self.neighbours[entity] if n != exclude]
        return " ".join([self.entities[entity], *names]) if names else self.entities[entity]
