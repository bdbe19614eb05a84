"""Raw benchmark files -> a graph of integer ids.

The reader understands the KG-BERT layout (``train.tsv``/``dev.tsv``/``test.tsv``,
``entity2text.txt``, optional ``entity2textlong.txt``, ``relation2text.txt``) and also the
ConvE/SimKGC split names (``train.txt``/``valid.txt``/``test.txt``) and the full FB15k-237
description file ``FB15k_mid2description.txt``.

Anything that makes the data unusable raises :class:`~kgc.errors.InputError` naming the
file and the 1-based line; problems a run can live with are counted by a
:class:`~kgc.errors.WarningCounter` and end up in :attr:`KnowledgeGraph.warnings`.
"""

from __future__ import annotations

import gc
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch

from kgc.errors import InputError, WarningCounter

log = logging.getLogger("kgc")

SPLITS = ("train", "dev", "test")

# File names tried for each split, first match wins (KG-BERT first, then ConvE/SimKGC).
SPLIT_FILES: dict[str, tuple[str, ...]] = {
    "train": ("train.tsv", "train.txt"),
    "dev": ("dev.tsv", "valid.txt", "dev.txt", "valid.tsv"),
    "test": ("test.tsv", "test.txt"),
}
ENTITY_TEXT_FILE = "entity2text.txt"
RELATION_TEXT_FILE = "relation2text.txt"
# Long-description files, most preferred first.
DESCRIPTION_FILES = ("FB15k_mid2description.txt", "entity2textlong.txt")

_TRIPLE_FIELDS = ("head", "relation", "tail")
_TEXT_FIELDS = ("id", "text")
_SPACE = " \r\f\v"  # whitespace stripped from line ends (not tabs: they separate fields)


@dataclass
class KnowledgeGraph:
    """A knowledge graph with integer ids, the texts of its entities and relations, and its splits.

    Entity ``e`` is ``entity_ids[e]``; forward relation ``r`` (``0 <= r < R``) is
    ``relation_ids[r]`` and ``r + R`` stands for its inverse.
    """

    path: Path
    entity_ids: list[str]
    relation_ids: list[str]
    entity_names: list[str]
    entity_descriptions: list[str]
    relation_texts: list[str]
    splits: dict[str, torch.Tensor]
    warnings: dict[str, int] = field(default_factory=dict)
    entity_index: dict[str, int] = field(default_factory=dict)
    relation_index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.entity_index:
            self.entity_index = {e: i for i, e in enumerate(self.entity_ids)}
        if not self.relation_index:
            self.relation_index = {r: i for i, r in enumerate(self.relation_ids)}

    @property
    def num_entities(self) -> int:
        return len(self.entity_ids)

    @property
    def num_relations(self) -> int:
        """Number of forward relations R (inverse relations are ``R .. 2R-1``)."""
        return len(self.relation_ids)

    def triples(self, split: str, with_inverse: bool = False) -> torch.Tensor:
        """The ``[n, 3]`` int64 (head, relation, tail) triples of ``split``.

        With ``with_inverse`` the ``n`` inverse triples ``(t, r + R, h)`` follow the forward ones.
        """
        if split not in self.splits:
            raise KeyError(f"no split {split!r} loaded (have: {', '.join(self.splits) or 'none'})")
        fwd = self.splits[split]
        if not with_inverse:
            return fwd
        inv = torch.stack((fwd[:, 2], fwd[:, 1] + self.num_relations, fwd[:, 0]), dim=1)
        return torch.cat((fwd, inv), dim=0)

    def relation_text(self, r: int) -> str:
        """Words of relation ``r`` in ``[0, 2R)``; inverse relations read ``"inverse <text>"``."""
        n = self.num_relations
        r = int(r)
        if 0 <= r < n:
            return self.relation_texts[r]
        if n <= r < 2 * n:
            return "inverse " + self.relation_texts[r - n]
        raise IndexError(f"relation {r} out of range [0, {2 * n})")


def relation_words(raw_id: str) -> str:
    """Fallback text of a relation: its raw id with ``_``, ``/`` and ``.`` read as spaces."""
    text = raw_id.replace("_", " ").replace("/", " ").replace(".", " ")
    return " ".join(text.split())


# ----------------------------------------------------------------------------- reading


