"""Property-based tests of the triple reader (``kgc.data.load_graph``).

* Random well-formed folders round-trip: every id maps back to its raw string, every split
  holds its triples once each, in file order, and repeats are counted as warnings.
* A random line put into an otherwise good file either is a line the reader accepts, or
  gives an ``InputError`` naming that file and that line, never any other exception.

(Rank and metric properties live in test_ranks.py and test_metrics.py.)
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kgc.data import load_graph
from kgc.errors import InputError

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Ids and texts: any characters but tab and newline (the separators), no surrogates, no
# byte-order mark, and no white space at either end (the reader strips it).
_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n\ufeff")
token = st.text(_chars, min_size=1, max_size=8).filter(lambda s: s == s.strip())


def write(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def lines(rows) -> bytes:
    return "".join("\t".join(r) + "\n" for r in rows).encode("utf-8")


@st.composite
def graphs(draw):
    entities = draw(st.lists(token, min_size=2, max_size=8, unique=True))
    relations = draw(st.lists(token, min_size=1, max_size=4, unique=True))
    triple = st.tuples(st.sampled_from(entities), st.sampled_from(relations), st.sampled_from(entities))
    splits = {name: draw(st.lists(triple, min_size=1, max_size=12)) for name in ("train", "dev", "test")}
    names = {e: draw(token) for e in entities}
    rel_texts = {r: draw(token) for r in relations}
    return entities, relations, names, rel_texts, splits


def files_of(graph) -> dict[str, bytes]:
    entities, relations, names, rel_texts, splits = graph
    return {
        "entity2text.txt": lines((e, names[e]) for e in entities),
        "relation2text.txt": lines((r, rel_texts[r]) for r in relations),
        **{f"{name}.tsv": lines(rows) for name, rows in splits.items()},
    }


def scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="kgc-prop-"))


@SETTINGS
@given(graphs())
def test_well_formed_files_round_trip(graph):
    entities, relations, names, rel_texts, splits = graph
    folder = scratch()
    try:
        kg = load_graph(write(folder / "g", files_of(graph)))
    finally:
        shutil.rmtree(folder)
    used = {e for rows in splits.values() for h, _, t in rows for e in (h, t)}
    assert kg.entity_ids == [e for e in entities if e in used]  # text-file order, unused left out
    assert kg.relation_ids == relations
    assert [kg.entity_index[e] for e in kg.entity_ids] == list(range(kg.num_entities))
    assert kg.entity_names == [names[e] for e in kg.entity_ids]
    assert kg.relation_texts == [rel_texts[r] for r in relations]
    duplicates = 0
    for name, rows in splits.items():
        unique = list(dict.fromkeys(rows))
        duplicates += len(rows) - len(unique)
        got = [(kg.entity_ids[h], kg.relation_ids[r], kg.entity_ids[t]) for h, r, t in kg.triples(name).tolist()]
        assert got == unique
    assert kg.warnings.get("duplicate_triple", 0) == duplicates
    train_entities = {e for h, _, t in splits["train"] for e in (h, t)}
    unseen = sum(1 for name in ("dev", "test") for h, _, t in dict.fromkeys(splits[name])
                 if h not in train_entities or t not in train_entities)
    assert kg.warnings.get("unseen_entity", 0) == unseen
    assert set(kg.warnings) <= {"duplicate_triple", "unseen_entity"}


def accepted(raw: bytes, fields: int) -> bool:
    """What the reader should make of one line: True if it is a data line it accepts
    (or a blank line it skips), False if it must be refused."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    text = text.strip(" \r\f\v")
    if not text:
        return True
    parts = text.split("\t")
    if len(parts) != fields:
        return False
    if " \t" in text or "\t " in text:
        parts = [p.strip() for p in parts]
    return all(parts)


# Garbage: random bytes, or random fields of printable text (often empty or too many).
garbage = st.one_of(
    st.binary(min_size=1, max_size=30).map(lambda b: b.replace(b"\n", b"")),
    st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), max_size=5),
             min_size=1, max_size=5).map(lambda parts: "\t".join(parts).encode("utf-8")),
)


@SETTINGS
@given(graphs(), st.sampled_from(["train.tsv", "dev.tsv", "test.tsv", "entity2text.txt", "relation2text.txt"]),
       garbage, st.integers(min_value=0, max_value=20))
def test_a_garbage_line_is_an_input_error_at_that_line(graph, name, bad, where):
    files = files_of(graph)
    fields = 3 if name.endswith(".tsv") else 2
    assume(not accepted(bad, fields))
    old = files[name].split(b"\n")[:-1]
    where = min(where, len(old))
    if where == 0:
        assume(not bad.startswith(b"\xef\xbb\xbf"))  # a byte-order mark opening the file is dropped
    files[name] = b"\n".join(old[:where] + [bad] + old[where:]) + b"\n"
    folder = scratch()
    try:
        load_graph(write(folder / "g", files))
    except InputError as err:
        assert err.path == str(folder / "g" / name)
        assert err.line == where + 1, str(err)
        assert str(err).startswith(f"{folder / 'g' / name}:{where + 1}: ")
    else:
        raise AssertionError(f"line {where + 1} of {name} ({bad!r}) was accepted")
    finally:
        shutil.rmtree(folder)
