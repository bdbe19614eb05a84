"""The bad-input table of the README, one test per row.

Errors go through the command line (``kgc.cli.main``): exit code 2 and a message
``kgc: error: path:line: problem`` naming the file (and the line where there is one), and
the run folder that the failing command pointed at is left exactly as it was. Counted
warnings are read with ``load_graph``: the run goes on, the warning is logged with its
``file:line`` and counted in ``KnowledgeGraph.warnings``.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
import torch

from kgc.cli import main
from kgc.config import Config, load_config
from kgc.data import load_graph

GOOD = {
    "entity2text.txt": "a\talpha\nb\tbeta\nc\tgamma\nd\tdelta\ne\tepsilon\nf\tzeta\ng\teta\n",
    "entity2textlong.txt": "a\tthe first letter of the greek alphabet\nb\tthe second letter\n",
    "relation2text.txt": "next\tis followed by\nvowel_of\tvowel of\n",
    "train.tsv": "a\tnext\tb\nb\tnext\tc\nc\tnext\td\nd\tnext\te\ne\tnext\tf\na\tvowel_of\te\n",
    "dev.tsv": "f\tnext\ta\n",
    "test.tsv": "a\tnext\tc\nb\tnext\td\nf\tnext\tg\n",  # g: never seen in training
}


def write_data(folder: Path, changes: dict[str, str | bytes | None] | None = None) -> Path:
    """The good dataset with some files replaced (``None`` removes a file)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in {**GOOD, **(changes or {})}.items():
        if content is None:
            continue
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return folder


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every path under ``folder`` with the identity, size and time of each file."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            out[os.path.relpath(os.path.join(root, name), folder)] = ("dir",)
        for name in files:
            st = os.stat(os.path.join(root, name))
            out[os.path.relpath(os.path.join(root, name), folder)] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def run(tiny_model, tmp_path_factory):
    """A finished one-step run (best/, last/, history.json, ...) whose entity-embedding
    cache is already written: failing commands below point at it and must not change it."""
    base = tmp_path_factory.mktemp("bad_input")
    data = write_data(base / "data")
    out = base / "run"
    assert main(["-q", "train", "--model", str(tiny_model), "--data-dir", str(data), "--output-dir", str(out),
                 "--max-steps", "1", "--batch-size", "4", "--precision", "fp32", "--eval-split", "none",
                 "--eval-batch-size", "8"]) == 0
    assert main(["-q", "predict", "--checkpoint", str(out), "--head", "a", "--relation", "next"]) == 0
    assert (out / "best" / "entity_embeddings.safetensors").is_file() and (out / "last" / "trainer_state.pt").is_file()
    return data, out


def fails(argv: list[str], capsys, where: str, *words: str, untouched: Path | None = None) -> str:
    """``kgc argv`` exits with 2, says ``kgc: error: <where>`` and ``words``, and leaves
    ``untouched`` exactly as it was."""
    before = snapshot(untouched) if untouched is not None else None
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"kgc: error: {where}" in err, err
    for w in words:
        assert w in err, err
    assert "Traceback" not in err
    if untouched is not None:
        assert snapshot(untouched) == before, "a failing command changed the run folder"
    return err


def train_on(data: Path, out: Path, tiny_model: Path) -> list[str]:
    return ["-q", "train", "--model", str(tiny_model), "--data-dir", str(data), "--output-dir", str(out),
            "--max-steps", "1", "--batch-size", "4", "--precision", "fp32"]


# ---------------------------------------------------------------- data files: errors

DATA_ERRORS = [
    # (row, file, new content, line, words in the message)
    ("fields", "train.tsv", "a\tnext\tb\nb\tnext\n", 2, ("expected 3", "found 2")),
    ("fields", "dev.tsv", "f\tnext\ta\tb\n", 1, ("expected 3", "found 4")),
    ("fields", "entity2text.txt", "a\talpha\nb\tbeta\tsecond\n", 2, ("expected 2", "found 3")),
    ("fields", "entity2textlong.txt", "a\tfirst\nb\n", 2, ("expected 2", "found 1")),
    ("fields", "relation2text.txt", "next\tis followed by\n\nvowel_of vowel of\n", 3, ("expected 2", "found 1")),
    ("empty-id", "test.tsv", "a\tnext\tc\n\tnext\td\n", 2, ("empty head",)),
    ("empty-id", "train.tsv", "a\tnext\tb\nb\t \tc\n", 2, ("empty relation",)),
    ("empty-id", "entity2text.txt", "a\talpha\n \tbeta\n", 2, ("empty id",)),
    ("empty-id", "relation2text.txt", "next\tis followed by\n\tvowel of\n", 2, ("empty id",)),
    ("empty-text", "entity2text.txt", "a\talpha\nb\t\n", 2, ("empty text",)),
    ("utf8", "train.tsv", b"a\tnext\tb\nb\tnext\tc\nc\tne\xffxt\td\n", 3, ("UTF-8", "0xff")),
    ("utf8", "test.tsv", b"a\tnext\t\xe9\n", 1, ("UTF-8", "0xe9")),
    ("utf8", "entity2text.txt", b"a\talpha\nb\tb\xe8ta\n", 2, ("UTF-8", "0xe8")),
    ("utf8", "relation2text.txt", b"next\tis followed by\nvowel_of\tvowel \xc3(of\n", 2, ("UTF-8", "0xc3")),
    ("empty-file", "train.tsv", "", 1, ("empty",)),
    ("empty-file", "dev.tsv", "\n  \n\n", 1, ("empty",)),
    ("empty-file", "entity2text.txt", "", 1, ("empty",)),
    ("empty-file", "entity2textlong.txt", "\n", 1, ("empty",)),
]


