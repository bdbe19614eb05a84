"""Filtered link prediction over all entities, in both directions.

Tail prediction ranks every entity for (h, r, ?); head prediction is tail prediction with
the inverse relation, (t, r⁻¹, ?). In the filtered setting every *other* known true answer
(train + dev + test) is removed from the candidates and nothing else: the query's own head
stays a candidate, as in the standard protocol and SimKGC's evaluator. Removing it
(``filter_head: true``) is offered but flatters the numbers and is never the default.
Ranks are realistic ranks (see :mod:`kgc.ranks`); metrics come out as ``metrics.json``
and the top predictions of every query as ``predictions.jsonl``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from kgc.config import Config
from kgc.dataset import Dataset
from kgc.embeddings import encode_entities, encode_queries
from kgc.encoder import BiEncoder
from kgc.io import atomic_open, write_json
from kgc.metrics import combine_directions
from kgc.ranks import RankResult, filtered_ranks

log = logging.getLogger("kgc")


def split_queries(ds: Dataset, split: str, max_queries: int | None = None) -> dict[str, torch.Tensor]:
    """Forward queries (h, r, t) and backward queries (t, r + R, h) of a split."""
    triples = ds.kg.triples(split)
    if max_queries is not None:
        triples = triples[:max_queries]
    R = ds.kg.num_relations
    backward = torch.stack([triples[:, 2], triples[:, 1] + R, triples[:, 0]], dim=1)
    return {"forward": triples, "backward": backward}


def rank_queries(ds: Dataset, cfg: Config, queries: torch.Tensor, query_vecs: torch.Tensor,
                 entity_vecs: torch.Tensor, progress: bool = False) -> RankResult:
    """Filtered ranks of the tails of [Q, 3] queries, given their embeddings."""
    heads, rels, tails = queries[:, 0], queries[:, 1], queries[:, 2]

    def exclude(start: int, end: int):
        rows, cols = ds.known.answers(heads[start:end], rels[start:end])
        if cfg.filter_head:
            local = torch.arange(end - start)
            rows, cols = torch.cat([rows, local]), torch.cat([cols, heads[start:end]])
        return rows, cols

    bonus = None
    if cfg.rerank_hops > 0 and cfg.rerank_weight != 0:
        def bonus(start: int, end: int):
            rows, cols = ds.graph.within_hops(heads[start:end], cfg.rerank_hops)
            return rows, cols, torch.full((len(rows),), float(cfg.rerank_weight))

    return filtered_ranks(query_vecs, entity_vecs, tails, exclude, bonus=bonus, top_k=cfg.top_k,
                          progress=progress)


def evaluate(model: BiEncoder, ds: Dataset, cfg: Config, split: str, device: torch.device,
             precision: str, entity_vecs: torch.Tensor | None = None,
             progress: bool = True) -> tuple[dict, dict[str, tuple[torch.Tensor, RankResult]]]:
    """Metrics of ``split`` (both directions) and, per direction, its queries and ranks."""
    start = time.perf_counter()
    if entity_vecs is None:
        entity_vecs = encode_entities(model, ds.tokens, device, precision, cfg.eval_batch_size, progress,
                                      cfg.cpu_lanes)
    encode_seconds = time.perf_counter() - start
    results = {}
    for direction, queries in split_queries(ds, split, cfg.eval_max_queries).items():
        qv = encode_queries(model, ds.tokens, queries[:, 0], queries[:, 1], device, precision,
                            cfg.eval_batch_size, progress, cfg.cpu_lanes)
        results[direction] = (queries, rank_queries(ds, cfg, queries, qv, entity_vecs, progress))
    metrics = combine_directions(results["forward"][1], results["backward"][1])
    metrics.update({
        "split": split,
        "num_entities": ds.kg.num_entities,
        "filter": "all other known true answers of train+dev+test" + (" and the query's head (non-standard)" if cfg.filter_head else ""),
        "rerank_hops": cfg.rerank_hops,
        "precision": precision,
        "entity_encoding_seconds": round(encode_seconds, 3),
        "seconds": round(time.perf_counter() - start, 3),
    })
    return metrics, results


def write_predictions(path: Path, ds: Dataset, results: dict[str, tuple[torch.Tensor, RankResult]]) -> None:
    """One JSON object per query: the query, the gold answer's rank, and the top candidates."""
    kg = ds.kg
    with atomic_open(path) as f:
        for direction, (queries, res) in results.items():
            for i, (h, r, t) in enumerate(queries.tolist()):
                top = [{"entity": kg.entity_ids[e], "score": round(s, 6)}
                       for e, s in zip(res.top_indices[i].tolist(), res.top_scores[i].tolist()) if e >= 0]
                f.write(json.dumps({
                    "direction": direction,
                    "head": kg.entity_ids[h],
                    "relation": kg.relation_ids[r % kg.num_relations],
                    "inverse": r >= kg.num_relations,
                    "answer": kg.entity_ids[t],
                    "rank": float(res.realistic[i]),
                    "rank_optimistic": float(res.optimistic[i]),
                    "rank_pessimistic": float(res.pessimistic[i]),
                    "top": top,
                }) + "\n")


def write_results(output_dir: str | Path, metrics: dict, ds: Dataset,
                  results: dict[str, tuple[torch.Tensor, RankResult]]) -> None:
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json(output_dir / "metrics.json", metrics)
    write_predictions(output_dir / "predictions.jsonl", ds, results)
    log.info("wrote %s and %s", output_dir / "metrics.json", output_dir / "predictions.jsonl")


def format_metrics(metrics: dict) -> str:
    keys = ("mrr", "mr", "hits@1", "hits@3", "hits@10")
    lines = [f"{'':10s}" + "".join(f"{k:>10s}" for k in keys)]
    for name, block in (("both", metrics), ("forward", metrics["forward"]), ("backward", metrics["backward"])):
        lines.append(f"{name:10s}" + "".join(f"{block[k]:10.4f}" for k in keys))
    lines.append(f"(realistic ranks, filtered; {metrics['count']} queries, {metrics.get('seconds', 0):.1f} s)")
    return "\n".join(lines)
