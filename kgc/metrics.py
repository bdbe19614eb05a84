"""Ranks -> link-prediction metrics.

From the rank of each query's true answer (see :mod:`kgc.ranks`):

* ``mrr``: mean reciprocal rank, ``mean(1 / rank)``, in ``(0, 1]``, higher is better;
* ``mr``: mean rank, ``mean(rank)``, at least 1, lower is better;
* ``hits@k``: fraction of queries whose rank is at most ``k``;
* ``count``: number of queries.

The headline numbers are computed from the **realistic** rank (the mean of the optimistic
and the pessimistic rank, i.e. the expected rank when ties are broken at random). The
optimistic rank flatters a model that gives many candidates the same score (in the
extreme, a model scoring everything equally would get a perfect MRR), while the
pessimistic rank punishes such a model as if it always lost every tie; the realistic rank
is the fair middle. The optimistic and pessimistic metrics are still reported in
sub-blocks, and a large gap between them shows that ties matter for a model.

Note that ``hits@k`` of the realistic rank counts a query when its *expected* rank is at
most ``k`` (a realistic rank of 1.5 is not a hit at 1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import torch

from kgc.errors import KGCError

if TYPE_CHECKING:  # pragma: no cover
    from kgc.ranks import RankResult

__all__ = ["rank_metrics", "summarize", "combine_directions"]


def _check_ks(ks: Iterable[int]) -> list[int]:
    out = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise KGCError(f"hits@k needs integers k >= 1, got {k!r}")
        out.append(k)
    return out


def rank_metrics(ranks: torch.Tensor, ks=(1, 3, 10)) -> dict:
    """MRR, MR, hits@k and count of a 1-D collection of ranks (each >= 1).

    Returns ``{"mrr", "mr", "hits@<k>" for each k, "count"}`` as Python floats (``count`` an
    int). Empty input or a rank that is not a finite number >= 1 raises :class:`KGCError`.
    """
    ks = _check_ks(ks)
    r = torch.as_tensor(ranks).to(torch.float64).reshape(-1)
    if r.numel() == 0:
        raise KGCError("cannot compute metrics of an empty set of ranks")
    if not bool(torch.isfinite(r).all()):
        raise KGCError("ranks must be finite numbers (got NaN or inf)")
    if float(r.min()) < 1:
        raise KGCError(f"ranks must be >= 1, got a rank of {float(r.min())}")
    out: dict = {
        "mrr": float(r.reciprocal().mean()),
        "mr": float(r.mean()),
    }
    for k in ks:
        out[f"hits@{k}"] = float((r <= k).to(torch.float64).mean())
    out["count"] = int(r.numel())
    return out


def _summary(optimistic, pessimistic, realistic, ks) -> dict:
    out = rank_metrics(realistic, ks)
    out["rank"] = "realistic"
    out["optimistic"] = rank_metrics(optimistic, ks)
    out["pessimistic"] = rank_metrics(pessimistic, ks)
    return out


def summarize(result: "RankResult", ks=(1, 3, 10)) -> dict:
    """Metrics of one :class:`~kgc.ranks.RankResult`.

    The top level holds the metrics of the realistic rank (the headline) and
    ``"rank": "realistic"``; the sub-blocks ``"optimistic"`` and ``"pessimistic"`` hold the
    same metrics for the other two rank semantics.
    """
    return _summary(result.optimistic, result.pessimistic, result.realistic, ks)


def combine_directions(forward: "RankResult", backward: "RankResult", ks=(1, 3, 10)) -> dict:
    """The body of ``metrics.json`` for a run evaluated in both directions.

    The top level summarizes all queries of both directions together (so each metric is
    the count-weighted mean of the two directions' metrics; with as many forward as
    backward queries, the plain average), as :func:`summarize` does; ``"forward"`` and
    ``"backward"`` hold :func:`summarize` of each direction alone.
    """
    out = _summary(
        torch.cat([forward.optimistic, backward.optimistic]),
        torch.cat([forward.pessimistic, backward.pessimistic]),
        torch.cat([forward.realistic, backward.realistic]),
        ks,
    )
    out["forward"] = summarize(forward, ks)
    out["backward"] = summarize(backward, ks)
    return out
