"""ARB: pull each side's embeddings towards the nearest orthonormal basis of the other side."""

from __future__ import annotations

import torch
from torch import nn

from kgc.errors import KGCError
from kgc.losses.inputs import as_float, no_autocast


def nearest_orthonormal(z: torch.Tensor) -> torch.Tensor:
    """The matrix with orthonormal rows or columns closest to ``z`` in Frobenius norm (detached).

    With the thin SVD ``z = U S Vᵀ`` it is ``U Vᵀ``. Directions whose singular value is zero (up to
    rounding: below ``max(N, d)·eps·s_max``) are dropped, so for a rank-``r`` matrix the result is
    ``U_r V_rᵀ``: unique, finite, of rank ``r`` (the zero matrix maps to zero).
    """
    z = z.detach()
    u, s, vh = torch.linalg.svd(z, full_matrices=False)
    if s.numel() == 0:
        return torch.zeros_like(z)
    tol = max(z.shape) * torch.finfo(z.dtype).eps * s.max()
    keep = (s > tol).to(z.dtype)
    return (u * keep) @ vh


class ARBRegularizer(nn.Module):
    """Anti-collapse regulariser that aligns query and tail embeddings with each other's basis.

    Source: Zhang et al., "Align Representations with Base: A New Approach to Self-Supervised
    Learning", CVPR 2022 (ARB).

    Inputs: ``query`` and ``tails``, both ``[N, d]`` (row ``i`` of each is a positive pair; normally
    L2-normalised). Not a :class:`~kgc.losses.inputs.ContrastiveInputs` loss: the trainer adds it
    to whichever loss is chosen when ``weight > 0``.

    Formula: for a batch matrix ``Z`` with thin SVD ``Z = U S Vᵀ`` the nearest orthonormal basis at
    the feature level is ``B(Z) = U Vᵀ`` (the closest matrix to ``Z`` with orthonormal rows when
    ``N ≤ d``, orthonormal columns when ``N > d``). The term is
    ``weight · ( ‖Q − B(T)‖²_F / N + ‖T − B(Q)‖²_F / N )``: the queries are pulled towards the tails'
    basis and the tails towards the queries' basis; the bases are constants (no gradient flows
    through the SVD). When ``N ≤ d`` (the usual case: batch smaller than the embedding size) the
    target rows are orthonormal, which spreads the batch over the sphere and counters collapse of
    all embeddings onto a few directions.

    Degenerate batches: the SVD is taken in at least float32 without gradient, and zero singular
    values are dropped (see :func:`nearest_orthonormal`), so a rank-deficient ``Z`` gives a basis of
    its range only, and the value and its gradient stay finite. For ``N = 1`` the basis is the row
    rescaled to unit length, so two normalised embeddings give ``2·‖q − t‖²`` (weighted).

    When to use: as an add-on (``arb_weight`` in the config), mainly with small batches or few
    negatives where the contrastive losses alone let the embeddings collapse.

    Args:
        weight: factor on the term (0 turns it into a zero that still backpropagates).

    Example::

        arb = ARBRegularizer(weight=0.1)
        loss = InfoNCELoss()(inputs)
        loss = loss + arb(inputs.query, inputs.tails)
        loss.backward()
        print(arb.get_config_dict())
    """

    def __init__(self, weight: float = 0.1):
        super().__init__()
        if weight < 0:
            raise KGCError(f"ARB weight must be >= 0; got {weight}")
        self.weight = float(weight)

    def get_config_dict(self) -> dict:
        return {"weight": self.weight}

    def forward(self, query: torch.Tensor, tails: torch.Tensor) -> torch.Tensor:
        if query.dim() != 2 or query.shape != tails.shape or query.shape[0] == 0:
            raise KGCError(
                f"query and tails must both be [N, d] with N > 0; got {tuple(query.shape)}, {tuple(tails.shape)}"
            )
        with no_autocast(query.device):
            q, t = as_float(query), as_float(tails)
            dtype = torch.promote_types(q.dtype, t.dtype)
            q, t = q.to(dtype), t.to(dtype)
            n = q.shape[0]
            term = ((q - nearest_orthonormal(t)) ** 2).sum() / n + ((t - nearest_orthonormal(q)) ** 2).sum() / n
            return self.weight * term
