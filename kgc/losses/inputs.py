"""The one input every contrastive loss of :mod:`kgc.losses` takes, and the candidate table built from it.

A batch holds ``B`` queries ``(head, relation)`` and their ``B`` gold tails. Every query is scored
against three groups of candidates, in this column order:

1. the ``B`` tails of the batch (column ``i`` is the gold tail of query ``i``);
2. the ``K`` rows of an optional queue of extra negatives (pre-batch or momentum queue);
3. optionally, the query's own head entity (a "self-negative", one column).

A candidate known to be a true answer of the query (``batch_known`` / ``queue_known`` /
``head_known``) is a *false negative*: no loss may push it away. :func:`candidate_table` gathers
the three groups into one ``[B, C]`` matrix together with the boolean masks each loss needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kgc.errors import KGCError


def as_float(t: torch.Tensor) -> torch.Tensor:
    """Return ``t`` in at least float32 (bf16/fp16 from autocast is upcast; float64 is kept)."""
    if not torch.is_floating_point(t):
        raise KGCError(f"expected a floating-point tensor, got {t.dtype}")
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def no_autocast(device: torch.device):
    """Context in which an enclosing ``torch.autocast`` does not cast matmuls back to bf16/fp16."""
    return torch.autocast(device_type=device.type, enabled=False)


@dataclass
class ContrastiveInputs:
    """Embeddings of one training batch plus the masks that say which candidates are true answers.

    Attributes:
        query: ``[B, d]`` L2-normalised embeddings of the ``(head, relation)`` queries.
        tails: ``[B, d]`` L2-normalised tail embeddings; ``tails[i]`` is the positive of query ``i``
            and every row is an in-batch candidate for every query.
        batch_known: ``[B, B]`` bool, ``[i, j]`` True where ``tails[j]`` is a known true answer of
            query ``i``. The diagonal is treated as True whatever it holds.
        heads: ``[B, d]`` embeddings of each query's own head entity (self-negatives), or None.
        head_known: ``[B]`` bool, True where query ``i``'s head is itself a true answer (then it is
            not used as a negative). None means no head is a true answer.
        queue: ``[K, d]`` extra negatives (pre-batch or momentum queue), detached, or None.
        queue_known: ``[B, K]`` bool, True where ``queue[k]`` is a known true answer of query ``i``.
            None means no queue row is a true answer.

    Shapes are checked on construction; a mismatch raises :class:`~kgc.errors.KGCError`.
    """

    query: torch.Tensor
    tails: torch.Tensor
    batch_known: torch.Tensor
    heads: torch.Tensor | None = None
    head_known: torch.Tensor | None = None
    queue: torch.Tensor | None = None
    queue_known: torch.Tensor | None = None

    def __post_init__(self) -> None:
        q, t = self.query, self.tails
        if q.dim() != 2 or t.shape != q.shape:
            raise KGCError(f"query and tails must both be [B, d]; got {tuple(q.shape)} and {tuple(t.shape)}")
        b, d = q.shape
        if b == 0:
            raise KGCError("a contrastive batch needs at least one query")
        _check_mask("batch_known", self.batch_known, (b, b))
        if self.heads is not None and self.heads.shape != q.shape:
            raise KGCError(f"heads must be [B, d] = {(b, d)}; got {tuple(self.heads.shape)}")
        if self.head_known is not None:
            _check_mask("head_known", self.head_known, (b,))
        if self.queue is not None:
            if self.queue.dim() != 2 or self.queue.shape[1] != d:
                raise KGCError(f"queue must be [K, {d}]; got {tuple(self.queue.shape)}")
            if self.queue_known is not None:
                _check_mask("queue_known", self.queue_known, (b, self.queue.shape[0]))
        elif self.queue_known is not None:
            raise KGCError("queue_known given without a queue")

    @property
    def batch_size(self) -> int:
        return self.query.shape[0]


def _check_mask(name: str, mask: torch.Tensor, shape: tuple[int, ...]) -> None:
    if mask.dtype != torch.bool:
        raise KGCError(f"{name} must be a bool tensor; got {mask.dtype}")
    if tuple(mask.shape) != shape:
        raise KGCError(f"{name} must have shape {shape}; got {tuple(mask.shape)}")


@dataclass
class CandidateTable:
    """Every (query, candidate) pair of a batch, one row per query.

    Attributes:
        values: ``[B, C]`` one number per pair (cosine similarity or squared Euclidean distance),
            in at least float32. Columns: ``B`` in-batch tails, then ``num_queue`` queue rows, then
            one self-negative column when ``has_self``.
        known: ``[B, C]`` bool, True where the candidate is a known true answer of the query
            (the diagonal always is).
        target: ``[B, C]`` bool, True only at ``[i, i]`` (the gold tail of query ``i``).
        num_batch, num_queue, has_self: the sizes of the three column groups.
    """

    values: torch.Tensor
    known: torch.Tensor
    target: torch.Tensor
    num_batch: int
    num_queue: int
    has_self: bool

    @property
    def negative(self) -> torch.Tensor:
        """``[B, C]`` bool: the pairs a loss may push apart (everything not known to be true)."""
        return ~self.known

    @property
    def queue_slice(self) -> slice:
        return slice(self.num_batch, self.num_batch + self.num_queue)


def candidate_table(
    inputs: ContrastiveInputs, metric: str = "cosine", use_self_negatives: bool = True
) -> CandidateTable:
    """Score every query against all its candidates.

    Embeddings are upcast to at least float32 and scored with autocast disabled.

    Args:
        inputs: the batch.
        metric: ``"cosine"`` for the dot product ``q·c`` (the cosine for normalised inputs) or
            ``"sqeuclidean"`` for ``‖q − c‖²``.
        use_self_negatives: add the head column when ``inputs.heads`` is given.
    """
    with no_autocast(inputs.query.device):
        return _candidate_table(inputs, metric, use_self_negatives)


def _candidate_table(inputs: ContrastiveInputs, metric: str, use_self_negatives: bool) -> CandidateTable:
    q = as_float(inputs.query)
    t = as_float(inputs.tails)
    dtype = torch.promote_types(q.dtype, t.dtype)
    q, t = q.to(dtype), t.to(dtype)
    b = q.shape[0]
    eye = torch.eye(b, dtype=torch.bool, device=q.device)

    if metric == "cosine":
        def pair(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            return a @ c.T

        def rowwise(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            return (a * c).sum(-1)
    elif metric == "sqeuclidean":
        def pair(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            # ‖a‖² + ‖c‖² − 2 a·c; rounding can make it slightly negative, hence the clamp.
            sq = (a * a).sum(-1, keepdim=True) + (c * c).sum(-1) - 2.0 * (a @ c.T)
            return sq.clamp_min(0.0)

        def rowwise(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            return ((a - c) ** 2).sum(-1)
    else:
        raise KGCError(f"unknown metric '{metric}' (valid: cosine, sqeuclidean)")

    values = [pair(q, t)]
    known = [inputs.batch_known.to(q.device) | eye]
    num_queue = 0
    if inputs.queue is not None and inputs.queue.shape[0] > 0:
        queue = as_float(inputs.queue).detach().to(device=q.device, dtype=q.dtype)
        num_queue = queue.shape[0]
        values.append(pair(q, queue))
        if inputs.queue_known is not None:
            known.append(inputs.queue_known.to(q.device))
        else:
            known.append(torch.zeros(b, num_queue, dtype=torch.bool, device=q.device))
    has_self = use_self_negatives and inputs.heads is not None
    if has_self:
        h = as_float(inputs.heads).to(dtype=q.dtype)
        values.append(rowwise(q, h).unsqueeze(1))
        if inputs.head_known is not None:
            known.append(inputs.head_known.to(q.device).unsqueeze(1))
        else:
            known.append(torch.zeros(b, 1, dtype=torch.bool, device=q.device))
    known_all = torch.cat(known, dim=1)
    target = torch.zeros_like(known_all)
    target[:, :b] = eye
    return CandidateTable(torch.cat(values, dim=1), known_all, target, b, num_queue, has_self)


def connected_zero(inputs: ContrastiveInputs) -> torch.Tensor:
    """A float zero that depends on the embeddings, so ``backward()`` works when nothing is left to learn."""
    return (as_float(inputs.query) * 0.0).sum() + (as_float(inputs.tails) * 0.0).sum()
