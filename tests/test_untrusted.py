"""Files kgc reads from elsewhere cannot make it run code or touch other files.

* ``trainer_state.pt`` is loaded with ``weights_only``: a pickle that would call a function
  is refused, and the function never runs;
* encoders load from safetensors only: a folder holding just ``pytorch_model.bin`` (a
  pickle) is refused, and a ``.bin`` beside the safetensors file is never opened;
* custom model code is never imported unless asked for explicitly: ``trust_remote_code``
  is off by default, and a checkpoint cannot switch it on by itself;
* ``kgc.io.safe_join`` keeps written paths inside their folder;
* what a query file says is looked up as a name, never opened as a path.

Each payload here only creates an empty marker file under ``tmp_path``.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shlex
import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from kgc import checkpoint
from kgc.cli import main
from kgc.config import Config, load_config
from kgc.encoder import BiEncoder, load_tokenizer
from kgc.errors import KGCError
from kgc.io import safe_join
from kgc.train import loss_from_config

REPO = Path(__file__).resolve().parents[1]


class Payload:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def evil_state(path: Path, marker: Path, fmt: str) -> Path:
    state = {"step": 2, "epoch": 0, "index": 2, "optimizer": Payload(marker)}
    if fmt == "torch.save":
        torch.save(state, path)
    else:  # a bare pickle, the pre-zip format torch.load also reads
        path.write_bytes(pickle.dumps(state, protocol=2))
    return path


@pytest.fixture(scope="module")
def ckpt(tiny_model, tmp_path_factory) -> Path:
    """A run folder whose ``last/`` is a complete, resumable checkpoint of the tiny model."""
    base = tmp_path_factory.mktemp("untrusted")
    data = base / "data"
    data.mkdir()
    (data / "entity2text.txt").write_text("a\talpha\nb\tbeta\nc\tgamma\nd\tdelta\n")
    (data / "relation2text.txt").write_text("next\tis followed by\n")
    (data / "train.tsv").write_text("a\tnext\tb\nb\tnext\tc\nc\tnext\td\n")
    run = base / "run"
    cfg = load_config(None, dict(model=str(tiny_model), data_dir=str(data), output_dir=str(run), batch_size=4,
                                 precision="fp32", eval_batch_size=8, eval_split="none", max_steps=4))
    model = BiEncoder.from_pretrained(cfg.model)
    checkpoint.save(run / "last", model, load_tokenizer(cfg.model), cfg, loss_from_config(cfg),
                    {"step": 0, "epoch": 0, "data_dir": str(data)}, trainer_state={"step": 0})
    return run


def copy_run(ckpt: Path, dest: Path) -> Path:
    shutil.copytree(ckpt, dest)
    for cache in dest.rglob("entity_embeddings.safetensors"):
        cache.unlink()
    return dest


# ---------------------------------------------------------------- trainer_state.pt


@pytest.mark.parametrize("fmt", ["torch.save", "pickle"])
def test_the_payload_is_live(fmt, tmp_path):
    """Control: an ordinary unpickler does run the payload (so the tests below mean something)."""
    marker = tmp_path / "ran"
    path = evil_state(tmp_path / "state.pt", marker, fmt)
    if fmt == "torch.save":
        torch.load(path, weights_only=False)
    else:
        pickle.loads(path.read_bytes())
    assert marker.exists()


@pytest.mark.parametrize("fmt", ["torch.save", "pickle"])
def test_trainer_state_with_code_is_refused(fmt, tmp_path):
    marker = tmp_path / "ran"
    evil_state(tmp_path / checkpoint.STATE_FILE, marker, fmt)
    with pytest.raises(KGCError, match="refused to load"):
        checkpoint.load_trainer_state(tmp_path)
    assert not marker.exists()


def test_resume_from_a_run_with_code_in_its_trainer_state_fails(ckpt, tmp_path, capsys):
    run = copy_run(ckpt, tmp_path / "run")
    marker = tmp_path / "ran"
    evil_state(run / "last" / checkpoint.STATE_FILE, marker, "torch.save")
    before = sorted((p.relative_to(run), p.stat().st_mtime_ns) for p in run.rglob("*"))
    assert main(["-q", "train", "--resume", "--output-dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"kgc: error: {run / 'last' / checkpoint.STATE_FILE}: refused to load" in err
    assert not marker.exists()
    assert sorted((p.relative_to(run), p.stat().st_mtime_ns) for p in run.rglob("*")) == before


def test_a_plain_trainer_state_loads(ckpt):
    assert checkpoint.load_trainer_state(ckpt / "last") == {"step": 0}


# ---------------------------------------------------------------- encoder weights


def bin_only(encoder_dir: Path, marker: Path) -> None:
    """Replace ``model.safetensors`` by a ``pytorch_model.bin`` whose unpickling runs the payload."""
    weights = load_file(str(encoder_dir / "model.safetensors"))
    (encoder_dir / "model.safetensors").unlink()
    torch.save({**weights, "payload": Payload(marker)}, encoder_dir / "pytorch_model.bin")


def test_encoders_without_safetensors_are_refused(ckpt, tmp_path, capsys):
    run = copy_run(ckpt, tmp_path / "run")
    marker = tmp_path / "ran"
    for part in ("query_encoder", "entity_encoder"):
        bin_only(run / "last" / part, marker)
    cfg = checkpoint.load_config(run / "last")
    with pytest.raises(KGCError, match="model.safetensors"):
        checkpoint.load_model(run / "last", cfg)
    assert main(["-q", "predict", "--checkpoint", str(run), "--head", "a", "--relation", "next"]) == 2
    assert "cannot load encoder" in capsys.readouterr().err
    assert not marker.exists()


def test_a_pickle_beside_the_safetensors_is_never_opened(ckpt, tmp_path):
    run = copy_run(ckpt, tmp_path / "run")
    marker = tmp_path / "ran"
    for part in ("query_encoder", "entity_encoder"):
        torch.save({"payload": Payload(marker)}, run / "last" / part / "pytorch_model.bin")
    model = checkpoint.load_model(run / "last", checkpoint.load_config(run / "last"))
    expected = load_file(str(run / "last" / "query_encoder" / "model.safetensors"))
    state = model.query_encoder.state_dict()
    assert all(torch.equal(state[k], v) for k, v in expected.items() if k in state)
    assert not marker.exists()


# ---------------------------------------------------------------- custom model code


def test_trust_remote_code_is_off_by_default():
    assert Config().trust_remote_code is False
    assert load_config(None).trust_remote_code is False
    for path in sorted((REPO / "configs").glob("*.yaml")):
        assert not (yaml.safe_load(path.read_text()) or {}).get("trust_remote_code"), path


def with_custom_code(encoder_dir: Path, marker: Path, model_type: str) -> None:
    """Turn a saved BERT folder into one that asks for its own Python code (``auto_map``)."""
    config = json.loads((encoder_dir / "config.json").read_text())
    config.update(model_type=model_type, auto_map={"AutoConfig": "custom.CustomConfig",
                                                   "AutoModel": "custom.CustomModel"})
    (encoder_dir / "config.json").write_text(json.dumps(config))
    (encoder_dir / "custom.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "from transformers import BertConfig, BertModel\n"
        f"class CustomConfig(BertConfig):\n    model_type = {model_type!r}\n"
        "class CustomModel(BertModel):\n    config_class = CustomConfig\n")


@pytest.mark.parametrize("model_type", ["custom-bert", "bert"])
def test_custom_code_in_a_checkpoint_never_runs(model_type, ckpt, tmp_path, capsys, caplog):
    """A checkpoint that ships its own model code, and even sets trust_remote_code: true in
    its settings, is loaded without importing that code (or refused when it needs it)."""
    run = copy_run(ckpt, tmp_path / "run")
    marker = tmp_path / "ran"
    for part in ("query_encoder", "entity_encoder"):
        with_custom_code(run / "last" / part, marker, model_type)
    settings = run / "last" / checkpoint.CONFIG_FILE
    info = json.loads(settings.read_text())
    info["config"]["trust_remote_code"] = True
    settings.write_text(json.dumps(info))

    with caplog.at_level(logging.WARNING, logger="kgc"):
        cfg = checkpoint.load_config(run / "last")
    assert cfg.trust_remote_code is False
    assert any("ignoring trust_remote_code" in r.getMessage() for r in caplog.records)
    assert checkpoint.load_config(run / "last", trust_remote_code=True).trust_remote_code is True  # only if asked

    if model_type == "bert":  # transformers has the code itself: plain BERT, custom.py ignored
        model = checkpoint.load_model(run / "last", cfg)
        assert type(model.query_encoder).__module__.startswith("transformers.models.bert")
    else:
        with pytest.raises(KGCError, match="custom code"):
            checkpoint.load_model(run / "last", cfg)
    code = main(["-q", "predict", "--checkpoint", str(run), "--head", "a", "--relation", "next"])
    assert code == (0 if model_type == "bert" else 2)
    if code:
        assert "kgc: error: cannot load encoder" in capsys.readouterr().err
    assert not marker.exists()


# ---------------------------------------------------------------- paths


def test_safe_join_keeps_paths_inside(tmp_path):
    base = tmp_path / "out"
    (base / "sub").mkdir(parents=True)
    assert safe_join(base, "metrics.json") == (base / "metrics.json").resolve()
    assert safe_join(base, "sub/../sub/x.json") == (base / "sub" / "x.json").resolve()
    assert safe_join(base, ".") == base.resolve()
    (base / "link").symlink_to(tmp_path)  # a link inside that points outside
    for bad in ("../escape.json", "sub/../../escape.json", "/etc/passwd", str(tmp_path / "escape.json"),
                "link/escape.json", Path("..") / "out2" / "x"):
        with pytest.raises(KGCError, match="outside"):
            safe_join(base, bad)
    assert not (tmp_path / "escape.json").exists()


def test_a_path_in_a_query_file_is_only_a_name(ckpt, tmp_path, capsys):
    """``../../etc/passwd`` or the path of a real file in a query file is an unknown entity;
    the file itself is never opened."""
    secret = tmp_path / "secret.txt"
    secret.write_text("a\n")  # its content would be a valid entity id
    queries = tmp_path / "queries.tsv"
    queries.write_text(f"a\tnext\n../../etc/passwd\tnext\n{secret}\tnext\n")
    opened: list[str] = []
    watching = [True]

    def audit(event, args):
        if watching[0] and event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            name = os.fsdecode(args[0])
            if name.endswith(("passwd", "secret.txt")):
                opened.append(name)

    sys.addaudithook(audit)  # hooks cannot be removed; this one goes quiet after the test
    try:
        assert main(["-q", "predict", "--checkpoint", str(ckpt), "--queries", str(queries)]) == 2
        queries.write_text(f"{secret}\tnext\n")
        assert main(["-q", "predict", "--checkpoint", str(ckpt), "--queries", str(queries)]) == 2
    finally:
        watching[0] = False
    err = capsys.readouterr().err
    assert f"kgc: error: {queries}:2: unknown entity '../../etc/passwd'" in err
    assert f"kgc: error: {queries}:1: unknown entity '{secret}'" in err
    assert opened == []
