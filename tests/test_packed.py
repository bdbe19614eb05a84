"""The packed (unpadded) BERT forward pass computes what the model's own padded one does:
same token states, same pooled vectors, same gradients; other architectures fall back to
their own forward pass on padded groups."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kgc import packed
from kgc.batches import TokenBatch
from kgc.encoder import BiEncoder, resolve_model_path


def random_sequences(seed: int, lengths: list[int], vocab: int = 1000) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    gen = torch.Generator().manual_seed(seed)
    ids = [tuple(torch.randint(5, vocab, (n,), generator=gen).tolist()) for n in lengths]
    types = [tuple([0] * (n - n // 3) + [1] * (n // 3)) for n in lengths]
    return ids, types


def reference_vectors(encoder, ids, types, pooling: str) -> torch.Tensor:
    """Each sequence through the model's own forward pass, padded to the longest of all."""
    width = max(len(s) for s in ids)
    input_ids = torch.zeros(len(ids), width, dtype=torch.long)
    type_ids = torch.zeros_like(input_ids)
    mask = torch.zeros_like(input_ids)
    for row, (s, t) in enumerate(zip(ids, types)):
        input_ids[row, : len(s)] = torch.tensor(s)
        type_ids[row, : len(s)] = torch.tensor(t)
        mask[row, : len(s)] = 1
    states = encoder(input_ids=input_ids, attention_mask=mask, token_type_ids=type_ids).last_hidden_state
    if pooling == "cls":
        pooled = states[:, 0]
    else:
        m = mask.unsqueeze(-1).float()
        pooled = (states * m).sum(1) / m.sum(1)
    return F.normalize(pooled, dim=-1)


def test_token_batch_layout_round_trips():
    ids, types = random_sequences(0, [5, 1, 9, 3, 3, 7, 2])
    batch = TokenBatch.build(ids, types, pad_id=0, group_size=3)
    assert batch.lengths == [5, 1, 9, 3, 3, 7, 2]
    assert batch.seq_lengths.tolist() == sorted(batch.lengths)
    assert len(batch.input_ids) == batch.num_tokens == 30
    assert [g.num_seqs for g in batch.groups] == [3, 3, 1]
    assert [g.width for g in batch.groups] == [3, 7, 9]
    # sequence k of the sorted order, cut from the packed tokens, is input sequence order[k]
    order = torch.argsort(batch.restore)
    starts = torch.cumsum(batch.seq_lengths, 0) - batch.seq_lengths
    for k, i in enumerate(order.tolist()):
        part = slice(int(starts[k]), int(starts[k] + batch.seq_lengths[k]))
        assert tuple(batch.input_ids[part].tolist()) == ids[i]
        assert tuple(batch.token_type_ids[part].tolist()) == types[i]
        assert batch.position_ids[part].tolist() == list(range(len(ids[i])))
        assert (batch.sequence[part] == k).all()
    # the padded groups hold the same sequences, padded with pad_id and masked
    rows = [row for c in batch.padded_chunks() for row in zip(c["input_ids"].tolist(), c["attention_mask"].tolist())]
    for k, i in enumerate(order.tolist()):
        tokens, mask = rows[k]
        assert tuple(t for t, m in zip(tokens, mask) if m) == ids[i]
        assert all(t == 0 for t, m in zip(tokens, mask) if not m)


def test_empty_sequence_is_refused():
    with pytest.raises(ValueError, match="empty"):
        TokenBatch.build([(1, 2), ()], [(0, 0), ()], pad_id=0, group_size=2)


@pytest.mark.parametrize("pooling,lengths,group_size", [
    ("mean", [4, 17, 2, 30, 9, 9, 23, 1, 12], 4),
    ("cls", [4, 17, 2, 30, 9, 9, 23, 1, 12], 4),
    ("mean", [5, 9, 5, 9, 5, 5], 2),  # every group of one length: attention without padding
])
def test_packed_forward_and_gradients_equal_the_models_own(tiny_model, pooling, lengths, group_size):
    torch.manual_seed(0)
    model = BiEncoder.from_pretrained(str(tiny_model), pooling=pooling).train()
    model.set_dropout(0.0)
    encoder = model.query_encoder
    assert packed.supports(encoder)
    ids, types = random_sequences(1, lengths)
    batch = TokenBatch.build(ids, types, pad_id=0, group_size=group_size)

    got = model.encode_with(encoder, batch)
    want = reference_vectors(encoder, ids, types, pooling)
    assert torch.allclose(got, want, atol=1e-5)

    weights = torch.randn_like(got)
    params = [p for p in encoder.parameters()]
    g_got = torch.autograd.grad((got * weights).sum(), params, allow_unused=True)
    g_want = torch.autograd.grad((want * weights).sum(), params, allow_unused=True)
    compared = 0
    for name, a, b in zip([n for n, _ in encoder.named_parameters()], g_got, g_want):
        if name.startswith("pooler."):  # the model's pooler head is not used by either path
            continue
        assert a is not None and b is not None, name
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), name
        compared += 1
    assert compared == len(params) - 2


