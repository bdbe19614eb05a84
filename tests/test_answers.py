"""kgc.answers: the known-answer index against hand-worked cases and a set reference."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kgc.answers import KnownAnswers
from kgc.data import load_graph
from kgc.errors import KGCError

T = torch.tensor

# 5 entities, 2 relations (already counting directions)
FACTS = T([[0, 0, 1], [0, 0, 2], [0, 1, 3], [1, 0, 2], [4, 1, 0], [0, 0, 1]])


@pytest.fixture
def known() -> KnownAnswers:
    return KnownAnswers(FACTS, num_entities=5, num_relations=2)


def test_len_drops_duplicates(known):
    assert len(known) == 5


def test_count(known):
    assert known.count(T([0, 0, 1, 4, 3, 1]), T([0, 1, 0, 1, 0, 1])).tolist() == [2, 1, 1, 1, 0, 0]


def test_contains(known):
    got = known.contains(T([0, 1, 3]), T([0, 0, 1]), T([0, 1, 2, 3, 4, 2]))
    assert got.dtype == torch.bool and got.shape == (3, 6)
    assert got.tolist() == [
        [False, True, True, False, False, True],
        [False, False, True, False, False, True],
        [False] * 6,
    ]


def both_ways(known: KnownAnswers, heads, relations, candidates) -> tuple[torch.Tensor, torch.Tensor]:
    """contains() through each of its two internal strategies."""
    first = (heads * known.num_relations + relations) * known.num_entities
    start = torch.searchsorted(known.codes, first)
    counts = torch.searchsorted(known.codes, first + known.num_entities) - start
    return (known._contains_by_answers(start, counts, candidates),
            known._contains_by_search(first, candidates))


def test_contains_strategies_and_chunks_agree(known, monkeypatch):
    import kgc.answers as answers

    heads, rels, cands = T([0, 1, 4, 0, 2]), T([0, 0, 1, 1, 0]), T([2, 0, 1, 2, 3, 4, 1])
    full = known.contains(heads, rels, cands)
    by_answers, by_search = both_ways(known, heads, rels, cands)
    assert torch.equal(by_answers, full) and torch.equal(by_search, full)
    monkeypatch.setattr(answers, "_CHUNK_ELEMENTS", 7)  # one row per chunk
    assert torch.equal(both_ways(known, heads, rels, cands)[1], full)
    # more answers (2) than cells (1): contains() takes the search path
    assert known.contains(T([0]), T([0]), T([2])).tolist() == [[True]]


def test_answers(known):
    rows, ents = known.answers(T([3, 0, 4, 0]), T([0, 0, 1, 1]))
    assert rows.tolist() == [1, 1, 2, 3]
    assert ents.tolist() == [1, 2, 0, 3]
    rows, ents = known.answers(T([], dtype=torch.long), T([], dtype=torch.long))
    assert rows.numel() == 0 and ents.numel() == 0


def test_empty_index():
    known = KnownAnswers(torch.empty((0, 3), dtype=torch.long), 3, 2)
    assert len(known) == 0
    assert known.count(T([0, 1]), T([1, 0])).tolist() == [0, 0]
    assert not known.contains(T([0]), T([1]), T([0, 1, 2])).any()
    rows, ents = known.answers(T([0]), T([1]))
    assert rows.numel() == 0 and ents.numel() == 0


def test_bad_input(known):
    with pytest.raises(KGCError, match="overflow"):
        KnownAnswers(torch.empty((0, 3), dtype=torch.long), num_entities=3_100_000_000, num_relations=2)
    with pytest.raises(KGCError, match="tail id 5"):
        KnownAnswers(T([[0, 0, 5]]), 5, 2)
    with pytest.raises(KGCError, match="relation id 2"):
        known.count(T([0]), T([2]))
    with pytest.raises(KGCError, match="candidate id 5"):
        known.contains(T([0]), T([0]), T([5]))


def test_from_graph_both_directions():
    kg = load_graph(Path(__file__).resolve().parents[1] / "data" / "UMLS")
    known = KnownAnswers.from_graph(kg)
    R = kg.num_relations
    assert known.num_relations == 2 * R and known.num_entities == kg.num_entities
    every = torch.cat([kg.triples(s) for s in ("train", "dev", "test")])
    h, r, t = every.unbind(1)
    ents = torch.arange(kg.num_entities)
    assert known.contains(h, r, ents)[torch.arange(len(h)), t].all()  # tail queries
    assert known.contains(t, r + R, ents)[torch.arange(len(h)), h].all()  # head queries
    assert len(known) == 2 * len(torch.unique(every, dim=0))
    train_only = KnownAnswers.from_graph(kg, splits=("train",))
    assert len(train_only) == 2 * len(kg.triples("train"))
    test = kg.triples("test")
    assert (known.count(test[:, 0], test[:, 1]) >= train_only.count(test[:, 0], test[:, 1])).all()


@st.composite
def index_and_queries(draw):
    E = draw(st.integers(1, 7))
    R = draw(st.integers(1, 4))
    fact = st.tuples(st.integers(0, E - 1), st.integers(0, R - 1), st.integers(0, E - 1))
    facts = draw(st.lists(fact, max_size=40))
    queries = draw(st.lists(st.tuples(st.integers(0, E - 1), st.integers(0, R - 1)), max_size=10))
    candidates = draw(st.lists(st.integers(0, E - 1), max_size=10))
    return E, R, facts, queries, candidates


@settings(max_examples=100, deadline=None)
@given(index_and_queries())
def test_matches_set_reference(case):
    E, R, facts, queries, candidates = case
    known = KnownAnswers(T(facts, dtype=torch.long).reshape(-1, 3), E, R)
    ref = set(facts)
    heads = T([q[0] for q in queries], dtype=torch.long)
    rels = T([q[1] for q in queries], dtype=torch.long)
    cands = T(candidates, dtype=torch.long)

    assert len(known) == len(ref)
    expected_answers = [sorted(t for (h, r, t) in ref if (h, r) == q) for q in queries]
    assert known.count(heads, rels).tolist() == [len(a) for a in expected_answers]
    expected = [[(h, r, c) in ref for c in candidates] for (h, r) in queries]
    got = known.contains(heads, rels, cands)
    assert got.shape == (len(queries), len(candidates))
    assert got.tolist() == expected
    if len(ref) and queries and candidates:
        by_answers, by_search = both_ways(known, heads, rels, cands)
        assert by_answers.tolist() == expected and by_search.tolist() == expected
    rows, ents = known.answers(heads, rels)
    pairs = list(zip(rows.tolist(), ents.tolist()))
    assert pairs == [(i, t) for i, ans in enumerate(expected_answers) for t in ans]
