"""The forward pass of a BERT encoder over packed (unpadded) sequences.

A batch's sequences, sorted by length, are concatenated into one [T, hidden] matrix of
real tokens (:class:`kgc.batches.TokenBatch`). Every linear layer, layer norm and
activation runs on real tokens only: no work on padding (with chunks of 128 sorted
sequences padded to their longest, padding was 18% of the tokens of a WN18RR training
batch). Only self-attention needs sequences apart: each group of similar-length sequences
is scattered into an [n, width] grid, attends, and is gathered back.

The computation is the Hugging Face ``BertModel``'s own, with its own parameters and
modules (embedding tables, layer norms, dropout, activation), so weights, gradients,
dropout and ``save_pretrained`` are those of the model; the self-attention arithmetic and
the linear layers' products are written here. Under bf16 autocast the residual stream is
kept in bf16, and on CPU each linear layer adds its bias inside oneDNN's product
(:func:`linear`).
Tests check it against the model's padded forward pass (exactly in fp32, within bf16
rounding under autocast).
Encoders of other architectures run their own forward pass on padded groups.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from kgc import lanes
from kgc.batches import AttentionGroup, TokenBatch


def supports(encoder: nn.Module) -> bool:
    """True for an encoder-only BERT with absolute positions (BERT, MiniLM, ...)."""
    cfg = getattr(encoder, "config", None)
    if not (cfg is not None and cfg.model_type == "bert" and not cfg.is_decoder
            and getattr(cfg, "position_embedding_type", "absolute") == "absolute"
            and hasattr(encoder, "embeddings") and hasattr(getattr(encoder, "encoder", None), "layer")):
        return False
    # the pass below computes the linear maps from their weights: plain nn.Linear layers only
    # (an adapter wrapped around one would be skipped)
    return all(type(m) is nn.Linear for layer in encoder.encoder.layer
               for m in (layer.attention.self.query, layer.attention.self.key, layer.attention.self.value,
                         layer.attention.output.dense, layer.intermediate.dense, layer.output.dense))


@functools.lru_cache(maxsize=None)
def _bias_in_product() -> bool:
    """Whether oneDNN's linear kernel with the bias added in its epilogue is there and
    computes ``x @ W.T + b`` (checked once on a small bf16 product)."""
    try:
        gen = torch.Generator().manual_seed(0)
        x, w, b = (torch.randn(shape, generator=gen).to(torch.bfloat16) for shape in ((8, 16), (4, 16), (4,)))
        got = torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    want = x.float() @ w.float().T + b.float()
    return got.shape == want.shape and torch.allclose(got.float(), want, atol=0.1, rtol=0.02)


class _BiasInProduct(torch.autograd.Function):
    """``x @ W.T + b`` for bf16 CPU tensors in one oneDNN call. ``F.linear`` first copies
    the bias into every output row and then adds the product to it; with the bias added in
    the kernel's epilogue a forward product here takes 4-10% less time (MiniLM's shapes,
    4,500 tokens, one core) and gives the same bits. The backward pass is the usual one."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad.mm(weight) if ctx.needs_input_grad[0] else None
        return grad_x, x.t().mm(grad).t(), grad.sum(0)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear`` for [tokens, in] inputs, through :class:`_BiasInProduct` when ``x`` and the
    weights are bf16 on a CPU whose oneDNN has that kernel."""
    if (bias is not None and x.device.type == "cpu" and x.dtype == weight.dtype == bias.dtype == torch.bfloat16
            and x.dim() == 2 and _bias_in_product()):
        return _BiasInProduct.apply(x, weight, bias)
    return F.linear(x, weight, bias)


Linear = tuple[torch.Tensor, torch.Tensor]  # (weight, bias)


def _layer_weights(layer: nn.Module, dtype: torch.dtype | None) -> tuple[Linear, Linear, Linear, Linear]:
    """A layer's four linear maps (fused q/k/v, attention output, intermediate, output),
    cast to ``dtype`` when given: once per lane and pass, where autocast would cast every
    weight again for every group."""
    pairs = [_fused_qkv(layer.attention.self)] + [(m.weight, m.bias) for m in (
        layer.attention.output.dense, layer.intermediate.dense, layer.output.dense)]
    return tuple((w.to(dtype), b.to(dtype)) if dtype is not None else (w, b) for w, b in pairs)


def _fused_qkv(attn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """One [3 * hidden, hidden] weight (and bias) for the query, key and value projections,
    the 1/sqrt(head size) attention scale folded into the query part."""
    weight = torch.cat([attn.query.weight * attn.scaling, attn.key.weight, attn.value.weight])
    bias = torch.cat([attn.query.bias * attn.scaling, attn.key.bias, attn.value.bias])
    return weight, bias


def _self_attention(attn: nn.Module, qkv_weights: tuple[torch.Tensor, torch.Tensor], x: torch.Tensor,
                    g: AttentionGroup, mask: torch.Tensor | None) -> torch.Tensor:
    """Multi-head self-attention of one group's sequences; [tokens, hidden] in and out.

    Plain products and softmax: for sequences of ~30 tokens they beat the fused CPU kernel
    (measured here: 13 vs 18 ms a layer for 256 texts of 27 tokens, bf16), forward and
    backward. ``qkv_weights``: the first pair of :func:`_layer_weights`."""
    heads, head_dim = attn.num_attention_heads, attn.attention_head_size
    hidden = heads * head_dim
    qkv = linear(x, *qkv_weights)  # [tokens, 3 * hidden]
    if mask is not None:  # scatter into the padded grid
        qkv = qkv.new_zeros(g.num_seqs * g.width, 3 * hidden).index_copy(0, g.slots, qkv)
    q, k, v = qkv.view(g.num_seqs, g.width, 3, heads, head_dim).permute(2, 0, 3, 1, 4)  # [n, heads, width, dim]
    scores = torch.matmul(q, k.transpose(-1, -2))
    if mask is not None:
        scores = scores + mask
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32)  # in fp32 whatever the precision
    if attn.training and attn.dropout.p > 0:
        probs = attn.dropout(probs)
    ctx = torch.matmul(probs.to(v.dtype), v).transpose(1, 2).reshape(g.num_seqs * g.width, hidden)
    return ctx if mask is None else ctx.index_select(0, g.slots)


def forward(encoder: nn.Module, batch: TokenBatch) -> torch.Tensor:
    """Last hidden states of every real token, [T, hidden], in the batch's packed order.

    The embedding look-up runs once over the whole batch (its backward builds one dense
    gradient of the vocabulary table, not one per group); the layers run group by group,
    whose activations (a few thousand tokens) keep the element-wise steps in cache (the
    whole batch at once was slower), each lane's groups in its own thread (:mod:`kgc.lanes`)."""
    emb = encoder.embeddings
    x = (emb.word_embeddings(batch.input_ids) + emb.token_type_embeddings(batch.token_type_ids)
         + emb.position_embeddings(batch.position_ids))
    x = emb.dropout(emb.LayerNorm(x))
    dev = x.device.type
    if torch.is_autocast_enabled(dev) and torch.get_autocast_dtype(dev) == torch.bfloat16:
        # Keep the residual stream in bf16. Started from the fp32 embedding tables it would
        # stay fp32 (every residual add promotes), so each linear layer would re-cast its
        # input and each layer norm run in fp32: 9-11% of a WN18RR training step here.
        # Layer norms still accumulate in fp32; the trained weights stay fp32 (each lane
        # casts them to bf16 once a pass, see _layer_weights); the inference copy
        # (kgc.embeddings) runs wholly in bf16 anyway. Not for fp16, whose 5-bit exponent
        # is too narrow for a residual stream.
        x = x.to(torch.bfloat16)
    layers = encoder.encoder.layer
    # under bf16 autocast the weights are cast by hand, so that linear() sees bf16 on both sides
    cast = x.dtype if torch.is_autocast_enabled(dev) and torch.get_autocast_dtype(dev) == x.dtype else None

    def run_lane(lane: int, x: torch.Tensor) -> torch.Tensor:
        """The layers over one lane's groups (:mod:`kgc.lanes`); ``x`` holds their tokens."""
        groups = batch.groups[batch.lane_groups[lane] : batch.lane_groups[lane + 1]]
        weights = [_layer_weights(layer, cast) for layer in layers]  # once per lane, not per group
        out = []
        for g, h in zip(groups, x.split([g.end - g.start for g in groups])):
            # additive key mask, shared by every layer and head: 0 for real tokens, -inf for
            # padding; none when the group's sequences all have the same length
            mask = None
            if g.num_seqs * g.width > g.end - g.start:
                mask = torch.zeros(g.real.shape, device=h.device).masked_fill(~g.real, float("-inf"))[:, None, None, :]
            for layer, (qkv, attn_out, inter, ffn_out) in zip(layers, weights):
                # BertSelfOutput, BertIntermediate and BertOutput, with the products of :func:`linear`
                a, f = layer.attention.output, layer.output
                h = a.LayerNorm(a.dropout(linear(_self_attention(layer.attention.self, qkv, h, g, mask), *attn_out)) + h)
                i = layer.intermediate.intermediate_act_fn(linear(h, *inter))
                h = f.LayerNorm(f.dropout(linear(i, *ffn_out)) + h)
            out.append(h)
        return torch.cat(out) if len(out) > 1 else out[0]

    return lanes.run_lanes(run_lane, x, batch.lane_tokens, list(layers.parameters()))
