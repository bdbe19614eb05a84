"""Index of the known true answers of (head, relation) queries.

Used to filter other true answers out of the ranking at evaluation time and to mask false
negatives during training. Every fact ``(h, r, t)`` becomes one int64 code
``(h * num_relations + r) * num_entities + t``; the codes are kept sorted, so all answers
of the query ``(h, r)`` form one contiguous run ``[(h*R' + r)*E, (h*R' + r + 1)*E)`` that
``torch.searchsorted`` finds in O(log n), for whole batches at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch

from kgc.errors import KGCError

if TYPE_CHECKING:  # pragma: no cover
    from kgc.data import KnowledgeGraph

_INT64_MAX = torch.iinfo(torch.int64).max
# contains() builds [rows, K] code matrices; rows are processed in chunks of at most this
# many elements so that a batch against all 40k entities stays a few tens of MB.
_CHUNK_ELEMENTS = 1 << 22


class KnownAnswers:
    """Known true (query -> answer) pairs. A query is (head, relation) with relation in
    [0, 2R): r >= R is the inverse of r - R."""

    def __init__(self, triples: torch.Tensor, num_entities: int, num_relations: int):
        """``triples``: ``[n, 3]`` (h, r, t) with ``r`` already in ``[0, num_relations)``;
        pass both directions (``num_relations`` = 2R). Duplicates are dropped."""
        num_entities, num_relations = int(num_entities), int(num_relations)
        if num_entities <= 0 or num_relations <= 0:
            raise KGCError(f"KnownAnswers needs positive sizes, got {num_entities} entities "
                           f"and {num_relations} relations")
        if num_entities * num_relations * num_entities > _INT64_MAX:
            raise KGCError(
                f"KnownAnswers cannot index {num_entities} entities x {num_relations} relations: "
                f"the fact codes (h * {num_relations} + r) * {num_entities} + t would overflow int64 "
                f"({num_entities}^2 * {num_relations} > 2^63 - 1)")
        self.num_entities = num_entities
        self.num_relations = num_relations
        triples = torch.as_tensor(triples)
        if triples.numel() == 0:
            triples = triples.reshape(0, 3)
        if triples.dim() != 2 or triples.shape[1] != 3:
            raise KGCError(f"KnownAnswers expects [n, 3] triples, got shape {tuple(triples.shape)}")
        triples = triples.to(torch.long)
        if len(triples):
            h, r, t = triples.unbind(1)
            self._check_range("head", h, num_entities)
            self._check_range("relation", r, num_relations)
            self._check_range("tail", t, num_entities)
            codes = (h * num_relations + r) * num_entities + t
            self.codes = torch.unique(codes, sorted=True)
        else:
            self.codes = torch.empty(0, dtype=torch.long, device=triples.device)

    @classmethod
    def from_graph(cls, kg: "KnowledgeGraph", splits: Sequence[str] = ("train", "dev", "test")) -> "KnownAnswers":
        """All facts of ``splits`` of ``kg`` in both directions (tail and head queries)."""
        parts = [kg.triples(s, with_inverse=True) for s in splits]
        triples = torch.cat(parts) if parts else torch.empty((0, 3), dtype=torch.long)
        return cls(triples, kg.num_entities, 2 * kg.num_relations)

    # ------------------------------------------------------------------ queries

    def to(self, device: torch.device | str) -> "KnownAnswers":
        """Move the index to ``device`` (in place; returns ``self``)."""
        self.codes = self.codes.to(device)
        return self

    def __len__(self) -> int:
        """Number of distinct (h, r, t) facts."""
        return int(self.codes.numel())

    def _query_codes(self, heads: torch.Tensor, relations: torch.Tensor) -> torch.Tensor:
        heads = torch.as_tensor(heads, device=self.codes.device).to(torch.long).reshape(-1)
        relations = torch.as_tensor(relations, device=self.codes.device).to(torch.long).reshape(-1)
        if heads.shape != relations.shape:
            raise KGCError(f"heads and relations differ in length: {heads.numel()} vs {relations.numel()}")
        self._check_range("head", heads, self.num_entities)
        self._check_range("relation", relations, self.num_relations)
        return heads * self.num_relations + relations

    def _ranges(self, heads: torch.Tensor, relations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Start and end positions in ``codes`` of each query's answers."""
        first = self._query_codes(heads, relations) * self.num_entities
        start = torch.searchsorted(self.codes, first)
        end = torch.searchsorted(self.codes, first + self.num_entities)
        return start, end

    def contains(self, heads: torch.Tensor, relations: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """``[B, K]`` bool: ``out[i, j]`` is True when ``candidates[j]`` is a known answer of
        query ``(heads[i], relations[i])``."""
        device = torch.as_tensor(heads).device
        first = self._query_codes(heads, relations) * self.num_entities  # [B]
        candidates = torch.as_tensor(candidates, device=self.codes.device).to(torch.long).reshape(-1)
        self._check_range("candidate", candidates, self.num_entities)
        B, K = first.numel(), candidates.numel()
        if self.codes.numel() == 0 or B == 0 or K == 0:
            return torch.zeros((B, K), dtype=torch.bool, device=device)
        start = torch.searchsorted(self.codes, first)
        counts = torch.searchsorted(self.codes, first + self.num_entities) - start
        if int(counts.sum()) <= B * K:
            out = self._contains_by_answers(start, counts, candidates)
        else:
            out = self._contains_by_search(first, candidates)
        return out.to(device)

    def _contains_by_answers(self, start: torch.Tensor, counts: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """contains() when the queries have few known answers (the usual case, e.g. a batch
        against every entity): each answer is looked up among the candidates."""
        out = torch.zeros((counts.numel(), candidates.numel()), dtype=torch.bool, device=self.codes.device)
        rows, pos = _expand(start, counts)
        entities = self.codes[pos] % self.num_entities
        sorted_cands, order = torch.sort(candidates)
        lo = torch.searchsorted(sorted_cands, entities)
        hits = torch.searchsorted(sorted_cands, entities, right=True) - lo  # >1 for repeated candidates
        hit_rows, hit_pos = _expand(lo, hits, rows)
        out[hit_rows, order[hit_pos]] = True
        return out

    def _contains_by_search(self, first: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """contains() when the queries have more answers than there are cells: each
        (query, candidate) code is looked up among the facts, a chunk of rows at a time."""
        B, K, n = first.numel(), candidates.numel(), self.codes.numel()
        out = torch.empty((B, K), dtype=torch.bool, device=self.codes.device)
        rows_per_chunk = max(1, _CHUNK_ELEMENTS // K)
        for lo in range(0, B, rows_per_chunk):  # chunks bound memory; each is one vectorised search
            wanted = first[lo:lo + rows_per_chunk, None] + candidates[None, :]
            pos = torch.searchsorted(self.codes, wanted).clamp_(max=n - 1)
            out[lo:lo + rows_per_chunk] = self.codes[pos] == wanted
        return out

    def count(self, heads: torch.Tensor, relations: torch.Tensor) -> torch.Tensor:
        """``[B]`` int64: number of known answers of each query."""
        device = torch.as_tensor(heads).device
        start, end = self._ranges(heads, relations)
        return (end - start).to(device)

    def answers(self, heads: torch.Tensor, relations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every known answer of each query as two aligned int64 vectors ``(rows, entities)``:
        ``entities[k]`` answers query ``rows[k]`` (rows ascending, entities ascending within a row)."""
        device = torch.as_tensor(heads).device
        start, end = self._ranges(heads, relations)
        rows, pos = _expand(start, end - start)
        entities = self.codes[pos] % self.num_entities
        return rows.to(device), entities.to(device)

    @staticmethod
    def _check_range(what: str, values: torch.Tensor, size: int) -> None:
        if values.numel() and (int(values.min()) < 0 or int(values.max()) >= size):
            bad = values[(values < 0) | (values >= size)][0].item()
            raise KGCError(f"{what} id {bad} out of range [0, {size})")


def _expand(start: torch.Tensor, counts: torch.Tensor, labels: torch.Tensor | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Expand ranges ``[start[i], start[i] + counts[i])`` into one flat vector of positions,
    with the label of each position's range (``labels[i]``, default ``i``)."""
    if labels is None:
        labels = torch.arange(counts.numel(), device=counts.device)
    out_labels = torch.repeat_interleave(labels, counts)
    range_of = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)
    first_out = torch.cumsum(counts, 0) - counts  # output index where each range begins
    within = torch.arange(out_labels.numel(), device=counts.device) - first_out[range_of]
    return out_labels, start[range_of] + within
