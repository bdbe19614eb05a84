"""Triplet margin loss on cosine scores, over all negatives or the hardest one per query."""

from __future__ import annotations

import torch
from torch import nn

from kgc.errors import KGCError
from kgc.losses.inputs import ContrastiveInputs, candidate_table, connected_zero

MINING = ("all", "hardest")


class TripletLoss(nn.Module):
    """Triplet ranking loss: each negative must score at least ``margin`` below the positive.

    Source: the hinge ranking loss of Weinberger & Saul (large-margin nearest neighbours, JMLR 2009),
    popularised for embeddings by Schroff et al., "FaceNet", CVPR 2015 (which also introduced
    hardest-negative mining); here on cosine scores as in TransE-style KG ranking losses.

    Inputs: a :class:`~kgc.losses.inputs.ContrastiveInputs` with L2-normalised ``query`` and
    ``tails``. The positive of query ``i`` is ``t_i``; its negatives are the in-batch tails not
    known to be true, the queue rows not known to be true and its own head unless that head is a
    true answer.

    Formula: ``ℓ(i, n) = max(0, m + s(q_i, n) − s(q_i, t_i))`` for each valid (query, negative) pair.
    With ``mining="all"`` the loss is the mean of ``ℓ`` over all valid pairs of the batch; with
    ``mining="hardest"`` only the highest-scoring valid negative of each query counts and the loss
    is the mean over the queries that have at least one. A batch without any valid negative gives
    0 (still connected to the graph, so ``backward()`` works).

    When to use: a margin baseline without temperature. ``"hardest"`` learns faster on easy data
    but is sensitive to unlabelled false negatives; ``"all"`` is steadier. :class:`InfoNCELoss`
    weighs all negatives by how hard they are and is usually better.

    Args:
        margin: required gap ``m`` between positive and negative cosine scores.
        mining: ``"all"`` or ``"hardest"``.

    Example::

        loss_fn = TripletLoss(margin=0.1, mining="hardest")
        inputs = ContrastiveInputs(query=q, tails=t, batch_known=known)
        loss = loss_fn(inputs)
        loss.backward()
        print(loss_fn.get_config_dict())
    """

    def __init__(self, margin: float = 0.1, mining: str = "all"):
        super().__init__()
        if mining not in MINING:
            raise KGCError(f"unknown mining '{mining}' (valid: {', '.join(MINING)})")
        self.margin = float(margin)
        self.mining = mining

    def get_config_dict(self) -> dict:
        return {"margin": self.margin, "mining": self.mining}

    def forward(self, inputs: ContrastiveInputs) -> torch.Tensor:
        table = candidate_table(inputs, "cosine")
        scores = table.values
        negative = table.negative
        if not bool(negative.any()):
            return connected_zero(inputs)
        positive = scores[table.target].unsqueeze(1)  # [B, 1]: s(q_i, t_i)
        if self.mining == "hardest":
            has_negative = negative.any(dim=1)
            hardest = scores.masked_fill(~negative, float("-inf")).amax(dim=1, keepdim=True)
            hinge = (self.margin + hardest - positive).clamp_min(0.0)
            return hinge[has_negative].mean()
        hinge = (self.margin + scores - positive).clamp_min(0.0)
        return hinge[negative].mean()
