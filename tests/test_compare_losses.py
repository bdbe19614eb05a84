"""scripts/compare_losses.py end to end on UMLS with the tiny encoder: two objectives, four
steps each, and the table, JSON and plot it writes."""

from __future__ import annotations

import importlib.util
import json
import math

from tests.conftest import REPO, UMLS

SCRIPT = REPO / "scripts" / "compare_losses.py"


def load_script():
    spec = importlib.util.spec_from_file_location("compare_losses", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compare_losses_writes_table_json_and_plot(tiny_model, tmp_path, capsys):
    script = load_script()
    out, work = tmp_path / "out", tmp_path / "work"
    runs = ["infonce", "triplet-hardest"]
    rc = script.main(["--model", str(tiny_model), "--data-dir", str(UMLS), "--losses", ",".join(runs),
                      "--steps", "4", "--batch-size", "8", "--eval-every", "2", "--eval-queries", "20",
                      "--test-queries", "30", "--precision", "fp32", "--out", str(out), "--workdir", str(work)])
    assert rc == 0

    for name in ("loss_comparison.md", "loss_comparison.json", "loss_comparison.png"):
        assert (out / name).is_file(), name
    assert (out / "loss_comparison.png").stat().st_size > 1000

    report = json.loads((out / "loss_comparison.json").read_text())
    assert report["budget"]["steps"] == 4 and report["budget"]["batch_size"] == 8
    by_name = {r["name"]: r for r in report["runs"]}
    assert set(by_name) == set(runs)
    for name, run in by_name.items():
        assert "error" not in run, run.get("error")
        assert run["steps"] == 4
        for key in ("mrr", "hits@1", "hits@3", "hits@10"):
            assert math.isfinite(run["test"][key]) and 0 <= run["test"][key] <= 1, (name, key)
        assert run["test"]["hits@1"] <= run["test"]["hits@3"] <= run["test"]["hits@10"]
        # dev evaluated at step 2 (eval_every) and at the end of training
        assert [h["step"] for h in run["dev_history"]] == [2, 4]
        assert all(math.isfinite(h["mrr"]) for h in run["dev_history"])
        assert [s for s, _ in run["train_loss"]] == [1, 2, 3, 4]
        # each run was evaluated on test by `kgc evaluate` (30 triples, both directions)
        metrics = json.loads((work / name / "metrics.json").read_text())
        assert metrics["split"] == "test" and metrics["count"] == 2 * 30
        assert metrics["mrr"] == run["test"]["mrr"]
        assert not (work / name / "last").exists()  # checkpoints removed after evaluation
    assert by_name["triplet-hardest"]["loss_config"] == {"margin": 0.1, "mining": "hardest"}
    mrrs = [r["test"]["mrr"] for r in report["runs"]]
    assert mrrs == sorted(mrrs, reverse=True)

    table = (out / "loss_comparison.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| loss")
            and not line.startswith("| ---")]
    assert sorted(row.split("|")[1].strip() for row in rows) == sorted(runs)
    assert "4 steps of batch 8" in table and "first 30 test triples" in table and "seed 42" in table and str(tiny_model) in table
    assert "| loss | config | test MRR |" in capsys.readouterr().out
