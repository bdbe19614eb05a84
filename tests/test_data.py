"""kgc.data: reading benchmark folders into a KnowledgeGraph."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch

from kgc.data import KnowledgeGraph, load_graph, relation_words
from kgc.errors import InputError

REPO = Path(__file__).resolve().parents[1]
UMLS = REPO / "data" / "UMLS"
DATA_ROOT = Path(os.environ.get("KGC_DATA_ROOT", REPO.parent / "shared" / "data"))


def write(folder: Path, files: dict[str, str | bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        data = content if isinstance(content, bytes) else content.encode("utf-8")
        (folder / name).write_bytes(data)
    return folder


TINY = {
    "entity2text.txt": "cat\tCat\ndog\tDog\nmouse\tMouse\ncheese\tCheese\n",
    "entity2textlong.txt": "cat\tA small feline.\ndog\tA loyal canine.\n",
    "relation2text.txt": "chases\tchases\n_likes_to_eat\tlikes to eat\n",
    "train.tsv": "cat\tchases\tmouse\ndog\tchases\tcat\nmouse\t_likes_to_eat\tcheese\n",
    "dev.tsv": "dog\tchases\tmouse\n",
    "test.tsv": "cat\t_likes_to_eat\tmouse\n",
}


@pytest.fixture
def tiny(tmp_path) -> Path:
    return write(tmp_path / "tiny", TINY)


def triples_of(kg: KnowledgeGraph, split: str) -> list[tuple[str, str, str]]:
    return [(kg.entity_ids[h], kg.relation_ids[r], kg.entity_ids[t]) for h, r, t in kg.triples(split).tolist()]


# ------------------------------------------------------------------ good files


def test_tiny_dataset(tiny, caplog):
    with caplog.at_level(logging.INFO, logger="kgc"):
        kg = load_graph(tiny)
    assert kg.path == tiny
    assert kg.entity_ids == ["cat", "dog", "mouse", "cheese"]
    assert kg.relation_ids == ["chases", "_likes_to_eat"]
    assert kg.num_entities == 4 and kg.num_relations == 2
    assert kg.entity_names == ["Cat", "Dog", "Mouse", "Cheese"]
    assert kg.entity_descriptions == ["A small feline.", "A loyal canine.", "", ""]
    assert kg.relation_texts == ["chases", "likes to eat"]
    assert kg.entity_index == {"cat": 0, "dog": 1, "mouse": 2, "cheese": 3}
    assert kg.relation_index == {"chases": 0, "_likes_to_eat": 1}
    assert set(kg.splits) == {"train", "dev", "test"}
    for t in kg.splits.values():
        assert t.dtype == torch.int64 and t.dim() == 2 and t.shape[1] == 3
    assert kg.triples("train").tolist() == [[0, 0, 2], [1, 0, 0], [2, 1, 3]]
    assert triples_of(kg, "dev") == [("dog", "chases", "mouse")]
    assert triples_of(kg, "test") == [("cat", "_likes_to_eat", "mouse")]
    assert kg.warnings == {}
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("4 entities" in m and "2 relations" in m and "train 3" in m and "dev 1" in m and "test 1" in m
               for m in info)


def test_real_umls():
    kg = load_graph(UMLS)
    assert kg.num_entities == 135
    assert kg.num_relations == 46
    assert [len(kg.triples(s)) for s in ("train", "dev", "test")] == [5216, 652, 661]
    assert kg.warnings == {}
    assert all(kg.entity_names) and all(kg.entity_descriptions) and all(kg.relation_texts)
    assert kg.entity_names[kg.entity_index["idea_or_concept"]] == "idea or concept"


def test_no_final_newline_crlf_and_blank_lines(tmp_path):
    files = {k: v.rstrip("\n") for k, v in TINY.items()}  # no final newline anywhere
    files["train.tsv"] = "\r\n\r\ncat\tchases\tmouse\r\n   \r\ndog\tchases\tcat\r\nmouse\t_likes_to_eat\tcheese"
    kg = load_graph(write(tmp_path / "d", files))
    assert kg.entity_names == ["Cat", "Dog", "Mouse", "Cheese"]
    assert kg.entity_descriptions[1] == "A loyal canine."
    assert kg.relation_texts == ["chases", "likes to eat"]
    assert kg.triples("train").tolist() == [[0, 0, 2], [1, 0, 0], [2, 1, 3]]
    assert kg.warnings == {}


def test_conve_file_names_and_full_descriptions(tmp_path):
    files = dict(TINY)
    files["train.txt"] = files.pop("train.tsv")
    files["valid.txt"] = files.pop("dev.tsv")
    files["test.txt"] = files.pop("test.tsv")
    files["FB15k_mid2description.txt"] = (
        'cat\t"A small \\"domestic\\" feline.\\nIt purrs."@en\n'
        'mouse\tA rodent.\n')
    kg = load_graph(write(tmp_path / "conve", files))
    assert triples_of(kg, "dev") == [("dog", "chases", "mouse")]
    assert len(kg.triples("train")) == 3 and len(kg.triples("test")) == 1
    # the full description file wins over entity2textlong.txt
    assert kg.entity_descriptions == ['A small "domestic" feline. It purrs.', "", "A rodent.", ""]
    assert kg.warnings == {}


def test_name_separator_splits_short_text(tmp_path):
    files = {
        "entity2text.txt": "01\tstool, solid excretory product, of the bowels\n02\tsaxony\n03\tchief, a leader\n",
        "entity2textlong.txt": "03\tThe head of a group.\n",
        "relation2text.txt": "_hypernym\thypernym\n",
        "train.tsv": "01\t_hypernym\t02\n02\t_hypernym\t03\n",
        "dev.tsv": "01\t_hypernym\t03\n",
        "test.tsv": "02\t_hypernym\t01\n",
    }
    folder = write(tmp_path / "wn", files)
    kg = load_graph(folder, name_separator=", ")
    assert kg.entity_names == ["stool", "saxony", "chief, a leader"]
    assert kg.entity_descriptions == ["solid excretory product, of the bowels", "", "The head of a group."]
    plain = load_graph(folder)
    assert plain.entity_names[0] == "stool, solid excretory product, of the bowels"
    assert plain.entity_descriptions[0] == ""


def test_inverse_triples_and_relation_text(tiny):
    kg = load_graph(tiny)
    fwd = kg.triples("train")
    both = kg.triples("train", with_inverse=True)
    R = kg.num_relations
    assert both.shape == (6, 3)
    assert torch.equal(both[:3], fwd)
    assert both[3:].tolist() == [[2, 0 + R, 0], [0, 0 + R, 1], [3, 1 + R, 2]]
    assert kg.relation_text(1) == "likes to eat"
    assert kg.relation_text(1 + R) == "inverse likes to eat"
    with pytest.raises(IndexError):
        kg.relation_text(2 * R)
    with pytest.raises(KeyError, match="nosuch"):
        kg.triples("nosuch")


def test_relation_words_fallback():
    assert relation_words("/film/film/genre") == "film film genre"
    assert relation_words("_member_of_domain_usage") == "member of domain usage"
    assert relation_words("/a/b./c_d") == "a b c d"


def test_only_some_splits(tiny):
    kg = load_graph(tiny, splits=("train", "test"))
    assert set(kg.splits) == {"train", "test"}


# ------------------------------------------------------------------ errors


def assert_input_error(folder: Path, file: str, line: int | None, *words: str, **kwargs) -> InputError:
    with pytest.raises(InputError) as info:
        load_graph(folder, **kwargs)
    err = info.value
    message = str(err)
    assert file in message
    if line is not None:
        assert err.line == line
        assert f"{file}:{line}:" in message
    for w in words:
        assert w in message
    return err


def test_wrong_field_count(tmp_path):
    files = dict(TINY, **{"train.tsv": "cat\tchases\tmouse\n\ndog\tchases\n"})
    assert_input_error(write(tmp_path / "d", files), "train.tsv", 3, "expected 3", "found 2")


def test_wrong_field_count_in_text_file(tmp_path):
    files = dict(TINY, **{"entity2text.txt": "cat\tCat\ndog\tDog\tdoggy\n"})
    assert_input_error(write(tmp_path / "d", files), "entity2text.txt", 2, "expected 2", "found 3")


def test_empty_id(tmp_path):
    files = dict(TINY, **{"dev.tsv": "dog\tchases\tmouse\ncat\t\tmouse\n"})
    assert_input_error(write(tmp_path / "d", files), "dev.tsv", 2, "empty relation")
    files = dict(TINY, **{"relation2text.txt": "chases\tchases\n  \tlikes to eat\n"})
    assert_input_error(write(tmp_path / "e", files), "relation2text.txt", 2, "empty id")


def test_non_utf8_byte(tmp_path):
    bad = b"cat\tchases\tmouse\ndog\tchases\tcat\nmou\xffse\t_likes_to_eat\tcheese\n"
    files = dict(TINY, **{"train.tsv": bad})
    assert_input_error(write(tmp_path / "d", files), "train.tsv", 3, "UTF-8", "0xff")


def test_empty_file(tmp_path):
    files = dict(TINY, **{"test.tsv": "\n\n"})
    assert_input_error(write(tmp_path / "d", files), "test.tsv", 1, "empty")
    files = dict(TINY, **{"relation2text.txt": ""})
    assert_input_error(write(tmp_path / "e", files), "relation2text.txt", 1, "empty")


def test_missing_train(tmp_path):
    files = {k: v for k, v in TINY.items() if k != "train.tsv"}
    folder = write(tmp_path / "notrain", files)
    err = assert_input_error(folder, "notrain", None, "train.tsv", "train.txt")
    assert err.line is None


def test_missing_folder(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_graph(tmp_path / "absent")


# ------------------------------------------------------------------ counted warnings


def test_entity_and_relation_without_text(tmp_path):
    files = dict(TINY, **{"train.tsv": TINY["train.tsv"] + "fish\tswims_in/the.sea\tcheese\n"})
    kg = load_graph(write(tmp_path / "d", files))
    assert kg.entity_ids[-1] == "fish" and kg.entity_names[-1] == "fish" and kg.entity_descriptions[-1] == ""
    assert kg.relation_ids[-1] == "swims_in/the.sea"
    assert kg.relation_texts[-1] == "swims in the sea"
    assert kg.warnings == {"entity_without_text": 1, "relation_without_text": 1}


def test_entities_from_triples_follow_text_order(tmp_path):
    files = dict(TINY)
    files["entity2text.txt"] = "mouse\tMouse\n"
    files["relation2text.txt"] = "chases\tchases\n"
    kg = load_graph(write(tmp_path / "d", files))
    assert kg.entity_ids == ["mouse", "cat", "dog", "cheese"]
    assert kg.relation_ids == ["chases", "_likes_to_eat"]
    assert kg.entity_names == ["Mouse", "cat", "dog", "cheese"]
    assert kg.entity_descriptions == ["", "A small feline.", "A loyal canine.", ""]
    assert kg.warnings == {"entity_without_text": 3, "relation_without_text": 1}


def test_duplicate_triple(tmp_path, caplog):
    files = dict(TINY, **{"train.tsv": TINY["train.tsv"] + "cat\tchases\tmouse\n"})
    with caplog.at_level(logging.WARNING, logger="kgc"):
        kg = load_graph(write(tmp_path / "d", files))
    assert len(kg.triples("train")) == 3
    assert kg.warnings == {"duplicate_triple": 1}
    assert any("train.tsv:4:" in r.getMessage() for r in caplog.records)


def test_unseen_entity(tmp_path):
    files = dict(TINY, **{"test.tsv": "cat\tchases\tcheese\ndog\tchases\tcheese\n"})  # cheese: train tail
    files["dev.tsv"] = "dog\tchases\tmouse\ncheese\tchases\tbird\n"
    kg = load_graph(write(tmp_path / "d", files))
    assert kg.warnings == {"unseen_entity": 1, "entity_without_text": 1}


def test_duplicate_text(tmp_path):
    files = dict(TINY, **{"entity2text.txt": "cat\tCat\ndog\tDog\ncat\tKitty\nmouse\tMouse\ncheese\tCheese\n",
                          "relation2text.txt": TINY["relation2text.txt"] + "chases\truns after\n"})
    kg = load_graph(write(tmp_path / "d", files))
    assert kg.entity_names[0] == "Cat"
    assert kg.relation_texts[0] == "chases"
    assert kg.warnings == {"duplicate_text": 2}


def test_missing_dev_and_test(tmp_path):
    files = {k: v for k, v in TINY.items() if k not in ("dev.tsv", "test.tsv")}
    kg = load_graph(write(tmp_path / "d", files))
    for split in ("dev", "test"):
        assert kg.triples(split).shape == (0, 3)
        assert kg.triples(split, with_inverse=True).shape == (0, 3)
    assert kg.warnings == {"missing_split": 2}


# ------------------------------------------------------------------ full benchmarks (when present)

needs_data = pytest.mark.skipif(not (DATA_ROOT / "WN18RR" / "train.tsv").is_file(),
                                reason=f"benchmark data not found under {DATA_ROOT} (set KGC_DATA_ROOT)")


@needs_data
def test_wn18rr():
    kg = load_graph(DATA_ROOT / "WN18RR", name_separator=", ")
    assert kg.num_entities == 40943
    assert kg.num_relations == 11
    assert [len(kg.triples(s)) for s in ("train", "dev", "test")] == [86835, 3034, 3134]
    assert all(kg.entity_names)
    assert "," not in kg.entity_names[kg.entity_index["14854262"]]
    assert set(kg.warnings) <= {"unseen_entity"}