@pytest.mark.parametrize("row, file, content, line, words", DATA_ERRORS,
                         ids=[f"{r[0]}-{r[1]}" for r in DATA_ERRORS])
def test_data_error(row, file, content, line, words, run, tiny_model, tmp_path, capsys):
    _, out = run
    data = write_data(tmp_path / "data", {file: content})
    fails(train_on(data, out, tiny_model), capsys, f"{data / file}:{line}:", *words, untouched=out)


def test_missing_training_file_is_an_error(run, tiny_model, tmp_path, capsys):
    _, out = run
    data = write_data(tmp_path / "data", {"train.tsv": None})
    fails(train_on(data, out, tiny_model), capsys, f"{data}:", "no training file", untouched=out)


# ---------------------------------------------------------------- data files: counted warnings

DATA_WARNINGS = [
    # (row, changes, warning kind, count, logged location)
    ("unknown-entity", {"train.tsv": GOOD["train.tsv"] + "f\tnext\tomega\n"}, "entity_without_text", 1, "train.tsv:7:"),
    ("unknown-relation", {"dev.tsv": "f\tnext\ta\nf\tcomes_after\te\n"}, "relation_without_text", 1, "dev.tsv:2:"),
    ("duplicate", {"train.tsv": GOOD["train.tsv"] + "b\tnext\tc\nc\tnext\td\n"}, "duplicate_triple", 2, "train.tsv:7:"),
    ("duplicate", {"test.tsv": "a\tnext\tc\na\tnext\tc\n"}, "duplicate_triple", 1, "test.tsv:2:"),
    ("unseen-in-training", {}, "unseen_entity", 1, "test.tsv:3:"),
    ("unseen-in-training", {"dev.tsv": "g\tvowel_of\ta\n"}, "unseen_entity", 2, "dev.tsv:1:"),
    ("duplicate-text", {"entity2text.txt": GOOD["entity2text.txt"] + "a\tALPHA\n"}, "duplicate_text", 1,
     "entity2text.txt:8:"),
    ("duplicate-text", {"relation2text.txt": GOOD["relation2text.txt"] + "next\tprecedes\n"}, "duplicate_text", 1,
     "relation2text.txt:3:"),
    ("missing-split", {"dev.tsv": None}, "missing_split", 1, "no dev file"),
    ("missing-text-file", {"relation2text.txt": None}, "missing_file", 1, "relation2text.txt: no relation text"),
]


@pytest.mark.parametrize("row, changes, kind, count, where", DATA_WARNINGS,
                         ids=[f"{r[0]}-{i}" for i, r in enumerate(DATA_WARNINGS)])
def test_data_warning(row, changes, kind, count, where, tmp_path, caplog):
    data = write_data(tmp_path / "data", changes)
    with caplog.at_level(logging.WARNING, logger="kgc"):
        kg = load_graph(data)
    assert kg.warnings.get(kind) == count, kg.warnings
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(where in m for m in logged), logged
    # the data is still usable: every split read, duplicates kept once
    assert len(kg.triples("train")) >= 6
    if kind == "duplicate_triple":
        for split in kg.splits:
            rows = kg.triples(split).tolist()
            assert len(rows) == len({tuple(r) for r in rows})


