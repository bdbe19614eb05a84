"""Lanes (kgc.lanes): a batch cut into parts encoded in threads side by side must give the
vectors and gradients of the one-lane pass, with or without gradients, under autocast, and
training with lanes must end with the weights of training without them."""

from __future__ import annotations

import gc
import logging

import pytest
import torch
import torch.nn.functional as F

import kgc.train
from kgc import lanes, packed
from kgc.batches import TokenBatch, make_batch
from kgc.config import load_config
from kgc.encoder import BiEncoder
from kgc.errors import ConfigError
from kgc.train import train
from tests.test_packed import random_sequences

LENGTHS = [5, 1, 9, 3, 3, 7, 2, 12, 4, 4, 8, 6, 11, 2, 9, 5, 3, 10, 1, 7]


def test_lanes_deal_sorted_sequences_round_robin_and_never_share_a_group():
    ids, types = random_sequences(0, LENGTHS)
    batch = TokenBatch.build(ids, types, pad_id=0, group_size=3, lanes=3)
    assert batch.lengths == LENGTHS  # restore still gives the original order
    assert len(batch.lane_groups) == 4 and batch.lane_groups[0] == 0 and batch.lane_groups[-1] == len(batch.groups)
    assert sum(batch.lane_tokens) == batch.num_tokens == sum(LENGTHS)
    by_length = sorted(LENGTHS)
    seq = 0
    for k in range(3):
        groups = batch.groups[batch.lane_groups[k] : batch.lane_groups[k + 1]]
        members = sum(g.num_seqs for g in groups)
        lane_lengths = batch.seq_lengths[seq : seq + members].tolist()
        assert lane_lengths == by_length[k::3]  # the k-th of every three, sorted within the lane
        assert all(g.num_seqs <= 3 for g in groups)
        assert groups[0].start == sum(batch.lane_tokens[:k])  # lanes are contiguous token ranges
        seq += members
    # round robin over sorted lengths: lanes differ by less than the longest sequence
    assert max(batch.lane_tokens) - min(batch.lane_tokens) <= max(LENGTHS)


def test_one_lane_is_the_plain_layout():
    ids, types = random_sequences(0, LENGTHS)
    plain = TokenBatch.build(ids, types, pad_id=0, group_size=4)
    assert plain.lane_groups == [0, len(plain.groups)] and plain.lane_tokens == [plain.num_tokens]
    assert TokenBatch.build(ids[:2], types[:2], pad_id=0, group_size=4, lanes=5).lane_groups[-1] == 2  # at most one lane per sequence


@pytest.mark.parametrize("num_lanes", [2, 3])
def test_lanes_give_the_vectors_and_gradients_of_one_lane(tiny_model, num_lanes):
    torch.manual_seed(0)
    model = BiEncoder.from_pretrained(str(tiny_model)).train()
    model.set_dropout(0.0)
    encoder = model.query_encoder
    ids, types = random_sequences(1, LENGTHS)
    weights = torch.randn(len(ids), encoder.config.hidden_size)
    named = [(n, p) for n, p in encoder.named_parameters() if not n.startswith("pooler.")]

    def run(n: int):
        threads = torch.get_num_threads()
        vecs = model.encode_with(encoder, TokenBatch.build(ids, types, pad_id=0, group_size=3, lanes=n))
        assert torch.get_num_threads() == threads  # the lanes gave the intra-op threads back
        return vecs, torch.autograd.grad((vecs * weights).sum(), [p for _, p in named])

    want, g_want = run(1)
    got, g_got = run(num_lanes)
    assert torch.allclose(got, want, atol=1e-6)
    scale = max(g.abs().max() for g in g_want)
    for (name, _), a, b in zip(named, g_got, g_want):
        # every parameter, the word embeddings included, gets its gradient through the lanes
        assert torch.allclose(a, b, atol=1e-6 * scale, rtol=1e-4), name


def test_lanes_without_gradients_and_under_bf16_autocast(tiny_model):
    model = BiEncoder.from_pretrained(str(tiny_model)).eval()
    encoder = model.entity_module()
    ids, types = random_sequences(2, LENGTHS)
    one, two = (TokenBatch.build(ids, types, pad_id=0, group_size=4, lanes=n) for n in (1, 2))
    with torch.no_grad():
        assert torch.allclose(model.encode_with(encoder, two), model.encode_with(encoder, one), atol=1e-6)
    with torch.inference_mode():
        assert torch.allclose(model.encode_with(encoder, two), model.encode_with(encoder, one), atol=1e-6)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        # autocast is thread-local: the lanes' threads must run under it too
        assert packed.forward(encoder, two).dtype == torch.bfloat16
        assert F.cosine_similarity(model.encode_with(encoder, two), model.encode_with(encoder, one)).min() > 0.999