def _read_rows(path: Path, names: Sequence[str]) -> list[tuple[int, list[str]]]:
    """Rows of a tab-separated file as ``(line number, stripped fields)``.

    Blank lines are skipped, a trailing ``\\r`` is dropped and a missing final newline is
    fine. Raises :class:`InputError` for bad UTF-8, a wrong field count, an empty field or a
    file with no data lines.
    """
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line_start = raw.rfind(b"\n", 0, err.start) + 1
        line_no = raw.count(b"\n", 0, err.start) + 1
        raise InputError(path, line_no, f"not valid UTF-8: byte 0x{raw[err.start]:02x} at byte "
                                        f"{err.start - line_start + 1} of the line") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    expected = len(names)
    rows: list[tuple[int, list[str]]] = []
    # split("\n") rather than splitlines(): descriptions may hold \x1c, \u2028 and the like.
    for line_no, line in enumerate(text.split("\n"), start=1):
        line = line.strip(_SPACE)  # drops the "\r" of Windows line ends, keeps tabs
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != expected:
            raise InputError(path, line_no, f"expected {expected} tab-separated fields "
                                            f"({', '.join(names)}), found {len(fields)}")
        if " \t" in line or "\t " in line:
            fields = [f.strip() for f in fields]
        if "" in fields:
            i = fields.index("")
            raise InputError(path, line_no, f"empty {names[i]} (field {i + 1} of {expected})")
        rows.append((line_no, fields))
    if not rows:
        raise InputError(path, 1, "file is empty: no data lines")
    return rows


def _read_texts(path: Path, warnings: WarningCounter) -> dict[str, str]:
    """``id -> text`` of a two-column text file (first occurrence of an id wins)."""
    texts: dict[str, str] = {}
    for line_no, (key, text) in _read_rows(path, _TEXT_FIELDS):
        if key in texts:
            warnings.warn("duplicate_text", path, line_no, f"id {key!r} listed again; keeping its first text")
            continue
        texts[key] = text
    return texts


def _clean_description(text: str) -> str:
    """Undo the RDF-literal quoting of ``FB15k_mid2description.txt`` (``"..."@en`` with
    backslash escapes); other text passes through unchanged."""
    if text.startswith('"'):
        quote = text.rfind('"@')
        if quote > 0 and text[quote + 2:].replace("-", "").isalpha():
            body = text[1:quote]
            text = (body.replace("\\\\", "\x00").replace('\\"', '"').replace("\\n", " ")
                    .replace("\\t", " ").replace("\x00", "\\"))
            text = " ".join(text.split())
    return text


def _find(data_dir: Path, candidates: Iterable[str]) -> Path | None:
    for name in candidates:
        p = data_dir / name
        if p.is_file():
            return p
    return None


# ----------------------------------------------------------------------------- loading


