"""Rank candidate tails for a user's own (head, relation) queries with a trained checkpoint.

Entity embeddings are computed once and cached beside the checkpoint
(``entity_embeddings.safetensors``); later calls only encode the query.

    >>> import kgc
    >>> p = kgc.load("runs/umls")
    >>> p.predict("virus", "causes", top_k=5)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from kgc import checkpoint
from kgc.config import Config
from kgc.dataset import Dataset
from kgc.embeddings import encode_entities, encode_queries, fingerprint, load_cached, save_cached
from kgc.encoder import BiEncoder, load_tokenizer
from kgc.errors import InputError, KGCError
from kgc.precision import pick_device, resolve_precision

log = logging.getLogger("kgc")


@dataclass
class Prediction:
    entity: str
    text: str
    score: float


class Predictor:
    def __init__(self, model: BiEncoder, ds: Dataset, cfg: Config, device: torch.device, precision: str,
                 entity_vecs: torch.Tensor, directory: Path | None = None):
        self.model, self.ds, self.cfg, self.directory = model, ds, cfg, directory
        self.device, self.precision = device, precision
        self.entity_vecs = entity_vecs
        kg = ds.kg
        self._names: dict[str, list[int]] = {}
        for e, name in enumerate(kg.entity_names):
            self._names.setdefault(name.strip().lower(), []).append(e)
        self._relations: dict[str, int] = {}
        for r in range(2 * kg.num_relations):
            self._relations.setdefault(kg.relation_text(r).strip().lower(), r)
        for r, rid in enumerate(kg.relation_ids):
            self._relations[rid.lower()] = r
            self._relations[f"inverse {rid}".lower()] = r + kg.num_relations

    @classmethod
    def load(cls, checkpoint_dir: str | Path, data_dir: str | None = None, device: str | None = None,
             progress: bool = True, **overrides) -> "Predictor":
        """A checkpoint, its data and its entity matrix (from the cache beside it when current).

        ``overrides`` replace stored settings (e.g. ``rerank_hops`` for an evaluation)."""
        directory = checkpoint.model_dir(checkpoint_dir)
        info = checkpoint.read_info(directory)
        data_dir = data_dir or overrides.pop("data_dir", None) or info.get("data_dir") or info["config"]["data_dir"]
        cfg = checkpoint.load_config(directory, data_dir=data_dir, **overrides)
        dev = pick_device(device)
        precision = resolve_precision(cfg.precision, dev)
        model = checkpoint.load_model(directory, cfg).to(dev).eval()
        ds = Dataset.build(cfg, load_tokenizer(str(directory / "tokenizer")))
        key = fingerprint(directory, ds.tokens, precision)
        vecs = load_cached(directory, key)
        if vecs is None:
            vecs = encode_entities(model, ds.tokens, dev, precision, cfg.eval_batch_size, progress, cfg.cpu_lanes)
            try:
                save_cached(directory, key, vecs)
            except OSError as err:  # a read-only checkpoint still predicts
                log.warning("could not cache entity embeddings in %s: %s", directory, err)
        return cls(model, ds, cfg, dev, precision, vecs.to(dev), directory)

    # ------------------------------------------------------------------ lookup
    def resolve_entity(self, text: str) -> int:
        """An entity by raw id, else by its name (case-insensitive, must be unambiguous)."""
        kg = self.ds.kg
        if text in kg.entity_index:
            return kg.entity_index[text]
        matches = self._names.get(text.strip().lower(), [])
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            ids = ", ".join(kg.entity_ids[e] for e in matches[:5])
            raise KGCError(f"entity name {text!r} is ambiguous ({ids}, ...): give its id")
        raise KGCError(f"unknown entity {text!r}: give an entity id or name of {kg.path}")

    def resolve_relation(self, text: str) -> int:
        """A relation by raw id or by its text; ``inverse <relation>`` selects the inverse."""
        r = self._relations.get(text.strip().lower())
        if r is None:
            raise KGCError(f"unknown relation {text!r}: known ones are "
                           + ", ".join(self.ds.kg.relation_ids[:10]) + (" ..." if self.ds.kg.num_relations > 10 else ""))
        return r

    # ------------------------------------------------------------------ ranking
    def predict_many(self, queries: list[tuple[str, str]], top_k: int = 10,
                     exclude_known: bool = False) -> list[list[Prediction]]:
        """Top ``top_k`` tails of each (head, relation); ``exclude_known`` drops answers already in the graph."""
        if top_k < 1:
            raise KGCError("top_k must be at least 1")
        heads = torch.tensor([self.resolve_entity(h) for h, _ in queries], dtype=torch.long)
        rels = torch.tensor([self.resolve_relation(r) for _, r in queries], dtype=torch.long)
        qv = encode_queries(self.model, self.ds.tokens, heads, rels, self.device, self.precision,
                            self.cfg.eval_batch_size, progress=False, lanes=self.cfg.cpu_lanes)
        scores = qv @ self.entity_vecs.T
        if exclude_known:
            rows, cols = self.ds.known.answers(heads, rels)
            scores[rows.to(scores.device), cols.to(scores.device)] = -torch.inf
        k = min(top_k, scores.shape[1])
        top = scores.topk(k, dim=1)
        kg = self.ds.kg
        return [[Prediction(kg.entity_ids[e], self.ds.texts.entities[e], float(s))
                 for e, s in zip(idx.tolist(), val.tolist()) if s > -torch.inf]
                for idx, val in zip(top.indices, top.values)]

    def predict(self, head: str, relation: str, top_k: int = 10, exclude_known: bool = False) -> list[Prediction]:
        return self.predict_many([(head, relation)], top_k, exclude_known)[0]


def read_queries(path: str | Path) -> list[tuple[int, str, str]]:
    """A query file: one ``head<TAB>relation`` a line (ids or names); ``#`` starts a comment.

    Returns ``(line number, head, relation)`` so later errors can point at the line."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise InputError(path, None, f"cannot read query file ({err.strerror})") from None
    queries = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            text = line.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as err:
            raise InputError(path, number, f"not UTF-8 (byte 0x{line[err.start]:02x} at column {err.start + 1})") from None
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        fields = text.split("\t")
        if len(fields) != 2:
            raise InputError(path, number, f"expected 2 tab-separated fields (head, relation), found {len(fields)}")
        if not fields[0].strip() or not fields[1].strip():
            raise InputError(path, number, "empty head or relation")
        queries.append((number, fields[0].strip(), fields[1].strip()))
    if not queries:
        raise InputError(path, 1, "no queries in file (only blank or comment lines)")
    return queries
