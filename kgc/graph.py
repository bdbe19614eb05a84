"""The training graph as a DGL graph: neighbours for text augmentation and k-hop
neighbourhoods for re-ranking. Built from training triples only, so nothing of dev or
test leaks into texts or scores."""

from __future__ import annotations

import logging
import os

os.environ.setdefault("DGLBACKEND", "pytorch")

import dgl  # noqa: E402
import torch  # noqa: E402

log = logging.getLogger("kgc")


class TrainingGraph:
    """Undirected entity graph of the training triples (relation types are ignored)."""

    def __init__(self, train_triples: torch.Tensor, num_entities: int):
        heads, tails = train_triples[:, 0], train_triples[:, 2]
        src = torch.cat([heads, tails])
        dst = torch.cat([tails, heads])
        keep = src != dst  # self-loops add nothing to a neighbourhood
        g = dgl.graph((src[keep], dst[keep]), num_nodes=num_entities)
        self.graph = dgl.to_simple(g)  # one edge per connected pair
        indptr, indices, _ = self.graph.adj_tensors("csr")
        self.indptr, self.indices = indptr.long(), indices.long()
        self.num_entities = num_entities

    def degree(self) -> torch.Tensor:
        return self.indptr[1:] - self.indptr[:-1]

    def neighbours(self, max_per_entity: int, seed: int = 0) -> list[list[int]]:
        """Up to ``max_per_entity`` neighbours of every entity, a fixed seeded sample."""
        gen = torch.Generator().manual_seed(seed)
        out: list[list[int]] = []
        for e in range(self.num_entities):
            row = self.indices[self.indptr[e] : self.indptr[e + 1]]
            if len(row) > max_per_entity:
                row = row[torch.randperm(len(row), generator=gen)[:max_per_entity]].sort().values
            out.append(row.tolist())
        return out

    def within_hops(self, heads: torch.Tensor, hops: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, entities): every entity reachable from ``heads[row]`` in 1..hops steps,
        each pair once; the head itself is not included.

        A breadth-first search of all heads at once on the CSR arrays: each step gathers
        the neighbours of the current frontier, keeps the (row, entity) pairs not seen
        before, and expands those next. Work and memory follow the pairs found, not
        entities x heads (a dense frontier times the sparse adjacency took 1.6 s for the
        3,134 WN18RR test heads)."""
        heads = heads.long()
        n = self.num_entities
        rows = torch.arange(len(heads))
        start_keys = rows * n + heads  # (row, entity) pairs as row * n + entity
        seen = start_keys.sort().values
        f_rows, f_nodes = rows, heads
        for _ in range(hops):
            first = self.indptr[f_nodes]
            count = self.indptr[f_nodes + 1] - first
            offset = torch.repeat_interleave(first - (torch.cumsum(count, 0) - count), count)
            neighbours = self.indices[offset + torch.arange(len(offset))]
            keys = torch.unique(torch.repeat_interleave(f_rows, count) * n + neighbours)
            new = keys[~torch.isin(keys, seen)]
            if new.numel() == 0:
                break
            seen = torch.cat([seen, new]).sort().values
            f_rows, f_nodes = new // n, new % n
        found = seen[~torch.isin(seen, start_keys)]
        return found // n, found % n
