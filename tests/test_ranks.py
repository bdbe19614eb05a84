"""Tests of kgc.ranks: filtered optimistic / pessimistic / realistic ranks and top-k.

Hand-computed cases write the score matrix out directly: with ``entity_emb = I`` (the
identity), ``query_emb @ entity_emb.T`` is ``query_emb`` itself, so a query row *is* its
score row.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kgc.errors import KGCError
from kgc.ranks import RankResult, auto_chunk_size, filtered_ranks

INF = float("inf")
HYP = settings(max_examples=50, deadline=None)


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def scored(rows):
    """(query_emb, entity_emb) whose score matrix is exactly ``rows``."""
    s = torch.tensor(rows, dtype=torch.float32)
    return s, torch.eye(s.shape[1])


def pairs_fn(pairs):
    """exclude callable from global ``(query, entity)`` pairs."""

    def fn(start, end):
        sel = [(qi - start, c) for qi, c in pairs if start <= qi < end]
        rows = torch.tensor([r for r, _ in sel], dtype=torch.int64)
        cols = torch.tensor([c for _, c in sel], dtype=torch.int64)
        return rows, cols

    return fn


def triples_fn(triples):
    """bonus callable from global ``(query, entity, value)`` triples."""

    def fn(start, end):
        sel = [(qi - start, c, v) for qi, c, v in triples if start <= qi < end]
        rows = torch.tensor([r for r, _, _ in sel], dtype=torch.int64)
        cols = torch.tensor([c for _, c, _ in sel], dtype=torch.int64)
        vals = torch.tensor([v for _, _, v in sel], dtype=torch.float32)
        return rows, cols, vals

    return fn


def ranks_of(res: RankResult):
    return res.optimistic.tolist(), res.pessimistic.tolist(), res.realistic.tolist()


def reference_ranks(query_emb, entity_emb, targets, excluded_pairs=(), bonus_triples=()):
    """Obviously-correct reference: one full score row per query, plain comparisons.

    Scores are computed in float64 from the float32-cast inputs; the tests feed it small
    integer / dyadic values, for which float32 and float64 arithmetic are both exact.
    Returns (optimistic, pessimistic, realistic, kept_scores) where kept_scores[i] maps each
    remaining candidate of query i to its score.
    """
    q = query_emb.to(torch.float32).to(torch.float64)
    e = entity_emb.to(torch.float32).to(torch.float64)
    num_q, n = q.shape[0], e.shape[0]
    opt, pes, real, kept = [], [], [], []
    for i in range(num_q):
        row = [float((q[i] * e[c]).sum()) for c in range(n)]
        for qi, c, v in bonus_triples:
            if qi == i:
                row[c] += v
        target = int(targets[i])
        removed = {c for qi, c in excluded_pairs if qi == i and c != target}
        t = row[target]
        higher = 0
        at_least = 0
        kept_i = {}
        for c in range(n):
            if c in removed:
                continue
            kept_i[c] = row[c]
            if row[c] > t:
                higher += 1
            if row[c] >= t:
                at_least += 1
        opt.append(1.0 + higher)
        pes.append(float(at_least))
        real.append((1.0 + higher + at_least) / 2)
        kept.append(kept_i)
    return opt, pes, real, kept


def check_top_k(res: RankResult, kept, k):
    """top-k agrees with the reference's remaining candidates (ties may come in any order)."""
    for i, kept_i in enumerate(kept):
        expected = sorted(kept_i.values(), reverse=True)[:k]
        expected += [-INF] * (k - len(expected))
        assert res.top_scores[i].tolist() == pytest.approx(expected)
        idx = res.top_indices[i].tolist()
        real = [c for c in idx if c != -1]
        assert len(real) == len(set(real)) == min(k, len(kept_i))
        assert idx[len(real):] == [-1] * (k - len(real))  # padding only at the end
        for c, s in zip(real, res.top_scores[i].tolist()):
            assert c in kept_i and kept_i[c] == pytest.approx(s)


