"""Everything derived from one data folder for one tokenizer, built once per run:
the graph of ids, its known answers, the DGL training graph, the texts and the token cache."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from kgc.answers import KnownAnswers
from kgc.config import Config, resolve_data_dir
from kgc.data import KnowledgeGraph, load_graph
from kgc.graph import TrainingGraph
from kgc.texts import Texts
from kgc.tokens import TokenCache

log = logging.getLogger("kgc")


@dataclass
class Dataset:
    kg: KnowledgeGraph
    known: KnownAnswers  # train + dev + test, both directions: the evaluation filter
    known_train: KnownAnswers  # training triples only: false-negative masks in training
    graph: TrainingGraph
    texts: Texts
    tokens: TokenCache

    @classmethod
    def build(cls, cfg: Config, tokenizer) -> "Dataset":
        kg = load_graph(resolve_data_dir(cfg.data_dir), name_separator=cfg.name_separator)
        graph = TrainingGraph(kg.triples("train"), kg.num_entities)
        texts = Texts.build(kg, description_words=cfg.description_words, augment=cfg.neighbor_augmentation,
                            neighbor_max=cfg.neighbor_max, neighbor_min_words=cfg.neighbor_min_words,
                            seed=cfg.seed, graph=graph)
        tokens = TokenCache(texts, tokenizer, cfg.max_tokens)
        return cls(kg, KnownAnswers.from_graph(kg), KnownAnswers.from_graph(kg, splits=("train",)),
                   graph, texts, tokens)