def test_lanes_whose_outputs_have_other_row_counts_than_their_inputs():
    """``run`` may return fewer rows than it got (a lane pooling its tokens into one vector
    per text): each lane's share of the gradient is cut by its output rows, not its input rows."""
    torch.manual_seed(3)
    x, w = torch.randn(10, 4, requires_grad=True), torch.randn(4, 4, requires_grad=True)
    sizes = [7, 3]

    def run(lane: int, part: torch.Tensor) -> torch.Tensor:
        y = part @ w
        return torch.stack([y.sum(0), y.max(0).values, part[0] * (lane + 1)])  # 3 rows, whatever the part

    def one_lane() -> torch.Tensor:
        return torch.cat([run(k, part) for k, part in enumerate(x.split(sizes))])

    upstream = torch.randn(6, 4)
    want = torch.autograd.grad((one_lane() * upstream).sum(), (x, w))
    got = torch.autograd.grad((lanes.run_lanes(run, x, sizes, [w]) * upstream).sum(), (x, w))
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-6)


def test_an_error_in_a_lane_reaches_the_caller():
    threads = torch.get_num_threads()

    def run(lane: int, x: torch.Tensor) -> torch.Tensor:
        if lane == 1:
            raise RuntimeError("lane 1 failed")
        return x * 2

    with pytest.raises(RuntimeError, match="lane 1 failed"):
        lanes.run_lanes(run, torch.ones(6, 2, requires_grad=True), [3, 3], [])
    assert torch.get_num_threads() == threads


def test_resolve_lanes(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert lanes.resolve_lanes(None, torch.device("cpu")) == 2
    monkeypatch.setattr(torch, "get_num_threads", lambda: 64)
    assert lanes.resolve_lanes(None, torch.device("cpu")) == lanes.MAX_AUTO_LANES
    assert lanes.resolve_lanes(3, torch.device("cpu")) == 3
    assert lanes.resolve_lanes(None, torch.device("cuda")) == 1  # GPUs parallelise inside each operation
    with pytest.raises(ConfigError, match="cpu_lanes"):
        lanes.resolve_lanes(0, torch.device("cpu"))
    assert lanes.lanes_for(256, 2) == 2
    assert lanes.lanes_for(40, 4) == 1  # small batches keep at least 32 sequences per lane
    with pytest.raises(ConfigError, match="cpu_lanes"):
        load_config(None, {"cpu_lanes": 0})


def _train(tiny_model, data_dir, out, **overrides):
    values = dict(model=str(tiny_model), data_dir=str(data_dir), output_dir=str(out), batch_size=64,
                  lr=3e-3, warmup_steps=1, max_steps=3, log_every=1, eval_split="none", encode_chunk=8,
                  precision="fp32", temperature=0.1)
    values.update(overrides)
    cfg = load_config(None, values)
    summary = train(cfg, progress=False)
    return summary, BiEncoder.from_checkpoint(out / "last", pooling="mean")


def _big_graph(tmp_path):
    """80 entities on a ring with two relations: batches of 64 texts get two lanes."""
    d = tmp_path / "ring"
    d.mkdir()
    names = [f"e{i}" for i in range(80)]
    (d / "entity2text.txt").write_text("".join(f"{n}\tentity number {i} " + "word " * (i % 9) + "\n"
                                               for i, n in enumerate(names)))
    (d / "relation2text.txt").write_text("next\tis followed by\nskip\tskips to\n")
    triples = [(names[i], "next", names[(i + 1) % 80]) for i in range(80)] + \
              [(names[i], "skip", names[(i + 2) % 80]) for i in range(0, 80, 2)]
    (d / "train.tsv").write_text("".join(f"{h}\t{r}\t{t}\n" for h, r, t in triples))
    (d / "dev.tsv").write_text("e0\tnext\te1\n")
    (d / "test.tsv").write_text("e1\tnext\te2\n")
    return d


def test_training_with_two_lanes_ends_with_the_weights_of_one_lane(tiny_model, tmp_path, caplog, monkeypatch):
    data = _big_graph(tmp_path)
    frozen = []  # objects kept from the garbage collector while batches are made (kgc.train)
    monkeypatch.setattr(kgc.train, "make_batch", lambda *a: frozen.append(gc.get_freeze_count()) or make_batch(*a))
    one, m1 = _train(tiny_model, data, tmp_path / "one", cpu_lanes=1)
    assert min(frozen) > 0 and gc.get_freeze_count() == 0  # frozen while training, unfrozen after
    with caplog.at_level(logging.INFO, logger="kgc"):
        two, m2 = _train(tiny_model, data, tmp_path / "two", cpu_lanes=2)
    assert (one["lanes"], two["lanes"]) == (1, 2)
    assert "2 lane(s)" in caplog.text
    for (name, a), b in zip(m1.named_parameters(), m2.parameters()):
        assert torch.allclose(a, b, atol=1e-5), name
    # dropout drawn in several threads would not repeat on resume: one lane then
    with_dropout, _ = _train(tiny_model, data, tmp_path / "dropout", cpu_lanes=2, dropout=0.1)
    assert with_dropout["lanes"] == 1