# --------------------------------------------------------------------------------------
# hand-computed cases
# --------------------------------------------------------------------------------------

# Score matrix (rows = queries, columns = entities 0..4) and the ranks by hand:
#
#   query 0: [3, 5, 3, 1, 3] target 0 (score 3)
#            strictly higher: {1}            -> optimistic  = 1 + 1 = 2
#            >= 3:            {0, 1, 2, 4}   -> pessimistic = 4
#                                               realistic   = (2 + 4) / 2 = 3
#   query 1: [0, 1, 2, 3, 4] target 4 (score 4): nothing higher, only itself -> 1, 1, 1
#   query 2: [2, 2, 2, 2, 2] target 2: nothing higher, all five tie -> 1, 5, 3
#   query 3: [9, 1, 1, 1, 0] target 4 (score 0): four higher -> 5, 5, 5
HAND = [
    [3, 5, 3, 1, 3],
    [0, 1, 2, 3, 4],
    [2, 2, 2, 2, 2],
    [9, 1, 1, 1, 0],
]
HAND_TARGETS = torch.tensor([0, 4, 2, 4])


def test_hand_ties_optimistic_pessimistic_realistic():
    q, e = scored(HAND)
    res = filtered_ranks(q, e, HAND_TARGETS, top_k=2)
    opt, pes, real = ranks_of(res)
    assert opt == [2, 1, 1, 5]
    assert pes == [4, 1, 5, 5]
    assert real == [3, 1, 3, 5]
    assert len(res) == 4
    assert res.optimistic.dtype == res.pessimistic.dtype == res.realistic.dtype == torch.float64
    assert res.top_indices.dtype == torch.int64 and res.top_scores.dtype == torch.float32
    assert res.top_indices.shape == res.top_scores.shape == (4, 2)


def test_filtering_another_true_answer_improves_the_rank():
    q, e = scored(HAND)
    # query 0: entity 1 (score 5) is another true answer. Removed, nothing is higher:
    #   optimistic = 1; >= 3 among {0, 2, 3, 4}: {0, 2, 4} -> pessimistic = 3; realistic 2
    # query 3: entity 0 (score 9) removed: higher {1, 2, 3} -> optimistic = pessimistic = 4
    res = filtered_ranks(q, e, HAND_TARGETS, pairs_fn([(0, 1), (3, 0)]))
    opt, pes, real = ranks_of(res)
    assert opt == [1, 1, 1, 4]
    assert pes == [3, 1, 5, 4]
    assert real == [2, 1, 3, 4]
    # query 0 also has entity 2 (a tie) as a true answer: pessimistic 2, realistic 1.5
    res = filtered_ranks(q, e, HAND_TARGETS, pairs_fn([(0, 1), (0, 2), (0, 2)]))
    assert ranks_of(res)[1][0] == 2 and ranks_of(res)[2][0] == 1.5
    # unfiltered ranks are never better than filtered ones
    unfiltered = filtered_ranks(q, e, HAND_TARGETS)
    assert bool((res.realistic <= unfiltered.realistic).all())


def test_target_listed_in_exclude_is_not_removed():
    q, e = scored(HAND)
    # query 2 (all scores 2, target 2) lists its own target and entity 0 as true answers:
    # only entity 0 is removed; candidates {1, 2, 3, 4} all tie -> 1, 4, 2.5
    res = filtered_ranks(q, e, HAND_TARGETS, pairs_fn([(2, 2), (2, 0)]), top_k=5)
    opt, pes, real = ranks_of(res)
    assert (opt[2], pes[2], real[2]) == (1, 4, 2.5)
    top2 = res.top_indices[2].tolist()
    assert 2 in top2 and 0 not in top2 and top2[-1] == -1
    # query 1 lists only its own target: nothing changes
    res = filtered_ranks(q, e, HAND_TARGETS, pairs_fn([(1, 4)]))
    assert ranks_of(res)[0][1] == 1 and ranks_of(res)[1][1] == 1


