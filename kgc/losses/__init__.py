"""Training objectives of the bi-encoder; each takes a :class:`ContrastiveInputs` and returns a scalar.

Chosen by the ``loss`` key of the config (its arguments come from the config, extra ones from
``loss_options``):

- ``loss: infonce``     — :class:`InfoNCELoss`: SimKGC's InfoNCE: margin, learnable τ, pre-batch/self-negatives (default).
- ``loss: contrastive`` — :class:`ContrastiveLoss`: Hadsell et al. 2006 pairwise margin loss on Euclidean distances.
- ``loss: triplet``     — :class:`TripletLoss`: hinge between positive and negative scores, all or hardest negatives.
- ``loss: sigmoid``     — :class:`SigmoidLoss`: SigLIP's per-pair sigmoid loss with learnable scale and bias.
- ``loss: supcon``      — :class:`SupConLoss`: supervised contrastive loss, known true answers become extra positives.
- ``arb_weight: 0.1``   — :class:`ARBRegularizer`: ARB anti-collapse term added to any loss when the weight is > 0.
"""

from __future__ import annotations

import inspect

from torch import nn

from kgc.errors import KGCError
from kgc.losses.arb import ARBRegularizer
from kgc.losses.contrastive import ContrastiveLoss
from kgc.losses.infonce import InfoNCELoss
from kgc.losses.inputs import ContrastiveInputs
from kgc.losses.sigmoid import SigmoidLoss
from kgc.losses.supcon import SupConLoss
from kgc.losses.triplet import TripletLoss

LOSSES: dict[str, type[nn.Module]] = {
    "infonce": InfoNCELoss,
    "contrastive": ContrastiveLoss,
    "triplet": TripletLoss,
    "sigmoid": SigmoidLoss,
    "supcon": SupConLoss,
}


def build_loss(name: str, **kwargs) -> nn.Module:
    """Instantiate the loss registered as ``name`` with keyword arguments ``kwargs``.

    Raises :class:`KGCError` for an unknown name (listing the valid ones) or an argument the
    loss does not take (listing the ones it does).
    """
    cls = LOSSES.get(str(name).strip().lower())
    if cls is None:
        raise KGCError(f"unknown loss '{name}'; valid losses: {', '.join(LOSSES)}")
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise KGCError(
            f"loss '{name}' does not take argument(s) {', '.join(unknown)}; it takes: {', '.join(accepted)}"
        )
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise KGCError(f"bad argument for loss '{name}': {err}") from err


__all__ = [
    "LOSSES",
    "build_loss",
    "ContrastiveInputs",
    "InfoNCELoss",
    "ContrastiveLoss",
    "TripletLoss",
    "SigmoidLoss",
    "SupConLoss",
    "ARBRegularizer",
]
