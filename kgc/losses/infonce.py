"""InfoNCE with additive margin, learnable temperature and SimKGC's three kinds of negatives."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kgc.errors import KGCError
from kgc.losses.inputs import ContrastiveInputs, candidate_table

MAX_INVERSE_TEMPERATURE = 100.0


class LearnableTemperature(nn.Module):
    """A temperature ``τ`` kept as the parameter ``log(1/τ)``, with ``1/τ`` capped at 100.

    With ``learnable=False`` the parameter exists (so checkpoints look the same) but has
    ``requires_grad=False``. The cap is enforced by clamping the parameter in place before each use,
    so the optimiser can never leave it in a region where its gradient is zero.
    """

    def __init__(self, temperature: float, learnable: bool = True):
        super().__init__()
        if not temperature > 0:
            raise KGCError(f"temperature must be > 0; got {temperature}")
        if 1.0 / temperature > MAX_INVERSE_TEMPERATURE:
            raise KGCError(f"temperature must be >= {1.0 / MAX_INVERSE_TEMPERATURE}; got {temperature}")
        self.log_inv_t = nn.Parameter(torch.tensor(math.log(1.0 / temperature)), requires_grad=learnable)

    def inverse(self) -> torch.Tensor:
        """``1/τ`` as a scalar tensor (differentiable when learnable)."""
        with torch.no_grad():
            self.log_inv_t.clamp_(max=math.log(MAX_INVERSE_TEMPERATURE))
        return self.log_inv_t.exp()

    @property
    def value(self) -> float:
        return 1.0 / min(math.exp(self.log_inv_t.item()), MAX_INVERSE_TEMPERATURE)


class InfoNCELoss(nn.Module):
    """InfoNCE (cross-entropy over candidates) with an additive margin — SimKGC's training objective.

    Source: Wang et al., "SimKGC: Simple Contrastive Knowledge Graph Completion with Pre-trained
    Language Models", ACL 2022 (InfoNCE itself: van den Oord et al., 2018).

    Inputs: a :class:`~kgc.losses.inputs.ContrastiveInputs` with L2-normalised ``query`` and
    ``tails`` (``[B, d]``); optional ``queue`` (pre-batch or momentum negatives) and ``heads``
    (self-negatives) with their ``*_known`` masks.

    Formula: with cosine scores ``s`` and temperature ``τ``, row ``i`` of the logits holds
    ``(s(q_i, t_j) − γ·[i = j]) / τ`` for the ``B`` in-batch tails, ``w · s(q_i, k) / τ`` for each queue
    row ``k`` (SimKGC scales pre-batch logits by ``w = prebatch_weight``) and ``s(q_i, h_i) / τ`` for
    the query's own head. Every candidate known to be a true answer of query ``i`` (other than its
    gold tail) is removed from the row (its logit is set to −inf). The loss is the cross-entropy
    with target column ``i``, averaged over the batch; with ``symmetric=True`` the cross-entropy of
    the transposed in-batch block is added (each tail must pick its own query among the batch's
    queries, with the same margin and the same false-negative mask), as SimKGC does. ``τ`` is learnt
    as ``log(1/τ)`` when ``learn_temperature`` (``1/τ`` is capped at 100).

    When to use: the default and the strongest choice when batches are large (hundreds of
    negatives). Prefer :class:`SupConLoss` when many relations are 1-to-N and batches often hold
    several true answers of one query; :class:`SigmoidLoss` when batches are small or must be split
    over devices; :class:`TripletLoss` / :class:`ContrastiveLoss` as simple margin baselines.

    Args:
        margin: additive margin ``γ`` subtracted from the positive's score.
        temperature: initial ``τ`` (must be ≥ 0.01).
        learn_temperature: learn ``τ`` (else it stays fixed, ``requires_grad=False``).
        prebatch_weight: factor ``w`` on the queue logits.
        use_self_negatives: add the query's head as a negative when ``inputs.heads`` is given.
        symmetric: add the tail → query cross-entropy over the in-batch block.

    Example::

        loss_fn = InfoNCELoss(margin=0.02, temperature=0.05)
        inputs = ContrastiveInputs(query=q, tails=t, batch_known=known)
        loss = loss_fn(inputs)
        loss.backward()
        print(loss_fn.temperature)
    """

    def __init__(
        self,
        margin: float = 0.02,
        temperature: float = 0.05,
        learn_temperature: bool = True,
        prebatch_weight: float = 0.5,
        use_self_negatives: bool = True,
        symmetric: bool = True,
    ):
        super().__init__()
        self.margin = float(margin)
        self.initial_temperature = float(temperature)
        self.learn_temperature = bool(learn_temperature)
        self.prebatch_weight = float(prebatch_weight)
        self.use_self_negatives = bool(use_self_negatives)
        self.symmetric = bool(symmetric)
        self.tau = LearnableTemperature(temperature, learn_temperature)

    @property
    def temperature(self) -> float:
        """The current temperature ``τ``."""
        return self.tau.value

    def get_config_dict(self) -> dict:
        """Constructor arguments (``temperature`` is the initial value; see :attr:`temperature`)."""
        return {
            "margin": self.margin,
            "temperature": self.initial_temperature,
            "learn_temperature": self.learn_temperature,
            "prebatch_weight": self.prebatch_weight,
            "use_self_negatives": self.use_self_negatives,
            "symmetric": self.symmetric,
        }

    def forward(self, inputs: ContrastiveInputs) -> torch.Tensor:
        table = candidate_table(inputs, "cosine", self.use_self_negatives)
        b = table.num_batch
        inv_t = self.tau.inverse()
        scores = table.values - self.margin * table.target.to(table.values.dtype)
        scale = torch.ones(scores.shape[1], dtype=scores.dtype, device=scores.device)
        scale[table.queue_slice] = self.prebatch_weight
        logits = scores * inv_t * scale
        # False negatives leave the softmax entirely; the gold column (diagonal) is never masked.
        logits = logits.masked_fill(table.known & ~table.target, float("-inf"))
        labels = torch.arange(b, device=logits.device)
        loss = F.cross_entropy(logits, labels)
        if self.symmetric:
            loss = loss + F.cross_entropy(logits[:, :b].T, labels)
        return loss