def test_bonus_changes_ranks():
    q, e = scored(HAND)
    # query 0: +3 on the target -> 6 > 5: rank 1 in every semantics
    # query 1: +10 on entity 3 -> 13 > 4: target now second (2, 2, 2)
    res = filtered_ranks(q, e, HAND_TARGETS, bonus=triples_fn([(0, 0, 3.0), (1, 3, 10.0)]))
    opt, pes, real = ranks_of(res)
    assert (opt[0], pes[0], real[0]) == (1, 1, 1)
    assert (opt[1], pes[1], real[1]) == (2, 2, 2)
    assert (opt[2:], pes[2:]) == ([1, 5], [5, 5])  # others untouched
    # repeated pairs add up: query 0, entity 2 gets +1 twice -> 5, ties with entity 1:
    #   higher {1, 2} -> optimistic 3; >= 3: {0, 1, 2, 4} -> pessimistic 4; realistic 3.5
    res = filtered_ranks(q, e, HAND_TARGETS, bonus=triples_fn([(0, 2, 1.0), (0, 2, 1.0)]))
    assert ranks_of(res)[0][0] == 3 and ranks_of(res)[1][0] == 4 and ranks_of(res)[2][0] == 3.5
    # a bonus on a filtered candidate does not bring it back
    res = filtered_ranks(
        q, e, HAND_TARGETS, pairs_fn([(0, 1)]), bonus=triples_fn([(0, 1, 100.0)])
    )
    assert ranks_of(res)[0][0] == 1


# one query, six entities:      0    1   2   3  4  5
TOPK_ROW = [[0.5, 4, -1, 2, 3, 1]]  # target 0


def test_top_k_contents_and_order():
    q, e = scored(TOPK_ROW)
    t = torch.tensor([0])
    res = filtered_ranks(q, e, t, top_k=3)
    # best first: 4 (entity 1), 3 (entity 4), 2 (entity 3)
    assert res.top_indices.tolist() == [[1, 4, 3]]
    assert res.top_scores.tolist() == [[4, 3, 2]]
    # entity 4 filtered: it disappears and entity 5 (score 1) moves up
    res = filtered_ranks(q, e, t, pairs_fn([(0, 4)]), top_k=3)
    assert res.top_indices.tolist() == [[1, 3, 5]]
    assert res.top_scores.tolist() == [[4, 2, 1]]
    # bonus +6 on entity 2 -> 5: now the best
    res = filtered_ranks(q, e, t, bonus=triples_fn([(0, 2, 6.0)]), top_k=3)
    assert res.top_indices.tolist() == [[2, 1, 4]]
    assert res.top_scores.tolist() == [[5, 4, 3]]
    # k larger than the number of entities: all six in order, then padding
    res = filtered_ranks(q, e, t, top_k=8)
    assert res.top_indices.tolist() == [[1, 4, 3, 5, 0, 2, -1, -1]]
    assert res.top_scores.tolist() == [[4, 3, 2, 1, 0.5, -1, -INF, -INF]]
    # everything but the target filtered: only the target remains, the rest is padding
    res = filtered_ranks(q, e, t, pairs_fn([(0, c) for c in range(1, 6)]), top_k=3)
    assert res.top_indices.tolist() == [[0, -1, -1]]
    assert res.top_scores.tolist() == [[0.5, -INF, -INF]]
    assert ranks_of(res) == ([1], [1], [1])
    # top_k = 0 is allowed; the ranks are still computed: 4, 2, 3, 1 beat 0.5 -> rank 5
    res = filtered_ranks(q, e, t, top_k=0)
    assert res.top_indices.shape == (1, 0) and ranks_of(res) == ([5], [5], [5])


