"""A training run killed with SIGKILL at an awkward moment can always be resumed, and the
resumed run ends with the same weights as a run that was never interrupted.

The same run folder sees three ``kgc train`` runs:

1. a fresh run in a subprocess, killed while it is writing a checkpoint (a ``.last.*.tmp``
   folder exists beside an already complete ``last/``);
2. ``--resume`` in a subprocess, killed just after it has renamed a newer checkpoint into
   ``last/``;
3. ``--resume`` once more (in this process, through ``kgc.cli.main``), to the end.

After each kill the folder must still hold a complete checkpoint that loads. A reference
run with the same settings, never interrupted, trains in a thread of this process while
the first subprocess runs; the final weights of both must agree. The kills are timed by
polling the run folder, so a kill may land a little later than aimed; every check holds
wherever it lands.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kgc import checkpoint
from kgc.cli import main

REPO = Path(__file__).resolve().parents[1]

TOTAL = 8
SAVE_EVERY = 2
TIMEOUT = 240  # seconds per process: generous for a loaded 2-core machine


def settings(tiny_model: Path, data: Path) -> list[str]:
    return ["--model", str(tiny_model), "--data-dir", str(data), "--batch-size", "4",
            "--precision", "fp32", "--save-every", str(SAVE_EVERY), "--max-steps", str(TOTAL),
            "--eval-split", "dev", "--warmup-steps", "1", "--lr", "0.003", "--encode-chunk", "4",
            "--eval-batch-size", "8", "--num-threads", "1", "--log-every", "100",
            "--dropout", "0.1"]  # dropout: the random state must travel in the checkpoint too


def start(args: list[str], log: Path) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "kgc.cli", "-q", "train", *args], cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT, env=env)


def finish(proc: subprocess.Popen, log: Path) -> None:
    try:
        rc = proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"kgc train did not finish in {TIMEOUT} s:\n{log.read_text(errors='replace')}")
    assert rc == 0, f"kgc train failed with {rc}:\n{log.read_text(errors='replace')}"


def kill_when(proc: subprocess.Popen, ready, log: Path) -> bool:
    """SIGKILL ``proc`` as soon as ``ready()`` holds; False if it ended on its own first."""
    deadline = time.monotonic() + TIMEOUT
    while proc.poll() is None:
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"the moment to kill never came:\n{log.read_text(errors='replace')}")
        time.sleep(0.002)
    assert proc.returncode == 0, f"kgc train failed with {proc.returncode}:\n{log.read_text(errors='replace')}"
    return False


def saved_step(run: Path) -> int:
    """Step of the checkpoint now in ``last/`` (-1 when there is none)."""
    try:
        return json.loads((run / "last" / checkpoint.CONFIG_FILE).read_text())["step"]
    except (OSError, ValueError, KeyError):
        return -1


def check_resumable(run: Path) -> int:
    """The run folder holds a complete checkpoint: settings, trainer state and weights load."""
    found = checkpoint.resumable_dir(run)
    state = checkpoint.load_trainer_state(found)
    cfg = checkpoint.load_config(found)
    checkpoint.load_model(found, cfg)
    assert state["step"] == checkpoint.read_info(found)["step"]
    assert 0 < state["step"] <= TOTAL
    return state["step"]


def weights(run: Path) -> dict[str, torch.Tensor]:
    out = {}
    for part in ("query_encoder", "entity_encoder"):
        for name, tensor in load_file(str(run / "last" / part / "model.safetensors")).items():
            out[f"{part}.{name}"] = tensor
    return out


@pytest.fixture
def keep_threads():
    """Runs in this process set torch's thread count (num_threads: 1); put it back after."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_sigkill_while_saving_and_after_saving_then_resume(tiny_model, tiny_dataset, tmp_path, keep_threads):
    args = settings(tiny_model, tiny_dataset)
    ref, run = tmp_path / "reference", tmp_path / "run"
    logs = {name: tmp_path / f"{name}.log" for name in ("first", "second")}

    # (a) killed while a checkpoint is being written, once a complete one exists
    first = start([*args, "--output-dir", str(run)], logs["first"])
    outcome: dict[str, object] = {}

    def reference_run():
        try:
            outcome["rc"] = main(["-q", "train", *args, "--output-dir", str(ref)])
        except BaseException as err:  # reported by the main thread
            outcome["error"] = err

    reference = threading.Thread(target=reference_run)
    reference.start()
    try:
        killed_a = kill_when(first, lambda: saved_step(run) > 0 and any(run.glob(".last.*.tmp")), logs["first"])
    finally:
        reference.join()
    if "error" in outcome:
        raise outcome["error"]
    assert outcome["rc"] == 0
    step_a = check_resumable(run)
    leftovers = sorted(p.name for p in run.glob(".*.tmp"))  # what the killed writer left behind
    if killed_a:
        assert first.returncode == -signal.SIGKILL
        assert step_a < TOTAL

    # (b) resumed (settings come from the checkpoint), killed once a newer checkpoint is in place
    resume = ["-q", "train", "--resume", "--output-dir", str(run)]
    second = start(resume[2:], logs["second"])
    killed_b = kill_when(second, lambda: saved_step(run) > step_a, logs["second"])
    step_b = check_resumable(run)
    assert step_b >= step_a
    if killed_b:
        assert second.returncode == -signal.SIGKILL
        assert step_b > step_a

    # resumed again, to the end
    assert main(resume) == 0

    assert not list(run.glob(".*.tmp")), "half-written checkpoints left behind"
    for folder in (ref, run):
        assert checkpoint.load_trainer_state(folder / "last")["step"] == TOTAL
        assert checkpoint.read_info(folder / "last")["step"] == TOTAL
    expected, got = weights(ref), weights(run)
    assert expected.keys() == got.keys() and len(expected) > 10
    for name, tensor in expected.items():
        torch.testing.assert_close(got[name], tensor, rtol=0, atol=1e-5, msg=lambda m: f"{name}: {m}")
    # the learned temperature too
    torch.testing.assert_close(load_file(str(run / "last" / "loss.safetensors")),
                               load_file(str(ref / "last" / "loss.safetensors")), rtol=0, atol=1e-5)
    # a kill between the two renames that replace last/ leaves only .last.old: still resumable
    os.replace(run / "last", run / ".last.old")
    assert checkpoint.resumable_dir(run) == run / ".last.old" and check_resumable(run) == TOTAL
    print(f"killed while saving after step {step_a}: {killed_a} (left {leftovers}); "
          f"after saving step {step_b}: {killed_b}")
