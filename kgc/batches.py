"""Training batches: a seeded random sample of triples, its token inputs and its masks.

Batch composition stays a uniform random sample of the (forward + inverse) training
triples, because in-batch negatives must be a random sample for the loss. Length only
shapes how a batch is *computed*: its sequences are sorted by length and packed without
padding (only attention works on groups of similar length, each padded to its longest).
Each distinct entity text of a batch (tails and the heads used as self-negatives) is
encoded once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kgc.answers import KnownAnswers
from kgc.lanes import lanes_for
from kgc.tokens import TokenCache


@dataclass
class AttentionGroup:
    """Sequences of similar length that attend together: their tokens are scattered into an
    [n, width] grid (width = the longest of them) for self-attention only."""

    start: int  # first token of the group in the packed order
    end: int  # one past its last token
    num_seqs: int
    width: int
    slots: torch.Tensor  # [end - start] each token's place in the flattened [num_seqs * width] grid
    real: torch.Tensor  # [num_seqs, width] True for a real token, False for padding

    def to(self, device: torch.device) -> "AttentionGroup":
        return AttentionGroup(self.start, self.end, self.num_seqs, self.width,
                              self.slots.to(device, non_blocking=True), self.real.to(device, non_blocking=True))


@dataclass
class TokenBatch:
    """Sequences sorted by length (within each lane, see :mod:`kgc.lanes`) and packed: their
    tokens concatenated without padding.

    Linear layers, layer norms and activations then run on real tokens only; attention
    works group by group (``groups``, each padded to its own longest sequence). ``restore``
    undoes the sort: ``outputs_in_sorted_order[restore]`` is in the original order.
    """

    input_ids: torch.Tensor  # [T] all real tokens, sequence after sequence (sorted order)
    token_type_ids: torch.Tensor  # [T]
    position_ids: torch.Tensor  # [T] 0, 1, ... within each sequence
    sequence: torch.Tensor  # [T] the (sorted) sequence each token belongs to
    seq_lengths: torch.Tensor  # [n] lengths in sorted order
    groups: list[AttentionGroup]
    restore: torch.Tensor  # [n]
    pad_id: int
    lane_groups: list[int]  # groups of each lane: lane k has groups[lane_groups[k]:lane_groups[k + 1]]

    @property
    def lane_tokens(self) -> list[int]:
        """Tokens of each lane (:mod:`kgc.lanes`), in packed order."""
        return [sum(g.end - g.start for g in self.groups[a:b]) for a, b in zip(self.lane_groups, self.lane_groups[1:])]

    @property
    def lengths(self) -> list[int]:
        """Real length of each sequence, in the original order."""
        return self.seq_lengths[self.restore].tolist()

    @property
    def num_tokens(self) -> int:
        return len(self.input_ids)

    @classmethod
    def build(cls, ids: list[tuple[int, ...]], types: list[tuple[int, ...]], pad_id: int,
              group_size: int, lanes: int = 1) -> "TokenBatch":
        """Pack ``ids``/``types`` (one tuple per sequence); ``group_size`` sequences attend per group.

        With ``lanes`` > 1 the length-sorted sequences are dealt round-robin into that many
        lanes (which evens out their tokens), packed lane after lane, each lane sorted and
        cut into its own groups: :mod:`kgc.lanes` encodes each lane on its own core."""
        if any(len(s) == 0 for s in ids):
            raise ValueError("cannot encode an empty sequence")
        by_length = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        lanes = max(1, min(lanes, len(ids)))
        lane_members = [by_length[k::lanes] for k in range(lanes)]
        order = [i for members in lane_members for i in members]
        sorted_lengths = [len(ids[i]) for i in order]
        flat_ids = [tok for i in order for tok in ids[i]]
        flat_types = [tok for i in order for tok in types[i]]
        seq_lengths = torch.tensor(sorted_lengths, dtype=torch.long)
        sequence = torch.repeat_interleave(torch.arange(len(order)), seq_lengths)
        starts = torch.cumsum(seq_lengths, 0) - seq_lengths
        position_ids = torch.arange(len(flat_ids)) - starts[sequence]
        groups, lane_groups, token, lane_start = [], [0], 0, 0
        for members in lane_members:
            for first in range(lane_start, lane_start + len(members), group_size):
                last = min(first + group_size, lane_start + len(members))
                group_lengths = seq_lengths[first:last]
                n, width, size = len(group_lengths), int(group_lengths.max()), int(group_lengths.sum())
                rows = sequence[token : token + size] - first
                cols = position_ids[token : token + size]
                real = torch.zeros(n, width, dtype=torch.bool)
                real[rows, cols] = True
                groups.append(AttentionGroup(token, token + size, n, width, rows * width + cols, real))
                token += size
            lane_start += len(members)
            lane_groups.append(len(groups))
        restore = torch.empty(len(order), dtype=torch.long)
        restore[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))
        return cls(torch.tensor(flat_ids, dtype=torch.long), torch.tensor(flat_types, dtype=torch.long),
                   position_ids, sequence, seq_lengths, groups, restore, pad_id, lane_groups)

    def padded_chunks(self) -> list[dict[str, torch.Tensor]]:
        """One padded ``input_ids``/``attention_mask``/``token_type_ids`` dict per group, for
        encoders that have no packed forward pass (see :mod:`kgc.packed`)."""
        chunks = []
        for g in self.groups:
            def grid(values: torch.Tensor, fill: int) -> torch.Tensor:
                out = torch.full((g.num_seqs * g.width,), fill, dtype=torch.long, device=values.device)
                return out.index_copy(0, g.slots, values[g.start : g.end]).view(g.num_seqs, g.width)

            chunks.append({"input_ids": grid(self.input_ids, self.pad_id), "attention_mask": g.real.long(),
                           "token_type_ids": grid(self.token_type_ids, 0)})
        return chunks

    def __len__(self) -> int:
        return len(self.restore)

    def to(self, device: torch.device) -> "TokenBatch":
        move = lambda t: t.to(device, non_blocking=True)  # noqa: E731
        return TokenBatch(move(self.input_ids), move(self.token_type_ids), move(self.position_ids),
                          move(self.sequence), move(self.seq_lengths), [g.to(device) for g in self.groups],
                          move(self.restore), self.pad_id, self.lane_groups)


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
               self_negatives: bool = True, lanes: int = 1) -> Batch:
    """Assemble one batch from [B, 3] triples (relations already in [0, 2R)); ``lanes``: see
    :mod:`kgc.lanes`."""
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
        queries=TokenBatch.build(q_ids, q_types, tokens.pad_id, chunk_size, lanes_for(len(q_ids), lanes)),
        entities=TokenBatch.build(e_ids, e_types, tokens.pad_id, chunk_size, lanes_for(len(e_ids), lanes)),
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