def test_minus_inf_target_counts_only_remaining_candidates():
    # scores [1, 2, 3], target 0 gets a bonus of -inf, entity 2 is filtered (listed twice).
    # remaining {0 (-inf), 1 (2)}: higher {1} -> optimistic 2; >= -inf: {0, 1} -> pessimistic 2
    q, e = scored([[1, 2, 3]])
    res = filtered_ranks(
        q, e, torch.tensor([0]), pairs_fn([(0, 2), (0, 2)]), bonus=triples_fn([(0, 0, -INF)]),
        top_k=3,
    )
    assert ranks_of(res) == ([2], [2], [2])
    # the kept -inf target is listed, the filtered entity 2 is not
    assert res.top_indices.tolist() == [[1, 0, -1]]
    assert res.top_scores.tolist() == [[2, -INF, -INF]]
    # scores [5, 1, 2, 3], target 0; entities 1 and 2 filtered, entity 3 kept with a bonus of
    # -inf. Entity 3 is still a candidate and must be listed before the padding, whichever
    # order topk gives to the -inf ties. Ranks: nothing beats 5 -> 1, 1, 1
    q, e = scored([[5, 1, 2, 3]])
    res = filtered_ranks(
        q, e, torch.tensor([0]), pairs_fn([(0, 1), (0, 2)]),
        bonus=triples_fn([(0, 3, -INF)]), top_k=3,
    )
    assert ranks_of(res) == ([1], [1], [1])
    assert res.top_indices.tolist() == [[0, 3, -1]]
    assert res.top_scores.tolist() == [[5, -INF, -INF]]


def test_nan_target_score_raises():
    q, e = scored(HAND)
    with pytest.raises(KGCError, match="NaN"):
        filtered_ranks(q, e, HAND_TARGETS, bonus=triples_fn([(2, 2, math.nan)]))
    q2 = q.clone()
    q2[1, 0] = math.nan  # NaN query embedding: its whole score row is NaN
    with pytest.raises(KGCError, match="NaN"):
        filtered_ranks(q2, e, HAND_TARGETS, chunk_size=1)


def test_nan_candidate_is_dropped(caplog):
    # query 0 = [3, 5, 3, 1, 3], target 0; entity 1 becomes NaN: left out like a filtered one
    #   higher: none -> 1; >= 3: {0, 2, 4} -> 3
    q, e = scored(HAND[:1])
    res = filtered_ranks(q, e, torch.tensor([0]), bonus=triples_fn([(0, 1, math.nan)]), top_k=5)
    assert ranks_of(res) == ([1], [3], [2])
    assert 1 not in res.top_indices[0].tolist()
    assert "NaN" in caplog.text


def test_chunking_invariance_and_chunk_calls():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(7, 5, generator=g)
    e = torch.randn(11, 5, generator=g)
    t = torch.randint(0, 11, (7,), generator=g)
    excl = [(0, 3), (2, 1), (2, 7), (5, 0), (6, 10), (6, int(t[6]))]
    bon = [(1, 2, 0.7), (4, 9, -0.3), (6, 0, 1.5)]
    results = [
        filtered_ranks(q, e, t, pairs_fn(excl), bonus=triples_fn(bon), top_k=4, chunk_size=cs)
        for cs in (1, 2, 3, 7, 50, None)
    ]
    first = results[0]
    for r in results[1:]:
        assert torch.equal(r.optimistic, first.optimistic)
        assert torch.equal(r.pessimistic, first.pessimistic)
        assert torch.equal(r.realistic, first.realistic)
        assert torch.equal(r.top_indices, first.top_indices)
        assert torch.allclose(r.top_scores, first.top_scores)

    calls = []

    def recording(start, end):
        calls.append((start, end))
        return pairs_fn(excl)(start, end)

    filtered_ranks(q, e, t, recording, chunk_size=3)
    assert calls == [(0, 3), (3, 6), (6, 7)]


