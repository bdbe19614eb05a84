"""Extra negatives kept across batches: SimKGC's pre-batch queue, a MoCo queue, and the EMA update.

Both queues hold detached float32 embeddings together with the entity id of each row, so the
trainer can mark rows that are known true answers of a query (``ContrastiveInputs.queue_known``).
Their ``state_dict()`` holds only tensors and ints, so it survives
``torch.save`` / ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from collections import deque

import torch
from torch import nn

from kgc.errors import KGCError


def _checked(embeddings: torch.Tensor, entity_ids: torch.Tensor, dim: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate one pushed batch; return it detached, embeddings as float32 and ids as int64."""
    if embeddings.dim() != 2:
        raise KGCError(f"queue embeddings must be [B, d]; got {tuple(embeddings.shape)}")
    ids = torch.as_tensor(entity_ids)
    if ids.dim() != 1 or ids.shape[0] != embeddings.shape[0]:
        raise KGCError(f"entity_ids must be [B] with B = {embeddings.shape[0]}; got {tuple(ids.shape)}")
    if dim is not None and embeddings.shape[1] != dim:
        raise KGCError(f"queue holds {dim}-dimensional embeddings; got {embeddings.shape[1]}")
    return embeddings.detach().to(torch.float32), ids.detach().to(device=embeddings.device, dtype=torch.long)


