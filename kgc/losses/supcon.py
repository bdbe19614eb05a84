"""Supervised contrastive loss: every known true answer in the batch is a positive."""

from __future__ import annotations

import torch
from torch import nn

from kgc.losses.infonce import LearnableTemperature
from kgc.losses.inputs import ContrastiveInputs, candidate_table


class SupConLoss(nn.Module):
    """Supervised contrastive loss (``L_out`` form) over the batch's candidates.

    Source: Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020.

    Inputs: a :class:`~kgc.losses.inputs.ContrastiveInputs` with L2-normalised ``query`` and
    ``tails``; optional ``queue`` and ``heads``.

    KG view: a 1-to-N relation gives a query several correct tails. :class:`InfoNCELoss` *masks* the
    other correct tails that happen to share the batch (they are neither pulled nor pushed). This
    loss instead turns the 1-to-N relations of the KG into multiple positives: every candidate known
    to be a true answer of query ``i`` — its gold tail, any in-batch tail with ``batch_known`` True,
    any queue row with ``queue_known`` True — is pulled towards the query.

    Formula: with cosine scores ``s``, temperature ``τ`` and the positive set ``P(i)``,
    ``L_i = −(1/|P(i)|)·Σ_{p∈P(i)} log( exp(s_ip/τ) / Σ_a exp(s_ia/τ) )``, where ``a`` runs over all
    candidates of query ``i``: the ``B`` in-batch tails, the queue rows and the query's own head
    (the head only when it is not itself a true answer; a head that is a true answer is left out
    of both sums). The loss is the mean of ``L_i`` over the batch. ``P(i)`` always holds the gold
    tail, so it is never empty. The temperature is learnt as ``log(1/τ)`` (``1/τ`` ≤ 100) unless
    ``learn_temperature=False``.

    When to use: datasets with many 1-to-N / N-to-N relations (e.g. FB15k-237, UMLS) where batches
    often hold several answers of one query. With one known answer per query it equals
    :class:`InfoNCELoss` with ``margin=0``, ``prebatch_weight=1`` and ``symmetric=False``.

    Args:
        temperature: initial ``τ`` (must be ≥ 0.01).
        learn_temperature: learn ``τ`` (else it stays fixed, ``requires_grad=False``).

    Example::

        loss_fn = SupConLoss(temperature=0.05)
        inputs = ContrastiveInputs(query=q, tails=t, batch_known=known)
        loss = loss_fn(inputs)
        loss.backward()
        print(loss_fn.temperature)
    """

    def __init__(self, temperature: float = 0.05, learn_temperature: bool = True):
        super().__init__()
        self.initial_temperature = float(temperature)
        self.learn_temperature = bool(learn_temperature)
        self.tau = LearnableTemperature(temperature, learn_temperature)

    @property
    def temperature(self) -> float:
        """The current temperature ``τ``."""
        return self.tau.value

    def get_config_dict(self) -> dict:
        """Constructor arguments (``temperature`` is the initial value; see :attr:`temperature`)."""
        return {"temperature": self.initial_temperature, "learn_temperature": self.learn_temperature}

    def forward(self, inputs: ContrastiveInputs) -> torch.Tensor:
        table = candidate_table(inputs, "cosine")
        logits = table.values * self.tau.inverse()
        positive = table.known.clone()
        excluded = torch.zeros_like(positive)
        if table.has_self:
            # A head that is a true answer is neither a positive nor part of the denominator.
            excluded[:, -1] = positive[:, -1]
            positive[:, -1] = False
        logits = logits.masked_fill(excluded, float("-inf"))
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        log_prob = torch.where(positive, log_prob, torch.zeros_like(log_prob))
        per_query = -log_prob.sum(dim=1) / positive.sum(dim=1).to(log_prob.dtype)
        return per_query.mean()
