"""Model FLOPs of a transformer encoder, so that speed is reported as a fraction of what the
machine's matrix units can do (model FLOPs utilisation, as nanoGPT and PaLM report it).

Counted per real (non-padding) token: a forward pass costs 2 FLOPs per weight of the
transformer layers (embedding tables are look-ups, not products) plus the attention
products, 4 · length · hidden per layer; a training step (forward + backward) costs three
times its forward. Padding is not counted: it is work, but not useful work.
"""

from __future__ import annotations

from torch import nn


def encoder_shape(encoder: nn.Module) -> tuple[int, int, int]:
    """(non-embedding parameters, layers, hidden size) of a Hugging Face encoder."""
    params = sum(p.numel() for n, p in encoder.named_parameters() if "embeddings" not in n)
    cfg = encoder.config
    return params, int(cfg.num_hidden_layers), int(cfg.hidden_size)


def forward_flops(shape: tuple[int, int, int], lengths: list[int]) -> float:
    """FLOPs of one forward pass over sequences of the given real lengths."""
    params, layers, hidden = shape
    tokens = sum(lengths)
    attention = sum(4 * n * n * hidden * layers for n in lengths)
    return 2.0 * params * tokens + attention


def training_flops(shape: tuple[int, int, int], lengths: list[int]) -> float:
    """FLOPs of forward + backward over sequences of the given real lengths."""
    return 3.0 * forward_flops(shape, lengths)