def test_warnings_do_not_stop_a_run(tiny_model, tmp_path, caplog):
    """All counted warnings at once: ``kgc train`` still runs to the end and logs each."""
    data = write_data(tmp_path / "data", {
        "train.tsv": GOOD["train.tsv"] + "f\tnext\tomega\na\tnext\tb\n",
        "dev.tsv": "f\tcomes_after\te\n",
        "entity2text.txt": GOOD["entity2text.txt"] + "a\tALPHA\n",
    })
    with caplog.at_level(logging.WARNING, logger="kgc"):
        assert main(train_on(data, tmp_path / "out", tiny_model) + ["--eval-split", "none"]) == 0
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for where in ("train.tsv:7:", "train.tsv:8:", "dev.tsv:1:", "entity2text.txt:8:", "test.tsv:3:"):
        assert f"{data}/{where}" in logged
    assert torch.load(tmp_path / "out" / "last" / "trainer_state.pt", weights_only=True)["step"] == 1


def test_text_for_an_id_no_triple_uses_is_left_out(tmp_path, caplog):
    data = write_data(tmp_path / "data", {"entity2text.txt": GOOD["entity2text.txt"] + "z\tzed, not in any triple\n"})
    with caplog.at_level(logging.INFO, logger="kgc"):
        kg = load_graph(data)
    assert "z" not in kg.entity_index and kg.num_entities == 7
    assert kg.warnings == {"unseen_entity": 1}
    assert any("1 entities of the text files appear in no triple" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- configs (YAML and command line)

CONFIG_ERRORS = [
    # (row, YAML text, expected location after the path, words)
    ("not-key-value", "lr: 0.1\nbatch_size 4\nepochs: 2\n", ":3:", ("invalid YAML",)),
    ("not-key-value", "lr: 0.1\n  batch_size: 4\n", ":2:", ("invalid YAML",)),
    ("tab-indent", "lr: 0.1\n\tbatch_size: 2\n", ":2:", ("invalid YAML",)),
    ("empty-key", "lr: 0.1\n: 4\n", ":2:", ("invalid YAML",)),
    ("empty-value", "lr: 0.1\nbatch_size:\n", ":", ("'batch_size'", "may not be empty")),
    ("unknown-key", "lr: 0.1\nnosuch: 1\n", ":", ("unknown setting 'nosuch'",)),
    ("unknown-key", "batch-size: 4\n", ":", ("unknown setting 'batch-size'", "did you mean 'batch_size'")),
    ("wrong-type", "batch_size: four\n", ":", ("'batch_size' must be int", "'four'")),
    ("wrong-type", "lr: fast\n", ":", ("'lr' must be float",)),
    ("wrong-type", "shared_encoder: 3\n", ":", ("'shared_encoder' must be bool",)),
    ("wrong-choice", "precision: fp64\n", ":", ("'precision' must be one of",)),
    ("out-of-range", "batch_size: 0\n", ":", ("'batch_size' must be at least 1",)),
    ("not-a-mapping", "- lr\n- batch_size\n", ":", ("must be a mapping",)),
    ("duplicate-key", "batch_size: 4\nlr: 0.1\nbatch_size: 8\n", ":3:", ("'batch_size'", "twice", "line 1")),
    ("utf8", b"lr: 0.1\nmodel: caf\xe9\n", ":2:", ("UTF-8",)),
]


@pytest.mark.parametrize("row, text, where, words", CONFIG_ERRORS,
                         ids=[f"{r[0]}-{i}" for i, r in enumerate(CONFIG_ERRORS)])
def test_config_error(row, text, where, words, run, tmp_path, capsys):
    _, out = run
    path = tmp_path / "run.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    fails(["-q", "train", "--config", str(path), "--output-dir", str(out)], capsys, f"{path}{where}", *words,
          untouched=out)


@pytest.mark.parametrize("flags, words", [
    (["--set", "nosuch=1"], ("command line", "unknown setting 'nosuch'")),
    (["--set", "batch_size"], ("--set expects KEY=VALUE",)),
    (["--batch-size", "four"], ("command line", "'batch_size' must be int")),
    (["--eval-split", "valid"], ("command line", "'eval_split' must be one of")),
], ids=["unknown-key", "no-value", "wrong-type", "wrong-choice"])
def test_command_line_setting_error(flags, words, run, capsys):
    _, out = run
    fails(["-q", "train", "--output-dir", str(out), *flags], capsys, "", *words, untouched=out)