def test_bf16_training_pass_agrees_with_the_fp32_model():
    """Under bf16 autocast the packed pass keeps its residual stream in bf16 (that is what
    makes it fast); vectors and gradients of the real default model stay those of the fp32
    model's own padded forward pass within bf16 rounding."""
    model = BiEncoder.from_pretrained(resolve_model_path("default")).train()
    model.set_dropout(0.0)
    encoder = model.entity_module()
    ids, types = random_sequences(4, [12, 30, 7, 45, 22, 22, 3, 50, 18, 33, 9, 27], vocab=20000)
    batch = TokenBatch.build(ids, types, pad_id=0, group_size=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert packed.forward(encoder, batch).dtype == torch.bfloat16
        got = model.encode_with(encoder, batch)
    want = reference_vectors(encoder, ids, types, "mean")
    assert F.cosine_similarity(got, want).min() > 0.999
    weights = torch.randn_like(got)
    named = [(n, p) for n, p in encoder.named_parameters()
             # the pooler is unused; a key bias adds one constant to a whole row of attention
             # scores, which softmax ignores: its true gradient is zero, its cosine noise
             if not n.startswith("pooler.") and not n.endswith("key.bias")]
    g_got = torch.autograd.grad((got * weights).sum(), [p for _, p in named])
    g_want = torch.autograd.grad((want * weights).sum(), [p for _, p in named])
    for (name, _), a, b in zip(named, g_got, g_want):
        assert F.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.99, name


def test_bias_in_product_linear_is_f_linear_forward_and_backward():
    """The bf16 CPU product with the bias added inside oneDNN's kernel gives what F.linear
    gives, forward and backward, to the bit."""
    if not packed._bias_in_product():
        pytest.skip("this torch/oneDNN build has no bf16 linear kernel with a bias epilogue")
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(300, 48, generator=gen).to(torch.bfloat16).requires_grad_()
    w = (torch.randn(96, 48, generator=gen) * 0.1).to(torch.bfloat16).requires_grad_()
    b = torch.randn(96, generator=gen).to(torch.bfloat16).requires_grad_()
    seed = torch.randn(300, 96, generator=gen).to(torch.bfloat16)
    got = packed.linear(x, w, b)
    assert got.grad_fn is not None and "BiasInProduct" in type(got.grad_fn).__name__  # the kernel ran
    want = F.linear(x, w, b)
    assert torch.equal(got, want)
    g_got = torch.autograd.grad((got * seed).sum(), (x, w, b))
    g_want = torch.autograd.grad((want * seed).sum(), (x, w, b))
    for a, c in zip(g_got, g_want):
        assert a.dtype == c.dtype == torch.bfloat16 and a.shape == c.shape
        assert torch.equal(a, c)
    # fp32 (and every non-bf16 case) goes through F.linear itself
    assert packed.linear(x.float(), w.float(), b.float()).grad_fn.name() == F.linear(x.float(), w.float(), b.float()).grad_fn.name()


def test_packed_inference_uses_fused_attention_and_agrees(tiny_model):
    model = BiEncoder.from_pretrained(str(tiny_model)).eval()
    ids, types = random_sequences(2, [3, 8, 8, 15, 1])
    batch = TokenBatch.build(ids, types, pad_id=0, group_size=5)
    with torch.no_grad():
        got = model.encode_entities(batch)
        want = reference_vectors(model.entity_module(), ids, types, "mean")
    assert torch.allclose(got, want, atol=1e-5)


def test_dropout_is_applied_in_the_packed_pass(tiny_model):
    model = BiEncoder.from_pretrained(str(tiny_model)).train()
    model.set_dropout(0.3)
    ids, types = random_sequences(3, [6, 6, 6])
    batch = TokenBatch.build(ids, types, pad_id=0, group_size=3)
    a, b = model.encode_queries(batch), model.encode_queries(batch)
    assert not torch.allclose(a, b)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model.encode_queries(batch), model.encode_queries(batch))


def test_other_architectures_run_their_own_forward_on_padded_groups(tmp_path):
    from transformers import RobertaConfig, RobertaModel

    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=64, type_vocab_size=1, pad_token_id=1)
    RobertaModel(config).save_pretrained(tmp_path, safe_serialization=True)
    model = BiEncoder.from_pretrained(str(tmp_path)).eval()
    assert not packed.supports(model.query_encoder)
    ids, _ = random_sequences(4, [5, 12, 3, 7])
    types = [(0,) * len(s) for s in ids]
    batch = TokenBatch.build(ids, types, pad_id=1, group_size=2)
    with torch.no_grad():
        got = model.encode_queries(batch)
        # each sequence alone, without any padding
        alone = torch.cat([reference_vectors(model.query_encoder, [s], [t], "mean") for s, t in zip(ids, types)])
    assert torch.allclose(got, alone, atol=1e-5)
