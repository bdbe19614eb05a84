"""Pairwise sigmoid loss (SigLIP) with learnable scale and bias."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kgc.errors import KGCError
from kgc.losses.inputs import ContrastiveInputs, candidate_table


class SigmoidLoss(nn.Module):
    """Sigmoid loss: every (query, candidate) pair is an independent binary classification.

    Source: Zhai, Mustafa, Kolesnikov & Beyer, "Sigmoid Loss for Language Image Pre-Training",
    ICCV 2023 (SigLIP).

    Inputs: a :class:`~kgc.losses.inputs.ContrastiveInputs` with L2-normalised ``query`` and
    ``tails``; queue rows and the query's own head (when given) are extra negative columns.

    Formula: ``z_ij = exp(t')·s_ij + b`` with cosine score ``s_ij``, learnable log-scale ``t'``
    (initialised to ``log(temperature)``) and learnable bias ``b``. The label is ``+1`` for the gold
    tail and ``−1`` for every negative; candidates known to be true answers (other than the gold
    tail) are left out of the sum, counted neither as positives nor as negatives. As in the paper
    the sum runs over all kept pairs and is divided by the batch size:
    ``L = −(1/B)·Σ_i Σ_j log σ(label_ij · z_ij)``. The negative bias (−10 by default) keeps the
    start of training from being dominated by the many easy negatives.

    When to use: no softmax over the batch, so the loss of a row does not depend on how many
    negatives it has; it works with small batches and needs no global normalisation. With large
    batches and many negatives :class:`InfoNCELoss` is usually at least as good.

    Args:
        temperature: initial scale ``exp(t')`` (the paper's ``t``; 10 by default).
        bias: initial bias ``b``.
        learnable: learn ``t'`` and ``b`` (else both stay fixed, ``requires_grad=False``).

    Example::

        loss_fn = SigmoidLoss(temperature=10.0, bias=-10.0)
        inputs = ContrastiveInputs(query=q, tails=t, batch_known=known)
        loss = loss_fn(inputs)
        loss.backward()
        print(loss_fn.get_config_dict())
    """

    def __init__(self, temperature: float = 10.0, bias: float = -10.0, learnable: bool = True):
        super().__init__()
        if not temperature > 0:
            raise KGCError(f"temperature (the logit scale) must be > 0; got {temperature}")
        self.initial_temperature = float(temperature)
        self.initial_bias = float(bias)
        self.learnable = bool(learnable)
        self.log_scale = nn.Parameter(torch.tensor(math.log(temperature)), requires_grad=learnable)
        self.bias = nn.Parameter(torch.tensor(float(bias)), requires_grad=learnable)

    @property
    def scale(self) -> float:
        """The current logit scale ``exp(t')``."""
        return math.exp(self.log_scale.item())

    def get_config_dict(self) -> dict:
        """Constructor arguments (initial values of the learnable scale and bias)."""
        return {"temperature": self.initial_temperature, "bias": self.initial_bias, "learnable": self.learnable}

    def forward(self, inputs: ContrastiveInputs) -> torch.Tensor:
        table = candidate_table(inputs, "cosine")
        logits = self.log_scale.exp() * table.values + self.bias
        labels = torch.where(table.target, 1.0, -1.0).to(logits.dtype)
        kept = table.target | table.negative
        pair_loss = -F.logsigmoid(labels * logits)
        return torch.where(kept, pair_loss, torch.zeros_like(pair_loss)).sum() / table.num_batch