def load_graph(data_dir: str | os.PathLike, *, name_separator: str | None = None,
               splits: Sequence[str] = SPLITS) -> KnowledgeGraph:
    """Read a dataset folder into a :class:`KnowledgeGraph`.

    ``name_separator`` (WN18RR: ``", "``): for an entity without a long description, its
    ``entity2text`` text is split at the first separator into name and description.
    ``splits``: the splits to read; ``train`` is required when asked for, a missing dev/test
    file gives a warning and an empty split.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError(data_dir, None, "dataset folder not found")
    # Hundreds of thousands of small lists and tuples: the cyclic garbage collector would
    # rescan them over and over (3x slower on FB15k-237) although none can form a cycle.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _load(data_dir, name_separator, splits)
    finally:
        if gc_was_enabled:
            gc.enable()


def _load(data_dir: Path, name_separator: str | None, splits: Sequence[str]) -> KnowledgeGraph:
    warnings = WarningCounter()

    # --- texts ----------------------------------------------------------------
    entity_text_path = data_dir / ENTITY_TEXT_FILE
    if entity_text_path.is_file():
        entity_texts = _read_texts(entity_text_path, warnings)
    else:
        warnings.warn("missing_file", entity_text_path, None, "no entity text file; entities are named by their ids")
        entity_texts = {}
    relation_text_path = data_dir / RELATION_TEXT_FILE
    if relation_text_path.is_file():
        relation_texts_raw = _read_texts(relation_text_path, warnings)
    else:
        warnings.warn("missing_file", relation_text_path, None,
                      "no relation text file; relations are described by their ids")
        relation_texts_raw = {}
    description_path = _find(data_dir, DESCRIPTION_FILES)
    long_descriptions: dict[str, str] = {}
    if description_path is not None:
        for key, text in _read_texts(description_path, warnings).items():
            long_descriptions[key] = _clean_description(text)

    entity_ids = list(entity_texts)
    entity_index = {e: i for i, e in enumerate(entity_ids)}
    relation_ids = list(relation_texts_raw)
    relation_index = {r: i for i, r in enumerate(relation_ids)}

    # --- triples ----------------------------------------------------------------
    wanted = list(dict.fromkeys(splits))
    order = (["train"] if "train" in wanted else []) + [s for s in wanted if s != "train"]
    split_tensors: dict[str, torch.Tensor] = {}
    train_entities: set[int] | None = None
    for split in order:
        looked_for = SPLIT_FILES.get(split, (f"{split}.tsv", f"{split}.txt"))
        path = _find(data_dir, looked_for)
        if path is None:
            if split == "train":
                raise InputError(data_dir, None, f"no training file: looked for {' or '.join(looked_for)}")
            warnings.warn("missing_split", data_dir, None,
                          f"no {split} file (looked for {' or '.join(looked_for)}); the split is empty")
            split_tensors[split] = torch.empty((0, 3), dtype=torch.long)
            continue
        triples: list[tuple[int, int, int]] = []
        seen: set[tuple[int, int, int]] = set()
        for line_no, (h_raw, r_raw, t_raw) in _read_rows(path, _TRIPLE_FIELDS):
            h = entity_index.get(h_raw)
            if h is None:
                h = _add_entity(h_raw, entity_ids, entity_index, warnings, path, line_no)
            r = relation_index.get(r_raw)
            if r is None:
                r = len(relation_ids)
                relation_ids.append(r_raw)
                relation_index[r_raw] = r
                warnings.warn("relation_without_text", path, line_no,
                              f"relation {r_raw!r} has no text; using {relation_words(r_raw)!r}")
            t = entity_index.get(t_raw)
            if t is None:
                t = _add_entity(t_raw, entity_ids, entity_index, warnings, path, line_no)
            triple = (h, r, t)
            if triple in seen:
                warnings.warn("duplicate_triple", path, line_no,
                              f"triple ({h_raw}, {r_raw}, {t_raw}) repeated; kept once")
                continue
            seen.add(triple)
            triples.append(triple)
            if train_entities is not None and (h not in train_entities or t not in train_entities):
                unseen = h_raw if h not in train_entities else t_raw
                warnings.warn("unseen_entity", path, line_no,
                              f"entity {unseen!r} never appears in the training triples")
        tensor = torch.tensor(triples, dtype=torch.long).reshape(-1, 3)
        split_tensors[split] = tensor
        if split == "train":
            train_entities = set(tensor[:, 0].tolist()) | set(tensor[:, 2].tolist())

    # --- the entity universe: entities of the graph's triples ---------------------
    # Text files may list more entities than the benchmark uses (FB15k-237's entity2text
    # holds 14,951 against 14,541 in its triples); ranking against those would add
    # distractors that published results never had, so only entities of a triple stay.
    used = torch.zeros(len(entity_ids), dtype=torch.bool)
    for tensor in split_tensors.values():
        used[tensor[:, 0]] = True
        used[tensor[:, 2]] = True
    if not bool(used.all()):
        new_id = torch.cumsum(used.long(), 0) - 1
        log.info("%s: %d entities of the text files appear in no triple and are left out",
                 data_dir, int((~used).sum()))
        entity_ids = [e for e, keep in zip(entity_ids, used.tolist()) if keep]
        entity_index = {e: i for i, e in enumerate(entity_ids)}
        split_tensors = {s: torch.stack([new_id[t[:, 0]], t[:, 1], new_id[t[:, 2]]], dim=1) if len(t) else t
                         for s, t in split_tensors.items()}

    # --- names and descriptions ---------------------------------------------------
    names: list[str] = []
    descriptions: list[str] = []
    for e in entity_ids:
        text = entity_texts.get(e)
        description = long_descriptions.get(e, "")
        if text is None:
            name = e
        elif name_separator and e not in long_descriptions:
            head, sep, rest = text.partition(name_separator)
            name = head.strip() if sep and head.strip() else text
            description = rest.strip() if sep else ""
        else:
            name = text
        names.append(name)
        descriptions.append(description)
    relation_texts = [relation_texts_raw.get(r) or relation_words(r) for r in relation_ids]

    kg = KnowledgeGraph(
        path=data_dir,
        entity_ids=entity_ids,
        relation_ids=relation_ids,
        entity_names=names,
        entity_descriptions=descriptions,
        relation_texts=relation_texts,
        splits={s: split_tensors[s] for s in wanted},
        warnings=warnings.summary(),
        entity_index=entity_index,
        relation_index=relation_index,
    )
    log.info("loaded %s: %d entities, %d relations, triples %s", data_dir, kg.num_entities,
             kg.num_relations, ", ".join(f"{s} {len(t)}" for s, t in kg.splits.items()))
    return kg


def _add_entity(raw: str, entity_ids: list[str], entity_index: dict[str, int],
                warnings: WarningCounter, path: Path, line_no: int) -> int:
    idx = len(entity_ids)
    entity_ids.append(raw)
    entity_index[raw] = idx
    warnings.warn("entity_without_text", path, line_no, f"entity {raw!r} has no text; using its id as its name")
    return idx