class PreBatchQueue:
    """The tail embeddings of the previous ``num_batches`` batches (SimKGC's pre-batch negatives).

    Whole batches are stored, oldest first, and the oldest batch is dropped when a new one would
    exceed ``num_batches``; batches may differ in size. With ``num_batches == 0`` the queue stays
    empty. Embeddings are stored detached in float32, on the device they were pushed from (the
    stored rows follow a push from another device).

    Example::

        queue = PreBatchQueue(num_batches=2)
        queue.push(tail_embeddings, tail_ids)      # after the optimiser step of a batch
        extra = queue.embeddings()                 # [K, d] or None, rows oldest first
        ids = queue.entity_ids()                   # [K] or None, for queue_known
    """

    def __init__(self, num_batches: int):
        if int(num_batches) < 0:
            raise KGCError(f"num_batches must be >= 0; got {num_batches}")
        self.num_batches = int(num_batches)
        self._batches: deque[tuple[torch.Tensor, torch.Tensor]] = deque()

    def __len__(self) -> int:
        return sum(e.shape[0] for e, _ in self._batches)

    def _dim(self) -> int | None:
        return self._batches[0][0].shape[1] if self._batches else None

    def push(self, embeddings: torch.Tensor, entity_ids: torch.Tensor) -> None:
        """Append one batch (dropping the oldest one when full)."""
        if self.num_batches == 0:
            return
        emb, ids = _checked(embeddings, entity_ids, self._dim())
        if self._batches and self._batches[0][0].device != emb.device:
            self._batches = deque((e.to(emb.device), i.to(emb.device)) for e, i in self._batches)
        self._batches.append((emb, ids))
        while len(self._batches) > self.num_batches:
            self._batches.popleft()

    def embeddings(self) -> torch.Tensor | None:
        """``[K, d]`` float32 rows, oldest batch first; None when empty."""
        if not self._batches:
            return None
        return torch.cat([e for e, _ in self._batches])

    def entity_ids(self) -> torch.Tensor | None:
        """``[K]`` int64 entity ids aligned with :meth:`embeddings`; None when empty."""
        if not self._batches:
            return None
        return torch.cat([i for _, i in self._batches])

    def clear(self) -> None:
        self._batches.clear()

    def state_dict(self) -> dict:
        """``{"num_batches": int, "embeddings": [K, d], "entity_ids": [K], "batch_sizes": [n]}`` (tensors on CPU)."""
        sizes = [e.shape[0] for e, _ in self._batches]
        emb = self.embeddings()
        ids = self.entity_ids()
        return {
            "num_batches": self.num_batches,
            "embeddings": emb.cpu() if emb is not None else torch.zeros(0, 0),
            "entity_ids": ids.cpu() if ids is not None else torch.zeros(0, dtype=torch.long),
            "batch_sizes": torch.tensor(sizes, dtype=torch.long),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore the stored batches (keeping this queue's ``num_batches``: only the newest batches
        are kept if the saved queue held more)."""
        try:
            emb, ids, sizes = state["embeddings"], state["entity_ids"], state["batch_sizes"]
        except (KeyError, TypeError) as err:
            raise KGCError(f"not a PreBatchQueue state: missing {err}") from err
        sizes = [int(s) for s in torch.as_tensor(sizes).tolist()]
        if sum(sizes) != ids.shape[0] or (sizes and emb.shape[0] != ids.shape[0]):
            raise KGCError("corrupt PreBatchQueue state: batch sizes do not match the stored rows")
        self.clear()
        start = 0
        for size in sizes:
            self.push(emb[start : start + size], ids[start : start + size])
            start += size


class MomentumQueue:
    """A MoCo ring buffer of the last ``size`` embeddings and their entity ids.

    Source: He et al., "Momentum Contrast for Unsupervised Visual Representation Learning",
    CVPR 2020: negatives come from a slowly moving (EMA, see :func:`ema_update`) copy of the entity
    encoder, so a large queue stays consistent across steps. Each push overwrites the oldest rows;
    a push larger than ``size`` keeps only its last ``size`` rows. The buffer is allocated at the
    first push (on that push's device). ``size == 0`` keeps the queue empty.

    Example::

        queue = MomentumQueue(size=4096)
        with torch.no_grad():
            ema_update(momentum_encoder, encoder, momentum=0.999)
            queue.push(momentum_encoder(tail_batch), tail_ids)
        extra = queue.embeddings()                 # [min(pushed, size), d] or None, oldest first
    """

    def __init__(self, size: int):
        if int(size) < 0:
            raise KGCError(f"size must be >= 0; got {size}")
        self.size = int(size)
        self._emb: torch.Tensor | None = None
        self._ids: torch.Tensor | None = None
        self._ptr = 0  # next row to write
        self._filled = 0

    def __len__(self) -> int:
        return self._filled

    def push(self, embeddings: torch.Tensor, entity_ids: torch.Tensor) -> None:
        """Write one batch over the oldest rows."""
        if self.size == 0:
            return
        emb, ids = _checked(embeddings, entity_ids, None if self._emb is None else self._emb.shape[1])
        if self._emb is None:
            self._emb = torch.zeros(self.size, emb.shape[1], dtype=torch.float32, device=emb.device)
            self._ids = torch.zeros(self.size, dtype=torch.long, device=emb.device)
        elif self._emb.device != emb.device:
            self._emb, self._ids = self._emb.to(emb.device), self._ids.to(emb.device)
        if emb.shape[0] > self.size:
            emb, ids = emb[-self.size :], ids[-self.size :]
        n = emb.shape[0]
        rows = (self._ptr + torch.arange(n, device=emb.device)) % self.size
        self._emb[rows] = emb
        self._ids[rows] = ids
        self._ptr = (self._ptr + n) % self.size
        self._filled = min(self.size, self._filled + n)

    def _order(self) -> torch.Tensor:
        """Buffer rows in the order they were written, oldest first."""
        start = (self._ptr - self._filled) % self.size
        return (start + torch.arange(self._filled, device=self._emb.device)) % self.size

    def embeddings(self) -> torch.Tensor | None:
        """``[n, d]`` float32 rows, oldest first (``n = len(self)``); None when empty."""
        if self._filled == 0:
            return None
        return self._emb[self._order()]

    def entity_ids(self) -> torch.Tensor | None:
        """``[n]`` int64 entity ids aligned with :meth:`embeddings`; None when empty."""
        if self._filled == 0:
            return None
        return self._ids[self._order()]

    def clear(self) -> None:
        self._emb = self._ids = None
        self._ptr = self._filled = 0

    def state_dict(self) -> dict:
        """``{"size": int, "embeddings": [n, d], "entity_ids": [n]}``, rows oldest first, on CPU."""
        emb, ids = self.embeddings(), self.entity_ids()
        return {
            "size": self.size,
            "embeddings": emb.cpu() if emb is not None else torch.zeros(0, 0),
            "entity_ids": ids.cpu() if ids is not None else torch.zeros(0, dtype=torch.long),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore the rows (keeping this queue's ``size``: only the newest rows if it is smaller)."""
        try:
            emb, ids = state["embeddings"], state["entity_ids"]
        except (KeyError, TypeError) as err:
            raise KGCError(f"not a MomentumQueue state: missing {err}") from err
        if ids.shape[0] != 0 and emb.shape[0] != ids.shape[0]:
            raise KGCError("corrupt MomentumQueue state: embeddings and entity ids differ in length")
        self.clear()
        if ids.shape[0] > 0:
            self.push(emb, ids)


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, momentum: float = 0.999) -> None:
    """Move ``target`` towards ``source``: ``p_t ← m·p_t + (1 − m)·p_s`` for every parameter.

    Buffers (e.g. batch-norm statistics, position ids) are copied from ``source``. Both modules
    must have the same parameter and buffer names and shapes. ``momentum=0`` copies ``source``;
    ``momentum=1`` leaves ``target`` unchanged.
    """
    if not 0.0 <= momentum <= 1.0:
        raise KGCError(f"momentum must be in [0, 1]; got {momentum}")
    target_params = dict(target.named_parameters())
    source_params = dict(source.named_parameters())
    target_buffers = dict(target.named_buffers())
    source_buffers = dict(source.named_buffers())
    if target_params.keys() != source_params.keys() or target_buffers.keys() != source_buffers.keys():
        raise KGCError("ema_update: target and source modules have different parameters or buffers")
    for name, p_t in target_params.items():
        p_s = source_params[name]
        if p_t.shape != p_s.shape:
            raise KGCError(f"ema_update: shape mismatch for {name}: {tuple(p_t.shape)} vs {tuple(p_s.shape)}")
        if torch.is_floating_point(p_t):
            p_t.mul_(momentum).add_(p_s.detach().to(p_t.dtype), alpha=1.0 - momentum)
        else:
            p_t.copy_(p_s)
    for name, b_t in target_buffers.items():
        b_t.copy_(source_buffers[name])
