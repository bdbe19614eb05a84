"""Embeddings of every entity (and of evaluation queries), computed once without gradients:
texts sorted by length, large batches each padded to its own longest text, mixed precision.
Entity embeddings of a checkpoint are cached beside it (safetensors, with a fingerprint of
the weights and texts they came from)."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from kgc.batches import TokenBatch
from kgc.lanes import lanes_for, resolve_lanes
from kgc.encoder import BiEncoder
from kgc.io import atomic_path
from kgc.tokens import TokenCache

log = logging.getLogger("kgc")

CACHE_FILE = "entity_embeddings.safetensors"


def inference_copy(encoder: torch.nn.Module, precision: str) -> torch.nn.Module:
    """The encoder as it runs without gradients: a copy whose weights are cast to bf16/fp16
    once (autocast would re-cast every weight at every call). Encoders without a packed
    forward pass (:mod:`kgc.packed`) run their own, with the fused attention kernel."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    fast = copy.deepcopy(encoder).to(dtype).eval()
    if hasattr(fast, "set_attn_implementation"):
        try:
            fast.set_attn_implementation("sdpa")
        except (ValueError, ImportError):  # a model without an SDPA path keeps its own
            pass
    return fast


@torch.no_grad()
def _encode_sorted(model: BiEncoder, encoder: torch.nn.Module, seqs: list[tuple[tuple[int, ...], tuple[int, ...]]],
                   pad_id: int, device: torch.device, precision: str, batch_size: int,
                   desc: str | None, lanes: int | None = None) -> torch.Tensor:
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i][0]))
    # batches of up to batch_size texts of one length: attention then needs no padding
    batches: list[list[int]] = []
    for i in order:
        if not batches or len(batches[-1]) == batch_size or len(seqs[i][0]) != len(seqs[batches[-1][-1]][0]):
            batches.append([])
        batches[-1].append(i)
    out: torch.Tensor | None = None
    encoder = inference_copy(encoder, precision)
    lanes = resolve_lanes(lanes, device)
    for idx in tqdm(batches, desc=desc, disable=desc is None, leave=False):
        batch = TokenBatch.build([seqs[i][0] for i in idx], [seqs[i][1] for i in idx], pad_id, len(idx),
                                 lanes_for(len(idx), lanes))
        vecs = model.encode_with(encoder, batch.to(device))
        if out is None:
            out = torch.empty(len(seqs), vecs.shape[1], dtype=torch.float32, device=device)
        out[torch.tensor(idx, device=device)] = vecs
    if out is None:
        raise ValueError("nothing to encode")
    return out


def encode_entities(model: BiEncoder, tokens: TokenCache, device: torch.device, precision: str,
                    batch_size: int = 512, progress: bool = True, lanes: int | None = None) -> torch.Tensor:
    """[N, d] float32 unit vectors of every entity (its text with all its neighbour names);
    ``lanes``: the ``cpu_lanes`` setting (:mod:`kgc.lanes`, ``None`` = one per CPU thread)."""
    was_training = model.training
    model.eval()
    seqs = [tokens.entity(e) for e in range(len(tokens.entities))]
    vecs = _encode_sorted(model, model.entity_module(), seqs, tokens.pad_id, device, precision, batch_size,
                          "encoding entities" if progress else None, lanes)
    model.train(was_training)
    return vecs


def encode_queries(model: BiEncoder, tokens: TokenCache, heads: torch.Tensor, relations: torch.Tensor,
                   device: torch.device, precision: str, batch_size: int = 512,
                   progress: bool = True, lanes: int | None = None) -> torch.Tensor:
    """[Q, d] float32 unit vectors of (head, relation) queries; a pair asked several times
    (a 1-to-N relation: 9% of WN18RR's test queries) is encoded once."""
    was_training = model.training
    model.eval()
    pairs, where = torch.stack([heads, relations], dim=1).unique(dim=0, return_inverse=True)
    seqs = [tokens.query(h, r) for h, r in pairs.tolist()]
    vecs = _encode_sorted(model, model.query_encoder, seqs, tokens.pad_id, device, precision, batch_size,
                          "encoding queries" if progress else None, lanes)
    model.train(was_training)
    return vecs[where.to(vecs.device)]


def fingerprint(checkpoint_dir: Path, tokens: TokenCache, precision: str) -> str:
    """Identifies the weights and entity texts that a cached matrix was computed from."""
    h = hashlib.sha256()
    for f in sorted(Path(checkpoint_dir).rglob("*.safetensors")):
        if f.name == CACHE_FILE:
            continue
        st = f.stat()
        h.update(f"{f.relative_to(checkpoint_dir)}:{st.st_size}:{st.st_mtime_ns}".encode())
    for e in range(len(tokens.entities)):
        h.update(json.dumps(tokens.entity(e)[0]).encode())
    h.update(precision.encode())
    return h.hexdigest()


def load_cached(checkpoint_dir: Path, key: str) -> torch.Tensor | None:
    path = Path(checkpoint_dir) / CACHE_FILE
    if not path.exists():
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        if (f.metadata() or {}).get("fingerprint") != key:
            log.info("entity embedding cache %s is stale; recomputing", path)
            return None
    return load_file(str(path))["entities"]


def save_cached(checkpoint_dir: Path, key: str, vecs: torch.Tensor) -> None:
    with atomic_path(Path(checkpoint_dir) / CACHE_FILE) as tmp:
        save_file({"entities": vecs.contiguous().cpu()}, str(tmp), metadata={"fingerprint": key})
