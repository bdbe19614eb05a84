"""The training graph as a DGL graph: neighbours for text augmentation and k-hop
neighbourhoods for re-ranking. Built from training triples only, so nothing of dev or
test leaks into texts or scores."""

from __future__ import annotations

import logging
import os
import warnings

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

    def _adjacency(self) -> torch.Tensor:
        if not hasattr(self, "_adj"):
            values = torch.ones(len(self.indices), dtype=torch.float32)
            n = self.num_entities
            with warnings.catch_warnings():  # "sparse CSR support is in beta": we rely only on CSR @ dense
                warnings.simplefilter("ignore", UserWarning)
                self._adj = torch.sparse_csr_tensor(self.indptr, self.indices, values, (n, n),
                                                    check_invariants=False)
        return self._adj

    def within_hops(self, heads: torch.Tensor, hops: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, entities): every entity reachable from ``heads[row]`` in 1..hops steps.

        All heads at once: a dense [entities, heads] frontier multiplied by the sparse
        (symmetric) adjacency ``hops`` times; callers pass a chunk of heads so memory
        stays bounded. The head itself is not included.
        """
        heads = heads.long()
        frontier = torch.zeros(self.num_entities, len(heads))
        frontier[heads, torch.arange(len(heads))] = 1.0
        reached = torch.zeros_like(frontier, dtype=torch.bool)
        adj = self._adjacency()
        for _ in range(hops):
            frontier = (adj @ frontier).clamp_(max=1.0)
            reached |= frontier > 0
        reached[heads, torch.arange(len(heads))] = False
        cols, rows = reached.nonzero(as_tuple=True)
        return rows, cols
