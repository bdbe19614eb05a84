"""Shared fixtures: a tiny BERT (random weights, the default model's tokenizer) so that
training and checkpoint tests run in seconds, and the location of the benchmark data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA_ROOT = Path(os.environ.get("KGC_DATA_ROOT", REPO.parent / "shared" / "data"))
UMLS = REPO / "data" / "UMLS"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def shared_dataset(name: str) -> Path:
    path = DATA_ROOT / name
    if not (path / "train.tsv").exists():
        pytest.skip(f"benchmark data {name} not found under {DATA_ROOT} (set KGC_DATA_ROOT)")
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A 2-layer, 32-dim BERT with random weights and the bundled model's tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from kgc.encoder import resolve_model_path

    path = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("default"))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    """A 6-entity graph in the KG-BERT layout, small enough to reason about by hand."""
    d = tmp_path / "tiny"
    d.mkdir()
    (d / "entity2text.txt").write_text(
        "a\talpha\nb\tbeta\nc\tgamma\nd\tdelta\ne\tepsilon\nf\tzeta\n", encoding="utf-8")
    (d / "entity2textlong.txt").write_text(
        "a\tthe first letter of the greek alphabet\nb\tthe second letter\n", encoding="utf-8")
    (d / "relation2text.txt").write_text("next\tis followed by\nvowel_of\tvowel of\n", encoding="utf-8")
    (d / "train.tsv").write_text(
        "a\tnext\tb\nb\tnext\tc\nc\tnext\td\nd\tnext\te\ne\tnext\tf\na\tvowel_of\te\n", encoding="utf-8")
    (d / "dev.tsv").write_text("f\tnext\ta\n", encoding="utf-8")
    (d / "test.tsv").write_text("a\tnext\tc\nb\tnext\td", encoding="utf-8")
    return d
