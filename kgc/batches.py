"""Training batches: a seeded random sample of triples, its token inputs and its masks.

Batch composition stays a uniform random sample of the (forward + inverse) training
triples, because in-batch negatives must be a random sample for the loss. Length only
shapes how a batch is *computed*: its sequences are sorted by length and cut into chunks
that are each padded to their own longest sequence. Each distinct entity text of a batch
(tails and the heads used as self-negatives) is encoded once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kgc.answers import KnownAnswers
from kgc.tokens import TokenCache


@dataclass
class TokenBatch:
    """Sequences sorted by length and padded per chunk; ``restore`` undoes the sort."""

    chunks: list[dict[str, torch.Tensor]]
    restore: torch.Tensor  # cat(outputs of chunks)[restore] is in the original order
    lengths: list[int]  # real (non-padding) length of each sequence, original order

    @property
    def num_tokens(self) -> int:
        return sum(self.lengths)

    @classmethod
    def build(cls, ids: list[tuple[int, ...]], types: list[tuple[int, ...]], pad_id: int,
              chunk_size: int) -> "TokenBatch":
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        chunks = []
        for start in range(0, len(order), chunk_size):
            idx = order[start : start + chunk_size]
            width = len(ids[idx[-1]])
            input_ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
            type_ids = torch.zeros((len(idx), width), dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                n = len(ids[i])
                input_ids[row, :n] = torch.tensor(ids[i])
                type_ids[row, :n] = torch.tensor(types[i])
                mask[row, :n] = 1
            chunks.append({"input_ids": input_ids, "attention_mask": mask, "token_type_ids": type_ids})
        restore = torch.empty(len(order), dtype=torch.long)
        restore[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))
        return cls(chunks, restore, [len(s) for s in ids])

    def __len__(self) -> int:
        return len(self.restore)

    def to(self, device: torch.device) -> "TokenBatch":
        chunks = [{k: v.to(device, non_blocking=True) for k, v in c.items()} for c in self.chunks]
        return TokenBatch(chunks, self.restore.to(device), self.lengths)


@dataclass
class Batch:
    triples: torch.Tensor  # [B, 3] (head, relation in [0, 2R), tail)
    queries: TokenBatch  # B query texts
    entities: TokenBatch  # distinct entity texts of the batch
    tail_index: torch.Tensor  # [B] row of each tail in the entity embeddings
    head_index: torch.Tensor  # [B] row of each head (self-negative) in the entity embeddings
    batch_known: torch.Tensor  # [B, B] tails[j] is a known true answer of query i
    head_known: torch.Tensor  # [B] the head is itself a true answer of its query

    def to(self, device: torch.device) -> "Batch":
        return Batch(self.triples.to(device), self.queries.to(device), self.entities.to(device),
                     self.tail_index.to(device), self.head_index.to(device),
                     self.batch_known.to(device), self.head_known.to(device))


def make_batch(triples: torch.Tensor, tokens: TokenCache, known: KnownAnswers, chunk_size: int,
               self_negatives: bool = True) -> Batch:
    """Assemble one batch from [B, 3] triples (relations already in [0, 2R))."""
    h, r, t = triples[:, 0], triples[:, 1], triples[:, 2]
    q_ids, q_types = [], []
    for head, rel, tail in triples.tolist():
        ids, types = tokens.query(head, rel, exclude=tail)
        q_ids.append(ids)
        q_types.append(types)

    slot: dict[tuple[int, ...], int] = {}
    e_ids, e_types = [], []

    def entity_row(entity: int, exclude: int) -> int:
        ids, types = tokens.entity(entity, exclude=exclude)
        if ids not in slot:
            slot[ids] = len(e_ids)
            e_ids.append(ids)
            e_types.append(types)
        return slot[ids]

    tail_index = [entity_row(tail, head) for head, tail in zip(h.tolist(), t.tolist())]
    if self_negatives:
        head_index = [entity_row(head, tail) for head, tail in zip(h.tolist(), t.tolist())]
    else:
        head_index = tail_index
    batch_known = known.contains(h, r, t)
    batch_known.fill_diagonal_(True)
    head_known = known.contains(h, r, h).diagonal() | (h == t)
    return Batch(
        triples=triples,
        queries=TokenBatch.build(q_ids, q_types, tokens.pad_id, chunk_size),
        entities=TokenBatch.build(e_ids, e_types, tokens.pad_id, chunk_size),
        tail_index=torch.tensor(tail_index, dtype=torch.long),
        head_index=torch.tensor(head_index, dtype=torch.long),
        batch_known=batch_known,
        head_known=head_known,
    )


def epoch_order(num_examples: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled example order of an epoch: a pure function of (seed, epoch), so a
    resumed run sees exactly the batches an uninterrupted one would."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_examples, generator=gen)


def num_batches(num_examples: int, batch_size: int) -> int:
    """Batches per epoch; the last, partial batch is dropped when another batch precedes it."""
    return max(1, num_examples // batch_size)


def batch_triples(examples: torch.Tensor, order: torch.Tensor, index: int, batch_size: int) -> torch.Tensor:
    return examples[order[index * batch_size : (index + 1) * batch_size]]
