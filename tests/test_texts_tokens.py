"""Text construction (names, descriptions, inverse relations, neighbour augmentation)
and the token cache that assembles model inputs from it."""

import pytest
import torch

from kgc.data import load_graph
from kgc.encoder import load_tokenizer
from kgc.graph import TrainingGraph
from kgc.texts import Texts, entity_text
from kgc.tokens import Template, TokenCache, truncate_pair


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("default")


def test_entity_text_joins_name_and_truncated_description():
    assert entity_text("alpha", "one two three four", 2) == "alpha: one two"
    assert entity_text("alpha", "", 50) == "alpha"
    # a description that repeats the name does not say it twice
    assert entity_text("Paris", "Paris is the capital of France", 50) == "Paris: is the capital of France"


def test_texts_relations_and_inverse(tiny_dataset):
    kg = load_graph(tiny_dataset)
    texts = Texts.build(kg, augment=False)
    R = kg.num_relations
    assert texts.relations[kg.relation_index["next"]] == "is followed by"
    assert texts.relations[kg.relation_index["next"] + R] == "inverse is followed by"
    assert texts.entities[kg.entity_index["a"]] == "alpha: the first letter of the greek alphabet"
    assert texts.entities[kg.entity_index["c"]] == "gamma"


def test_neighbour_augmentation_uses_training_graph_and_never_the_target(tiny_dataset):
    kg = load_graph(tiny_dataset)
    texts = Texts.build(kg, augment=True, neighbor_max=10, neighbor_min_words=5)
    a, b, c, e = (kg.entity_index[x] for x in "abce")
    # a has a 7-word description, so it is not augmented; c (no description) is
    assert texts.neighbours[a] == []
    assert sorted(texts.neighbours[c]) == sorted([b, kg.entity_index["d"]])
    assert texts.augmented(c) == "gamma beta delta"
    assert texts.augmented(c, exclude=b) == "gamma delta"
    # b's description has 3 words (< 5): neighbours a and c; the dev/test edges (b, d) do not count
    assert sorted(texts.neighbours[b]) == sorted([a, c])
    assert "epsilon" in texts.augmented(kg.entity_index["f"])
    assert "epsilon" not in texts.augmented(kg.entity_index["f"], exclude=e)


def test_template_matches_bert_pair_format(tokenizer):
    t = Template.from_tokenizer(tokenizer)
    assert t.prefix == (tokenizer.cls_token_id,)
    assert t.middle == (tokenizer.sep_token_id,)
    assert t.suffix == (tokenizer.sep_token_id,)
    assert (t.type_a, t.type_b) == (0, 1)


def test_truncate_pair_cuts_the_longer_side_first():
    a, b = list(range(10)), list(range(100, 104))
    ta, tb = truncate_pair(a, b, 8)
    assert (ta, tb) == (list(range(4)), b)
    ta, tb = truncate_pair(a, b, 6)
    assert (len(ta), len(tb)) == (3, 3)


def test_query_tokens_match_the_tokenizer_and_respect_the_limit(tiny_dataset, tokenizer):
    kg = load_graph(tiny_dataset)
    texts = Texts.build(kg, augment=False)
    cache = TokenCache(texts, tokenizer, max_tokens=50)
    a, nxt = kg.entity_index["a"], kg.relation_index["next"]
    ids, types = cache.query(a, nxt)
    ref = tokenizer(texts.entities[a], texts.relations[nxt])
    assert list(ids) == ref["input_ids"]
    assert list(types) == ref["token_type_ids"]
    ids, _ = cache.entity(a)
    assert list(ids) == tokenizer(texts.entities[a])["input_ids"]
    short = TokenCache(texts, tokenizer, max_tokens=8)
    ids, types = short.query(a, nxt + kg.num_relations)
    assert len(ids) == 8 == len(types)
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert len(short.entity(a)[0]) == 8


def test_training_graph_hops_match_breadth_first_search():
    torch.manual_seed(0)
    n = 30
    triples = torch.stack([torch.randint(0, n, (60,)), torch.zeros(60, dtype=torch.long),
                           torch.randint(0, n, (60,))], dim=1)
    g = TrainingGraph(triples, n)
    adj = {i: set() for i in range(n)}
    for h, _, t in triples.tolist():
        if h != t:
            adj[h].add(t)
            adj[t].add(h)
    heads = torch.arange(n)
    for hops in (1, 2, 3):
        rows, cols = g.within_hops(heads, hops)
        got = {(int(r), int(c)) for r, c in zip(rows, cols)}
        assert len(got) == len(rows)  # each pair once: the re-ranking bonus adds up repeats
        want = set()
        for h in range(n):
            seen, frontier = set(), {h}
            for _ in range(hops):
                frontier = {m for x in frontier for m in adj[x]}
                seen |= frontier
            want |= {(h, m) for m in seen if m != h}
        assert got == want
    assert all(len(x) <= 3 for x in g.neighbours(3))
