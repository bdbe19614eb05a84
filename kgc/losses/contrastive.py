"""Pairwise contrastive loss of Hadsell, Chopra & LeCun (DrLIM) on Euclidean distances."""

from __future__ import annotations

import torch
from torch import nn

from kgc.errors import KGCError
from kgc.losses.inputs import ContrastiveInputs, candidate_table

# Distances are sqrt(max(D², EPS)): the gradient of sqrt is infinite at 0 (a query equal to a negative).
_EPS = 1e-12


class ContrastiveLoss(nn.Module):
    """Margin-based pairwise loss: pull similar pairs together, push dissimilar ones beyond a margin.

    Source: Hadsell, Chopra & LeCun, "Dimensionality Reduction by Learning an Invariant Mapping",
    CVPR 2006 (DrLIM).

    Inputs: a :class:`~kgc.losses.inputs.ContrastiveInputs`; embeddings need not be normalised (the
    distance is computed from the vectors). Similar pairs are ``(q_i, t_i)``; dissimilar pairs are
    ``(q_i, t_j)`` for ``j ≠ i`` not known to be true, plus ``(q_i, queue_k)`` and ``(q_i, h_i)``
    when a queue / heads are given, with known true answers skipped in the same way.

    Formula: for a pair at Euclidean distance ``D`` with label ``Y`` (0 similar, 1 dissimilar) the
    paper's term is ``(1 − Y)·½·D² + Y·½·max(0, m − D)²``. Here the terms are averaged separately
    over the ``B`` similar pairs and over the ``N`` dissimilar pairs, and the two means are added, so
    both groups weigh the same however many negatives the batch holds:
    ``L = (1/B)·Σ ½·D⁺² + (1/N)·Σ ½·max(0, m − D⁻)²`` (the second mean is 0 when ``N = 0``).
    ``D`` is computed as ``sqrt(max(D², 1e-12))`` so a negative equal to its query has a finite
    gradient.

    When to use: a simple, temperature-free baseline whose negatives act independently; it ignores
    how negatives rank against each other, so it usually trails :class:`InfoNCELoss`. For unit
    vectors ``D ∈ [0, 2]`` and ``D² = 2 − 2·cos``, so ``margin`` lives on that scale.

    Args:
        margin: distance ``m`` beyond which a dissimilar pair costs nothing.

    Example::

        loss_fn = ContrastiveLoss(margin=0.5)
        inputs = ContrastiveInputs(query=q, tails=t, batch_known=known)
        loss = loss_fn(inputs)
        loss.backward()
        print(loss_fn.get_config_dict())
    """

    def __init__(self, margin: float = 0.5):
        super().__init__()
        if margin < 0:
            raise KGCError(f"margin must be >= 0; got {margin}")
        self.margin = float(margin)

    def get_config_dict(self) -> dict:
        return {"margin": self.margin}

    def forward(self, inputs: ContrastiveInputs) -> torch.Tensor:
        table = candidate_table(inputs, "sqeuclidean")
        sq = table.values
        positive_term = 0.5 * sq[table.target].mean()
        negative = table.negative
        if not bool(negative.any()):
            return positive_term
        dist = sq[negative].clamp_min(_EPS).sqrt()
        negative_term = 0.5 * (self.margin - dist).clamp_min(0.0).pow(2).mean()
        return positive_term + negative_term
