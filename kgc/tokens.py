"""Token cache: every entity text, entity name and relation text is tokenized once per run.

Entities are shared by many triples, so the cache stores token ids (no special tokens) and
assembles each model input from them: the special tokens of the tokenizer's own template,
neighbour names appended (never the excluded target's), and SimKGC's ``longest_first``
truncation of a (head text, relation text) pair to ``max_tokens``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from kgc.texts import Texts

log = logging.getLogger("kgc")


@dataclass(frozen=True)
class Template:
    """Special tokens around one or two segments, read off the tokenizer itself."""

    prefix: tuple[int, ...]
    middle: tuple[int, ...]
    suffix: tuple[int, ...]
    single_prefix: tuple[int, ...]
    single_suffix: tuple[int, ...]
    type_a: int
    type_b: int

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "Template":
        a = tokenizer("a", add_special_tokens=False)["input_ids"]
        b = tokenizer("b", add_special_tokens=False)["input_ids"]
        pair = tokenizer("a", "b")
        ids = pair["input_ids"]
        types = pair.get("token_type_ids") or [0] * len(ids)
        ia = _find(ids, a, 0)
        ib = _find(ids, b, ia + len(a))
        single = tokenizer("a")["input_ids"]
        sa = _find(single, a, 0)
        return cls(tuple(ids[:ia]), tuple(ids[ia + len(a) : ib]), tuple(ids[ib + len(b) :]),
                   tuple(single[:sa]), tuple(single[sa + len(a) :]), types[ia], types[ib])


def _find(seq: list[int], sub: list[int], start: int) -> int:
    for i in range(start, len(seq) - len(sub) + 1):
        if seq[i : i + len(sub)] == sub:
            return i
    raise ValueError("cannot read the tokenizer's special-token template")


def truncate_pair(a: list[int], b: list[int], budget: int) -> tuple[list[int], list[int]]:
    """Drop tokens from the end of the longer segment until both fit in ``budget`` (longest first)."""
    la, lb = len(a), len(b)
    while la + lb > budget:
        if la > lb:
            la -= 1
        else:
            lb -= 1
    return a[:la], b[:lb]


class TokenCache:
    """Token ids of all texts of a graph, ready to assemble into model inputs."""

    def __init__(self, texts: Texts, tokenizer, max_tokens: int = 50):
        self.texts = texts
        self.max_tokens = max_tokens
        self.template = Template.from_tokenizer(tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

        def encode(strings: list[str]) -> list[list[int]]:
            return tokenizer(strings, add_special_tokens=False)["input_ids"] if strings else []

        self.entities = encode(texts.entities)
        self.names = encode(texts.names)
        self.relations = encode(texts.relations)
        log.info("token cache: %d entity texts, %d relation texts", len(self.entities), len(self.relations))

    def _entity_body(self, entity: int, exclude: int | None) -> list[int]:
        body = self.entities[entity]
        extra = [t for n in self.texts.neighbours[entity] if n != exclude for t in self.names[n]]
        return body + extra if extra else body

    def entity(self, entity: int, exclude: int | None = None) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Input ids and token-type ids of an entity's text (neighbours but ``exclude``)."""
        t = self.template
        budget = self.max_tokens - len(t.single_prefix) - len(t.single_suffix)
        ids = (*t.single_prefix, *self._entity_body(entity, exclude)[:budget], *t.single_suffix)
        return ids, (t.type_a,) * len(ids)

    def query(self, head: int, relation: int, exclude: int | None = None) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Input ids and token-type ids of ``head text [SEP] relation text``."""
        t = self.template
        budget = self.max_tokens - len(t.prefix) - len(t.middle) - len(t.suffix)
        a, b = truncate_pair(self._entity_body(head, exclude), self.relations[relation], budget)
        first = (*t.prefix, *a, *t.middle)
        second = (*b, *t.suffix)
        return first + second, (t.type_a,) * len(first) + (t.type_b,) * len(second)