# --------------------------------------------------------------------------------------
# agreement with the reference implementation
# --------------------------------------------------------------------------------------


def tie_heavy_problem(seed, num_q=9, n=14, d=3):
    """Integer-valued embeddings (exact float arithmetic) with duplicated entity rows."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(-2, 3, (num_q, d), generator=g).float()
    e = torch.randint(-2, 3, (n, d), generator=g).float()
    e[5] = e[2]
    e[9] = e[2]
    e[12] = e[0]
    t = torch.randint(0, n, (num_q,), generator=g)
    t[0] = 2  # a target whose row is duplicated
    excl = [(int(i), int(c)) for i, c in torch.randint(0, n, (20, 2), generator=g) if i < num_q]
    excl += [(0, 5), (0, 9), (1, int(t[1]))]
    bon = [
        (int(i), int(c), float(v) / 2)
        for (i, c), v in zip(
            torch.randint(0, min(num_q, n), (12, 2), generator=g),
            torch.randint(-4, 5, (12,), generator=g),
        )
    ]
    bon.append((3, int(t[3]), 1.0))
    return q, e, t, excl, bon


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("use_exclude", [False, True])
@pytest.mark.parametrize("use_bonus", [False, True])
def test_matches_reference_with_ties(seed, use_exclude, use_bonus):
    q, e, t, excl, bon = tie_heavy_problem(seed)
    excl = excl if use_exclude else []
    bon = bon if use_bonus else []
    opt, pes, real, kept = reference_ranks(q, e, t, excl, bon)
    assert opt != pes  # the case really has ties with targets
    for cs in (1, 3, q.shape[0]):
        res = filtered_ranks(
            q,
            e,
            t,
            pairs_fn(excl) if use_exclude else None,
            bonus=triples_fn(bon) if use_bonus else None,
            top_k=5,
            chunk_size=cs,
        )
        assert ranks_of(res) == (opt, pes, real)
        check_top_k(res, kept, 5)


@pytest.mark.parametrize("cs", [1, 3, 12])
def test_matches_reference_random_float(cs):
    g = torch.Generator().manual_seed(7)
    q = torch.randn(12, 8, generator=g)
    e = torch.randn(30, 8, generator=g)
    e[4] = e[17]  # exact duplicate rows tie even with continuous values
    t = torch.randint(0, 30, (12,), generator=g)
    t[2] = 4
    excl = [(i, (3 * i + 1) % 30) for i in range(12)] + [(2, 17)]
    bon = [(i, (5 * i) % 30, 0.25) for i in range(12)]
    opt, pes, real, kept = reference_ranks(q, e, t, excl, bon)
    res = filtered_ranks(q, e, t, pairs_fn(excl), bonus=triples_fn(bon), chunk_size=cs, top_k=6)
    assert ranks_of(res) == (opt, pes, real)
    for i, kept_i in enumerate(kept):
        assert res.top_scores[i].tolist() == pytest.approx(
            sorted(kept_i.values(), reverse=True)[:6], rel=1e-5, abs=1e-5
        )


def test_half_precision_inputs_are_scored_in_float32():
    q, e, t, excl, _ = tie_heavy_problem(3)
    expected = reference_ranks(q, e, t, excl)[:3]
    for dtype in (torch.bfloat16, torch.float16, torch.float64):
        res = filtered_ranks(q.to(dtype), e.to(dtype), t, pairs_fn(excl), chunk_size=4)
        assert ranks_of(res) == expected
        assert res.top_scores.dtype == torch.float32


# --------------------------------------------------------------------------------------
# property tests
# --------------------------------------------------------------------------------------


@dataclass
class Problem:
    q: torch.Tensor
    e: torch.Tensor
    targets: torch.Tensor
    excl: list
    bonus: list


@st.composite
def problems(draw, max_q=6, max_n=8, max_d=3):
    num_q = draw(st.integers(1, max_q))
    n = draw(st.integers(1, max_n))
    d = draw(st.integers(1, max_d))
    small = st.integers(-2, 2)  # a small range makes ties frequent
    q = draw(st.lists(small, min_size=num_q * d, max_size=num_q * d))
    e = draw(st.lists(small, min_size=n * d, max_size=n * d))
    targets = draw(st.lists(st.integers(0, n - 1), min_size=num_q, max_size=num_q))
    excl = draw(st.lists(st.tuples(st.integers(0, num_q - 1), st.integers(0, n - 1)), max_size=10))
    bonus = draw(
        st.lists(
            st.tuples(
                st.integers(0, num_q - 1),
                st.integers(0, n - 1),
                st.sampled_from([-INF, -1.0, -0.5, 0.5, 1.0, 2.0]),
            ),
            max_size=6,
        )
    )
    return Problem(
        torch.tensor(q, dtype=torch.float32).reshape(num_q, d),
        torch.tensor(e, dtype=torch.float32).reshape(n, d),
        torch.tensor(targets, dtype=torch.int64),
        excl,
        bonus,
    )


@HYP
@given(problems(), st.integers(1, 7), st.integers(0, 4))
def test_property_matches_reference(p, cs, k):
    opt, pes, real, kept = reference_ranks(p.q, p.e, p.targets, p.excl, p.bonus)
    res = filtered_ranks(
        p.q, p.e, p.targets, pairs_fn(p.excl), bonus=triples_fn(p.bonus), top_k=k, chunk_size=cs
    )
    assert ranks_of(res) == (opt, pes, real)
    check_top_k(res, kept, k)


@HYP
@given(problems())
def test_property_rank_bounds_and_filtering_helps(p):
    n = p.e.shape[0]
    filt = filtered_ranks(p.q, p.e, p.targets, pairs_fn(p.excl), bonus=triples_fn(p.bonus))
    unfilt = filtered_ranks(p.q, p.e, p.targets, bonus=triples_fn(p.bonus))
    for r in (filt, unfilt):
        assert bool((1 <= r.optimistic).all())
        assert bool((r.optimistic <= r.realistic).all())
        assert bool((r.realistic <= r.pessimistic).all())
        assert bool((r.pessimistic <= n).all())
        assert torch.equal(r.realistic, (r.optimistic + r.pessimistic) / 2)
    assert bool((filt.optimistic <= unfilt.optimistic).all())
    assert bool((filt.pessimistic <= unfilt.pessimistic).all())
    assert bool((filt.realistic <= unfilt.realistic).all())


@HYP
@given(problems(), st.randoms(use_true_random=False))
def test_property_permuting_candidates_keeps_ranks(p, rnd):
    n = p.e.shape[0]
    order = list(range(n))
    rnd.shuffle(order)
    perm = torch.tensor(order)  # new row i is old entity perm[i]
    new_of = torch.empty(n, dtype=torch.int64)
    new_of[perm] = torch.arange(n)  # old entity c is new row new_of[c]
    before = filtered_ranks(p.q, p.e, p.targets, pairs_fn(p.excl), bonus=triples_fn(p.bonus))
    after = filtered_ranks(
        p.q,
        p.e[perm],
        new_of[p.targets],
        pairs_fn([(i, int(new_of[c])) for i, c in p.excl]),
        bonus=triples_fn([(i, int(new_of[c]), v) for i, c, v in p.bonus]),
    )
    assert ranks_of(before) == ranks_of(after)
    assert torch.equal(before.top_scores, after.top_scores)


# --------------------------------------------------------------------------------------
# chunk size, validation, RankResult
# --------------------------------------------------------------------------------------


def test_counts_stay_exact_beyond_float32_integers():
    """Ranks are counted by summing 0/1 floats; from 2^24 candidates on a float32 sum would
    stop counting (2^24 + 1 == 2^24 in float32), so the count switches to float64."""
    n = 2**24 + 7
    entity_emb = torch.ones(n, 1)
    entity_emb[:3] = 2.0  # three candidates above the target...
    target = n - 1
    entity_emb[target] = 1.0  # ...which ties with every other candidate
    res = filtered_ranks(torch.ones(1, 1), entity_emb, torch.tensor([target]), top_k=1)
    assert res.optimistic.item() == 4
    assert res.pessimistic.item() == n
    assert res.realistic.item() == (4 + n) / 2


def test_auto_chunk_size_uses_available_memory(monkeypatch):
    real = auto_chunk_size(10_000)
    assert 1 <= real <= 8192

    def fake_sysconf(name):
        return {"SC_AVPHYS_PAGES": 1000, "SC_PAGE_SIZE": 4096}[name]

    monkeypatch.setattr(os, "sysconf", fake_sysconf)
    # 4_096_000 bytes * 0.25 = 1_024_000; 100 entities * 16 bytes = 1600 per row -> 640
    assert auto_chunk_size(100) == 640
    assert auto_chunk_size(100, memory_fraction=0.5, bytes_per_score=8) == 2560
    assert auto_chunk_size(10) == 6400
    assert auto_chunk_size(1) == 8192  # clamped above
    assert auto_chunk_size(10**9) == 1  # clamped below: millions of entities still work


def test_auto_chunk_size_falls_back_to_2_gib(monkeypatch):
    def broken_sysconf(name):
        raise ValueError(name)

    monkeypatch.setattr(os, "sysconf", broken_sysconf)
    # 2 GiB * 0.25 = 536_870_912; 10**6 entities * 16 bytes per row -> 33 rows
    assert auto_chunk_size(10**6) == 33
    assert auto_chunk_size(1000) == 8192


def test_invalid_inputs_raise():
    q, e = scored(HAND)
    with pytest.raises(KGCError, match="targets"):
        filtered_ranks(q, e, torch.tensor([0, 1, 2, 5]))
    with pytest.raises(KGCError, match="targets"):
        filtered_ranks(q, e, torch.tensor([0, 1]))
    with pytest.raises(KGCError, match="dimension"):
        filtered_ranks(q, torch.eye(4), HAND_TARGETS)
    # row 2 is outside a chunk of 2 queries (rows are 0-based within the chunk)
    with pytest.raises(KGCError, match="within the chunk"):
        filtered_ranks(
            q, e, HAND_TARGETS, lambda s, t: (torch.tensor([2]), torch.tensor([0])), chunk_size=2
        )
    with pytest.raises(KGCError, match="entity indices"):
        filtered_ranks(q, e, HAND_TARGETS, pairs_fn([(0, 9)]))
    with pytest.raises(KGCError, match="chunk_size"):
        filtered_ranks(q, e, HAND_TARGETS, chunk_size=0)
    with pytest.raises(KGCError, match="top_k"):
        filtered_ranks(q, e, HAND_TARGETS, top_k=-1)


def test_empty_query_set_and_concat():
    q, e = scored(HAND)
    empty = filtered_ranks(q[:0], e, HAND_TARGETS[:0], top_k=3)
    assert len(empty) == 0 and empty.top_indices.shape == (0, 3)
    a = filtered_ranks(q[:2], e, HAND_TARGETS[:2], top_k=3)
    b = filtered_ranks(q[2:], e, HAND_TARGETS[2:], top_k=3, progress=True)
    both = RankResult.concat([a, empty, b])
    whole = filtered_ranks(q, e, HAND_TARGETS, top_k=3)
    assert len(both) == 4
    assert ranks_of(both) == ranks_of(whole)
    assert torch.equal(both.top_scores, whole.top_scores)
    with pytest.raises(KGCError):
        RankResult.concat([])
    with pytest.raises(KGCError, match="top-k"):
        RankResult.concat([a, filtered_ranks(q, e, HAND_TARGETS, top_k=2)])
