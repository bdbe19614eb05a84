"""Checkpoints are folders, written whole into a temporary folder and renamed into place.

A model folder holds the encoders (``save_pretrained``, safetensors), the tokenizer,
``loss.safetensors`` (the loss's own parameters, e.g. the learned temperature) and
``kgc_config.json``; a resumable one also holds ``trainer_state.pt`` (optimizer, step,
random states, queue), loaded with ``torch.load(weights_only=True)`` so that a file carrying
a pickled object which would run code is refused.

A training run's output folder holds ``best/`` (best dev MRR) and ``last/`` (latest, with
trainer state); :func:`model_dir` accepts the run folder itself and picks ``best/``.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from kgc import __version__
from kgc.config import Config, from_dict
from kgc.encoder import BiEncoder
from kgc.errors import KGCError
from kgc.io import replace_dir, temp_dir_beside

log = logging.getLogger("kgc")

CONFIG_FILE = "kgc_config.json"
STATE_FILE = "trainer_state.pt"


def model_dir(path: str | Path) -> Path:
    """The model folder behind ``path``: itself, or its ``best/`` or ``last/`` child."""
    path = Path(path)
    for candidate in (path, path / "best", path / "last", path / ".last.old"):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    raise KGCError(f"{path}: not a kgc checkpoint (no {CONFIG_FILE} in it, nor in best/ or last/)")


def resumable_dir(run_dir: str | Path) -> Path:
    """The newest complete checkpoint with trainer state in a run folder.

    ``last/`` normally; ``.last.old`` when a run was killed between the two renames that
    replace ``last/``."""
    run_dir = Path(run_dir)
    for candidate in (run_dir / "last", run_dir / ".last.old"):
        if (candidate / CONFIG_FILE).is_file() and (candidate / STATE_FILE).is_file():
            return candidate
    raise KGCError(f"{run_dir}: nothing to resume (no last/ checkpoint with trainer state)")


def save(directory: str | Path, model: BiEncoder, tokenizer, cfg: Config, loss: torch.nn.Module,
         info: dict[str, Any], trainer_state: dict[str, Any] | None = None) -> Path:
    """Write a complete checkpoint folder atomically (temporary folder, then rename)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    for stale in directory.parent.glob(f".{directory.name}.*.tmp"):  # left by a run killed mid-write
        shutil.rmtree(stale, ignore_errors=True)
    tmp = temp_dir_beside(directory)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp / "tokenizer")
        loss_state = {k: v.detach().cpu().contiguous() for k, v in loss.state_dict().items()}
        save_file(loss_state, str(tmp / "loss.safetensors"))
        meta = {"kgc_version": __version__, "config": cfg.to_dict(), **info}
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        if trainer_state is not None:
            torch.save(trainer_state, tmp / STATE_FILE)
        replace_dir(tmp, directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return directory


def read_info(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise KGCError(f"{path}: unreadable checkpoint settings ({err})") from None
    if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
        raise KGCError(f"{path}: unreadable checkpoint settings (no 'config' object)")
    return info


def load_config(directory: str | Path, **overrides: Any) -> Config:
    """The settings stored in a checkpoint, with ``overrides`` applied.

    A checkpoint may not switch on ``trust_remote_code`` by itself (that would let a
    downloaded folder run its own Python code): only an explicit override does."""
    info = read_info(directory)
    stored = dict(info["config"])
    if stored.get("trust_remote_code") and "trust_remote_code" not in overrides:
        log.warning("%s: ignoring trust_remote_code: true stored in the checkpoint; pass "
                    "--trust-remote-code true if you trust its code", Path(directory) / CONFIG_FILE)
        stored["trust_remote_code"] = False
    return from_dict({**stored, **overrides}, str(Path(directory) / CONFIG_FILE))


def load_model(directory: str | Path, cfg: Config) -> BiEncoder:
    return BiEncoder.from_checkpoint(directory, pooling=cfg.pooling, trust_remote_code=cfg.trust_remote_code)


def load_loss_state(directory: str | Path, loss: torch.nn.Module) -> None:
    path = Path(directory) / "loss.safetensors"
    if path.exists():
        loss.load_state_dict(load_file(str(path)))


def load_trainer_state(directory: str | Path) -> dict[str, Any]:
    """Trainer state, refusing anything but tensors and plain containers (weights_only)."""
    path = Path(directory) / STATE_FILE
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise KGCError(f"{path}: no trainer state to resume from") from None
    except Exception as err:  # pickle.UnpicklingError and friends
        raise KGCError(f"{path}: refused to load (not a plain weights file: {err})") from None
