"""End to end with a tiny encoder: training lowers the loss, the output folder is a
checkpoint that `kgc evaluate` and `kgc predict` (and the Python API) use."""

from __future__ import annotations

import json

import pytest
import torch

import kgc
from kgc.cli import main
from kgc.config import load_config
from kgc.train import WARMUP_STEPS, train


def tiny_config(tiny_model, data_dir, out, **overrides):
    values = dict(model=str(tiny_model), data_dir=str(data_dir), output_dir=str(out), batch_size=12,
                  lr=3e-3, warmup_steps=1, max_steps=24, log_every=4, eval_batch_size=8, encode_chunk=4,
                  precision="fp32", temperature=0.1)
    values.update(overrides)
    return load_config(None, values)


@pytest.fixture(scope="module")
def trained_run(tiny_model, tmp_path_factory):
    """One short run on the 6-entity graph, shared by the tests below."""
    from tests.conftest import REPO  # noqa: F401  (import keeps pytest's rootdir on sys.path)

    d = tmp_path_factory.mktemp("data") / "tiny"
    d.mkdir()
    (d / "entity2text.txt").write_text("a\talpha\nb\tbeta\nc\tgamma\nd\tdelta\ne\tepsilon\nf\tzeta\n")
    (d / "relation2text.txt").write_text("next\tis followed by\nvowel_of\tvowel of\n")
    (d / "train.tsv").write_text("a\tnext\tb\nb\tnext\tc\nc\tnext\td\nd\tnext\te\ne\tnext\tf\na\tvowel_of\te\n")
    (d / "dev.tsv").write_text("f\tnext\ta\n")
    (d / "test.tsv").write_text("a\tnext\tc\nb\tnext\td\n")
    out = tmp_path_factory.mktemp("run")
    summary = train(tiny_config(tiny_model, d, out), progress=False)
    return d, out, summary


def test_training_lowers_the_loss_and_writes_a_checkpoint(trained_run):
    _, out, summary = trained_run
    assert summary["steps"] == 24
    # throughput over the steps after the untimed warm-up ones (WARMUP_STEPS)
    assert len(summary["warmup_step_seconds"]) == WARMUP_STEPS
    assert summary["timed_steps"] == 24 - WARMUP_STEPS and summary["examples_per_s"] > 0
    times = summary["step_seconds"]
    assert 0 < times["min"] <= times["median"] <= times["max"]
    losses = [h["loss"] for h in json.loads((out / "history.json").read_text()) if "loss" in h]
    assert len(losses) == 24
    assert sum(losses[-6:]) / 6 < 0.8 * sum(losses[:6]) / 6
    for sub in ("best", "last"):
        assert (out / sub / "kgc_config.json").is_file()
        assert (out / sub / "query_encoder" / "model.safetensors").is_file()
        assert (out / sub / "entity_encoder" / "model.safetensors").is_file()
    assert (out / "last" / "trainer_state.pt").is_file()
    assert not (out / "best" / "trainer_state.pt").exists()
    assert (out / "training_curve.png").stat().st_size > 1000
    state = torch.load(out / "last" / "trainer_state.pt", weights_only=True)
    assert state["step"] == 24


def test_evaluate_writes_metrics_and_predictions(trained_run, tmp_path, capsys):
    _, out, _ = trained_run
    assert main(["-q", "evaluate", "--checkpoint", str(out), "--split", "test", "--output-dir", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("mrr", "mr", "hits@1", "hits@3", "hits@10"):
        assert key in metrics and key in metrics["forward"] and key in metrics["backward"]
    assert metrics["count"] == 4 and metrics["forward"]["count"] == 2
    assert 0 < metrics["mrr"] <= 1
    assert metrics["rank"] == "realistic"
    lines = [json.loads(x) for x in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 4
    assert {x["direction"] for x in lines} == {"forward", "backward"}
    first = lines[0]
    assert first["head"] == "a" and first["answer"] == "c" and not first["inverse"]
    # filtered: b is a known answer of (a, next) from training, so it never appears in the top list
    assert "b" not in [t["entity"] for t in first["top"]]
    assert len(first["top"]) == 5  # 6 entities minus the filtered one
    assert "mrr" in capsys.readouterr().out


def test_predict_command_and_api(trained_run, tmp_path, capsys):
    _, out, _ = trained_run
    assert main(["-q", "predict", "--checkpoint", str(out), "--head", "alpha", "--relation", "next", "--top-k", "3"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.strip().splitlines()]
    assert [r[0] for r in rows] == ["1", "2", "3"]
    scores = [float(r[2]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    # entity embeddings were cached beside the checkpoint and are reused
    assert (out / "best" / "entity_embeddings.safetensors").is_file()
    predictor = kgc.load(out)
    api = predictor.predict("a", "is followed by", top_k=3)
    assert [p.entity for p in api] == [r[1] for r in rows]
    assert predictor.predict("a", "inverse next", top_k=6)[0].entity in "abcdef"
    # b (train) and c (test) are known tails of (a, next)
    known = {p.entity for p in predictor.predict("a", "next", top_k=6, exclude_known=True)}
    assert not known & {"b", "c"} and len(known) == 4
    queries = tmp_path / "q.tsv"
    queries.write_text("a\tnext\nzzz\tnext\n")
    assert main(["-q", "predict", "--checkpoint", str(out), "--queries", str(queries)]) == 2
    err = capsys.readouterr().err
    assert f"{queries}:2:" in err and "unknown entity" in err


def test_untrained_default_model_loads_offline_and_scores(monkeypatch):
    """The bundled all-MiniLM-L6-v2 loads with the hub switched off and embeds text."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from kgc.batches import TokenBatch
    from kgc.encoder import BiEncoder, load_tokenizer

    model = BiEncoder.from_pretrained("default").eval()
    tok = load_tokenizer("default")
    assert model.dim == 384 and tok.vocab_size == 30522
    texts = ["a dog barks", "a puppy is barking", "the stock market fell"]
    ids = [tuple(x) for x in tok(texts)["input_ids"]]
    with torch.no_grad():
        v = model.encode_entities(TokenBatch.build(ids, [(0,) * len(x) for x in ids], 0, 2))
    assert torch.allclose(v.norm(dim=1), torch.ones(3), atol=1e-5)
    sims = v @ v.T
    assert sims[0, 1] > sims[0, 2] + 0.2  # a real sentence encoder, not random weights


def test_training_with_prebatch_momentum_queue_and_arb(tiny_model, tmp_path):
    """The extra negatives and the regulariser run inside the real training loop."""
    cfg = tiny_config(tiny_model, "data/UMLS", tmp_path / "run", batch_size=8, max_steps=4, prebatch=2,
                      momentum_queue=16, arb_weight=0.1, eval_max_queries=10)
    summary = train(cfg, progress=False)
    assert summary["steps"] == 4
    losses = [h["loss"] for h in json.loads((tmp_path / "run" / "history.json").read_text()) if "loss" in h]
    assert len(losses) == 4 and all(x == x and x < 1e6 for x in losses)
    state = torch.load(tmp_path / "run" / "last" / "trainer_state.pt", weights_only=True)
    # 4 steps of 8 tails pushed: the momentum queue keeps its 16 newest, pre-batch its last 2 batches
    assert state["momentum_queue"]["embeddings"].shape == (16, 32)
    assert state["prebatch"]["embeddings"].shape == (16, 32)
    assert state["prebatch"]["batch_sizes"] == [8, 8] or list(state["prebatch"]["batch_sizes"]) == [8, 8]
