"""Pictures of training, for a person who would rather look than read."""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from kgc.io import atomic_path  # noqa: E402

log = logging.getLogger("kgc")


def plot_history(history: list[dict], path: str | Path, title: str = "") -> None:
    """Training loss (left axis) and evaluation MRR (right axis) against steps."""
    losses = [(h["step"], h["loss"]) for h in history if "loss" in h]
    evals = [(h["step"], h["eval"]["mrr"]) for h in history if "eval" in h]
    fig, ax = plt.subplots(figsize=(7, 4))
    if losses:
        ax.plot(*zip(*losses), color="tab:blue", lw=1, label="training loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss", color="tab:blue")
    if evals:
        ax2 = ax.twinx()
        ax2.plot(*zip(*evals), "o-", color="tab:red", label="eval MRR")
        ax2.set_ylabel("MRR", color="tab:red")
        ax2.set_ylim(0, 1)
    ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path)


def save_figure(fig, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=120)
    plt.close(fig)
    log.info("wrote %s", path)