def test_empty_config_means_defaults_and_numbers_without_a_dot_are_floats(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing set\n")
    assert load_config(empty) == Config()
    plain = tmp_path / "plain.yaml"
    plain.write_text("lr: 1e-5\nweight_decay: 0\n")  # YAML 1.1 reads 1e-5 as a string
    cfg = load_config(plain, {"temperature": "2e-2"})
    assert cfg.lr == 1e-5 and cfg.weight_decay == 0.0 and cfg.temperature == 0.02


# ---------------------------------------------------------------- checkpoint settings (kgc_config.json)


def fake_run(folder: Path, config_text: str) -> Path:
    (folder / "last").mkdir(parents=True)
    (folder / "last" / "kgc_config.json").write_text(config_text)
    torch.save({"step": 1}, folder / "last" / "trainer_state.pt")
    return folder


@pytest.mark.parametrize("text, words", [
    ('{"config": {"batch_size": 4', ("unreadable checkpoint settings",)),
    ('{"config": {"batch_size": 4, "nosuch": 1}}', ("unknown setting 'nosuch'",)),
    ('{"config": {"batch_size": "four"}}', ("'batch_size' must be int",)),
    ('[1, 2]', ("no 'config' object",)),
], ids=["not-json", "unknown-key", "wrong-type", "not-a-mapping"])
def test_checkpoint_settings_error(text, words, tmp_path, capsys):
    folder = fake_run(tmp_path / "run", text)
    fails(["-q", "train", "--resume", "--output-dir", str(folder)], capsys,
          f"{folder / 'last' / 'kgc_config.json'}:", *words, untouched=folder)


# ---------------------------------------------------------------- query files (kgc predict --queries)

QUERY_ERRORS = [
    ("fields", "a\tnext\nb\tnext\tc\n", 2, ("expected 2", "found 3")),
    ("fields", "# head, relation\n\na next\n", 3, ("expected 2", "found 1")),
    ("empty-id", "a\tnext\n\tnext\n", 2, ("empty head or relation",)),
    ("empty-id", "a\t  \n", 1, ("empty head or relation",)),
    ("unknown-entity", "a\tnext\nomega\tnext\n", 2, ("unknown entity 'omega'",)),
    ("unknown-relation", "a\tnext\na\tprecedes\n", 2, ("unknown relation 'precedes'",)),
    ("path-as-entity", "../../etc/passwd\tnext\n", 1, ("unknown entity '../../etc/passwd'",)),
    ("utf8", b"a\tnext\nb\tn\xe9xt\n", 2, ("UTF-8", "0xe9")),
    ("empty-file", "", 1, ("no queries",)),
    ("empty-file", "# only a comment\n\n", 1, ("no queries",)),
]


@pytest.mark.parametrize("row, text, line, words", QUERY_ERRORS,
                         ids=[f"{r[0]}-{i}" for i, r in enumerate(QUERY_ERRORS)])
def test_query_file_error(row, text, line, words, run, tmp_path, capsys):
    _, out = run
    path = tmp_path / "queries.tsv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    fails(["-q", "predict", "--checkpoint", str(out), "--queries", str(path)], capsys, f"{path}:{line}:", *words,
          untouched=out)


def test_query_file_is_checked_before_the_checkpoint_is_loaded(tmp_path, capsys):
    path = tmp_path / "queries.tsv"
    path.write_text("a\tnext\tc\n")
    fails(["-q", "predict", "--checkpoint", str(tmp_path / "no_checkpoint_here"), "--queries", str(path)], capsys,
          f"{path}:1:", "expected 2")


def test_query_file_accepts_repeats_and_entities_unseen_in_training(run, tmp_path, capsys):
    _, out = run
    path = tmp_path / "queries.tsv"
    path.write_text("a\tnext\n# comment\na\tnext\ng\tinverse next\n")
    before = snapshot(out)
    capsys.readouterr()
    assert main(["-q", "predict", "--checkpoint", str(out), "--queries", str(path), "--top-k", "2"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("# a\tnext\n") == 2 and printed.count("# g\tinverse next\n") == 1
    assert len([line for line in printed.splitlines() if not line.startswith("#")]) == 6
    assert snapshot(out) == before


def test_a_failing_command_keeps_an_existing_best_checkpoint(run, tiny_model, tmp_path, capsys):
    """The explicit form of 'nothing already written is lost': best/ survives bit for bit."""
    _, out = run
    files = sorted(p for p in (out / "best").rglob("*") if p.is_file())
    content = {p: p.read_bytes() for p in files}
    data = write_data(tmp_path / "data", {"test.tsv": b"a\tnext\t\xff\n"})
    fails(train_on(data, out, tiny_model), capsys, f"{data / 'test.tsv'}:1:", untouched=out)
    assert sorted(p for p in (out / "best").rglob("*") if p.is_file()) == files
    assert all(p.read_bytes() == content[p] for p in files)


def test_unknown_loss_name_is_a_config_error_naming_the_file(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("loss: infonse\n", encoding="utf-8")
    assert main(["train", "--config", str(cfg), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert str(cfg) in err and "'loss' must be one of" in err and "infonce" in err
    assert not (tmp_path / "out" / "last").exists()
