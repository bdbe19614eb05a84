"""Tests of kgc.metrics: MRR, MR, hits@k from ranks, and the metrics.json body."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kgc.errors import KGCError
from kgc.metrics import combine_directions, rank_metrics, summarize
from kgc.ranks import RankResult, filtered_ranks

HYP = settings(max_examples=50, deadline=None)


def result(opt, pes):
    """A RankResult built from hand-written optimistic / pessimistic ranks."""
    o = torch.tensor(opt, dtype=torch.float64)
    p = torch.tensor(pes, dtype=torch.float64)
    return RankResult(
        optimistic=o,
        pessimistic=p,
        realistic=(o + p) / 2,
        top_indices=torch.zeros((len(opt), 1), dtype=torch.int64),
        top_scores=torch.zeros((len(opt), 1), dtype=torch.float32),
    )


def test_rank_metrics_hand_computed():
    # ranks 1, 2, 4, 20:
    #   MRR = (1 + 1/2 + 1/4 + 1/20) / 4 = 1.8 / 4 = 0.45
    #   MR  = (1 + 2 + 4 + 20) / 4 = 27 / 4 = 6.75
    #   hits@1 = 1/4 (only 1), hits@3 = 2/4 (1, 2), hits@10 = 3/4 (1, 2, 4)
    m = rank_metrics(torch.tensor([1.0, 2.0, 4.0, 20.0]))
    assert m["mrr"] == pytest.approx((1 + 0.5 + 0.25 + 0.05) / 4)
    assert m["mr"] == pytest.approx(6.75)
    assert m["hits@1"] == 0.25
    assert m["hits@3"] == 0.5
    assert m["hits@10"] == 0.75
    assert m["count"] == 4
    assert list(m) == ["mrr", "mr", "hits@1", "hits@3", "hits@10", "count"]
    assert all(type(v) is float for k, v in m.items() if k != "count")
    assert type(m["count"]) is int


def test_rank_metrics_custom_ks_and_half_ranks():
    # realistic ranks can be halves: 1.5 is not a hit at 1 but is one at 2
    # MRR = (1/1.5 + 1/1 + 1/7) / 3
    m = rank_metrics([1.5, 1.0, 7.0], ks=(1, 2, 5))
    assert set(m) == {"mrr", "mr", "hits@1", "hits@2", "hits@5", "count"}
    assert m["hits@1"] == pytest.approx(1 / 3)
    assert m["hits@2"] == pytest.approx(2 / 3)
    assert m["hits@5"] == pytest.approx(2 / 3)
    assert m["mrr"] == pytest.approx((1 / 1.5 + 1 + 1 / 7) / 3)
    assert m["mr"] == pytest.approx(9.5 / 3)


def test_rank_metrics_rejects_bad_input():
    with pytest.raises(KGCError, match="empty"):
        rank_metrics(torch.tensor([]))
    with pytest.raises(KGCError):
        rank_metrics(torch.tensor([1.0, 0.0]))
    with pytest.raises(KGCError):
        rank_metrics(torch.tensor([1.0, math.nan]))
    with pytest.raises(KGCError):
        rank_metrics(torch.tensor([1.0]), ks=(0,))


def test_summarize_headline_is_realistic():
    # optimistic [1, 1], pessimistic [1, 3] -> realistic [1, 2]
    res = result([1, 1], [1, 3])
    s = summarize(res)
    assert s["rank"] == "realistic"
    assert s["mrr"] == pytest.approx((1 + 1 / 2) / 2)  # realistic ranks 1 and 2
    assert s["mr"] == pytest.approx(1.5)
    assert s["hits@1"] == 0.5
    assert s["optimistic"] == rank_metrics(torch.tensor([1.0, 1.0]))
    assert s["optimistic"]["mrr"] == 1.0
    assert s["pessimistic"]["mrr"] == pytest.approx((1 + 1 / 3) / 2)
    assert s["count"] == 2


def test_combine_directions():
    # forward ranks 1, 2 (no ties): MRR 0.75; backward ranks 4, 1: MRR 0.625
    # all four together: MRR (1 + 1/2 + 1/4 + 1) / 4 = 0.6875 = mean of the two directions
    fwd = result([1, 2], [1, 2])
    bwd = result([4, 1], [4, 1])
    m = combine_directions(fwd, bwd)
    assert m["forward"]["mrr"] == pytest.approx(0.75)
    assert m["backward"]["mrr"] == pytest.approx(0.625)
    assert m["mrr"] == pytest.approx(0.6875)
    assert m["mrr"] == pytest.approx((m["forward"]["mrr"] + m["backward"]["mrr"]) / 2)
    assert m["mr"] == pytest.approx(2.0)
    assert m["hits@1"] == 0.5 and m["hits@3"] == 0.75 and m["hits@10"] == 1.0
    assert m["count"] == 4
    assert m["rank"] == "realistic"
    assert m["forward"] == summarize(fwd) and m["backward"] == summarize(bwd)
    assert m["optimistic"]["count"] == m["pessimistic"]["count"] == 4
    json.dumps(m)  # the metrics.json body is plain JSON

    # unequal counts: count-weighted, i.e. the metrics of all queries together
    # forward ranks [1] (ties: optimistic 1, pessimistic 3 -> realistic 2), backward [1, 1, 4]
    fwd = result([1], [3])
    bwd = result([1, 1, 4], [1, 1, 4])
    m = combine_directions(fwd, bwd, ks=(1,))
    assert m["mrr"] == pytest.approx((1 / 2 + 1 + 1 + 1 / 4) / 4)
    assert m["optimistic"]["mrr"] == pytest.approx((1 + 1 + 1 + 1 / 4) / 4)
    assert m["pessimistic"]["mrr"] == pytest.approx((1 / 3 + 1 + 1 + 1 / 4) / 4)
    assert set(m) == {"mrr", "mr", "hits@1", "count", "rank", "optimistic", "pessimistic",
                      "forward", "backward"}


def test_combine_directions_tolerates_different_top_k_widths():
    fwd = result([1, 2], [1, 2])
    bwd = RankResult(fwd.optimistic, fwd.pessimistic, fwd.realistic,
                     torch.zeros((2, 5), dtype=torch.int64), torch.zeros((2, 5)))
    assert combine_directions(fwd, bwd)["count"] == 4


ranks_st = st.lists(st.integers(2, 400).map(lambda x: x / 2), min_size=1, max_size=30)


@HYP
@given(ranks_st)
def test_property_metric_ranges(ranks):
    m = rank_metrics(torch.tensor(ranks, dtype=torch.float64), ks=(1, 3, 10, 100))
    assert 0 < m["mrr"] <= 1
    assert m["mr"] >= 1
    assert 1 / m["mr"] <= m["mrr"] + 1e-12  # Jensen: mean(1/r) >= 1/mean(r)
    hits = [m["hits@1"], m["hits@3"], m["hits@10"], m["hits@100"]]
    assert all(0 <= h <= 1 for h in hits)
    assert hits == sorted(hits)
    assert m["count"] == len(ranks)


@HYP
@given(
    st.integers(1, 5), st.integers(1, 7), st.integers(0, 2**31 - 1), st.randoms(use_true_random=False)
)
def test_property_metrics_invariant_under_candidate_permutation(num_q, n, seed, rnd):
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(-2, 3, (num_q, 2), generator=g).float()
    e = torch.randint(-2, 3, (n, 2), generator=g).float()
    t = torch.randint(0, n, (num_q,), generator=g)
    excl_rows = torch.randint(0, num_q, (4,), generator=g)
    excl_cols = torch.randint(0, n, (4,), generator=g)

    def exclude_with(cols_map):
        def fn(start, end):
            sel = (excl_rows >= start) & (excl_rows < end)
            return excl_rows[sel] - start, cols_map[excl_cols[sel]]

        return fn

    order = list(range(n))
    rnd.shuffle(order)
    perm = torch.tensor(order)  # new row i holds old entity perm[i]
    new_of = torch.empty(n, dtype=torch.int64)
    new_of[perm] = torch.arange(n)
    before = filtered_ranks(q, e, t, exclude_with(torch.arange(n)), chunk_size=2)
    after = filtered_ranks(q, e[perm], new_of[t], exclude_with(new_of), chunk_size=3)
    assert summarize(before) == summarize(after)
    assert 0 < summarize(before)["mrr"] <= 1
