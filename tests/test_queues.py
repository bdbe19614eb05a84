"""Tests of kgc.queues: eviction order, mixed batch sizes, save/load, EMA arithmetic."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from kgc.errors import KGCError
from kgc.queues import MomentumQueue, PreBatchQueue, ema_update


def batch(first_id: int, n: int, d: int = 3, dtype=torch.float32):
    """n rows whose every value is the row's entity id, so order is easy to read back."""
    ids = torch.arange(first_id, first_id + n)
    return ids.to(dtype).unsqueeze(1).repeat(1, d), ids


def round_trip(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


# ----------------------------------------------------------------------------- PreBatchQueue


def test_prebatch_empty_and_disabled():
    q = PreBatchQueue(2)
    assert len(q) == 0 and q.embeddings() is None and q.entity_ids() is None
    off = PreBatchQueue(0)
    off.push(*batch(0, 4))
    assert len(off) == 0 and off.embeddings() is None and off.entity_ids() is None
    with pytest.raises(KGCError):
        PreBatchQueue(-1)


def test_prebatch_order_eviction_and_mixed_sizes():
    q = PreBatchQueue(2)
    q.push(*batch(0, 3))  # ids 0..2
    q.push(*batch(10, 1))  # id 10
    assert q.entity_ids().tolist() == [0, 1, 2, 10] and len(q) == 4
    q.push(*batch(20, 2))  # oldest batch (0..2) is dropped
    assert q.entity_ids().tolist() == [10, 20, 21] and len(q) == 3
    assert q.embeddings()[:, 0].tolist() == [10.0, 20.0, 21.0]
    assert q.embeddings().shape == (3, 3)


def test_prebatch_detaches_and_stores_float32():
    emb = torch.randn(2, 3, dtype=torch.bfloat16, requires_grad=True)
    q = PreBatchQueue(1)
    q.push(emb * 2, torch.tensor([5, 6], dtype=torch.int32))
    assert q.embeddings().dtype == torch.float32 and not q.embeddings().requires_grad
    assert q.entity_ids().dtype == torch.long
    with pytest.raises(KGCError):
        q.push(torch.zeros(2, 4), torch.tensor([1, 2]))  # other dimension
    with pytest.raises(KGCError):
        q.push(torch.zeros(2, 3), torch.tensor([1, 2, 3]))  # ids do not match rows


def test_prebatch_state_dict_round_trip():
    q = PreBatchQueue(3)
    q.push(*batch(0, 2))
    q.push(*batch(5, 3))
    state = round_trip(q.state_dict())
    restored = PreBatchQueue(3)
    restored.load_state_dict(state)
    assert torch.equal(restored.embeddings(), q.embeddings())
    assert torch.equal(restored.entity_ids(), q.entity_ids())
    # batch boundaries survive: the next push evicts whole batches as before
    for queue in (q, restored):
        queue.push(*batch(9, 1))
        queue.push(*batch(12, 1))
    # [0, 1] | [5, 6, 7] | [9]  →  [5, 6, 7] | [9] | [12]
    assert restored.entity_ids().tolist() == q.entity_ids().tolist() == [5, 6, 7, 9, 12]
    # a smaller queue keeps only the newest batches
    small = PreBatchQueue(1)
    small.load_state_dict(state)
    assert small.entity_ids().tolist() == [5, 6, 7]
    # an empty queue round-trips too
    empty = PreBatchQueue(2)
    empty.load_state_dict(round_trip(PreBatchQueue(2).state_dict()))
    assert len(empty) == 0 and empty.embeddings() is None
    with pytest.raises(KGCError):
        empty.load_state_dict({"embeddings": torch.zeros(2, 3)})


# ----------------------------------------------------------------------------- MomentumQueue


def test_momentum_ring_buffer():
    q = MomentumQueue(5)
    assert len(q) == 0 and q.embeddings() is None and q.entity_ids() is None
    q.push(*batch(0, 3))
    assert q.entity_ids().tolist() == [0, 1, 2]
    q.push(*batch(10, 3))  # wraps: 0 is overwritten
    assert q.entity_ids().tolist() == [1, 2, 10, 11, 12] and len(q) == 5
    assert q.embeddings()[:, 0].tolist() == [1.0, 2.0, 10.0, 11.0, 12.0]
    q.push(*batch(20, 1))
    assert q.entity_ids().tolist() == [2, 10, 11, 12, 20]
    q.push(*batch(30, 7))  # larger than the queue: only its last 5 rows stay
    assert q.entity_ids().tolist() == [32, 33, 34, 35, 36]
    off = MomentumQueue(0)
    off.push(*batch(0, 2))
    assert off.embeddings() is None and len(off) == 0


def test_momentum_state_dict_round_trip():
    q = MomentumQueue(4)
    q.push(*batch(0, 3))
    q.push(*batch(10, 2))  # buffer: [1, 2, 10, 11] after wrap
    restored = MomentumQueue(4)
    restored.load_state_dict(round_trip(q.state_dict()))
    assert torch.equal(restored.embeddings(), q.embeddings())
    assert restored.entity_ids().tolist() == [1, 2, 10, 11]
    for queue in (q, restored):
        queue.push(*batch(20, 1))
    assert restored.entity_ids().tolist() == q.entity_ids().tolist() == [2, 10, 11, 20]
    empty = MomentumQueue(4)
    empty.load_state_dict(round_trip(MomentumQueue(4).state_dict()))
    assert empty.embeddings() is None


# ----------------------------------------------------------------------------- ema_update


def test_ema_update_arithmetic():
    torch.manual_seed(0)
    source, target = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    with torch.no_grad():
        source.weight.fill_(2.0)
        source.bias.fill_(-4.0)
        target.weight.fill_(1.0)
        target.bias.fill_(0.0)
        source.running_mean.fill_(7.0)
    source.num_batches_tracked.fill_(3)
    ema_update(target, source, momentum=0.9)
    # 0.9·1 + 0.1·2 = 1.1;  0.9·0 + 0.1·(−4) = −0.4;  buffers copied.
    assert torch.allclose(target.weight, torch.full((3,), 1.1))
    assert torch.allclose(target.bias, torch.full((3,), -0.4))
    assert torch.equal(target.running_mean, torch.full((3,), 7.0))
    assert target.num_batches_tracked.item() == 3
    assert target.weight.grad is None and not target.weight.grad_fn
    ema_update(target, source, momentum=0.0)
    assert torch.equal(target.weight, source.weight)
    with pytest.raises(KGCError):
        ema_update(target, source, momentum=1.5)
    with pytest.raises(KGCError):
        ema_update(nn.Linear(2, 2), nn.Linear(2, 3))
