"""Lanes: a batch's sequences split across the CPU cores, each core encoding its own share.

With one process using both cores of this machine through PyTorch's intra-op threads,
every operation splits its tensor between the cores, and each core's part of the next
operation is mostly data the other core just wrote: a matrix product followed by GELU and
another product ran at 245 GFLOP/s with two intra-op threads against 2 x 178 for two
threads of one intra-op thread each, on their own data (measured here). So on CPU a
batch is cut into lanes (:meth:`kgc.batches.TokenBatch.build`: the length-sorted sequences
dealt round-robin, which balances their tokens), and the transformer layers of each lane
run in their own thread with one intra-op thread, forward and backward; the embedding
look-up, pooling and the loss stay on the calling thread; the parameters' gradients of
the lanes are summed in a fixed order, so two runs give the same weights.

A WN18RR training step (default model, batch 256, bf16) took 6.06 s instead of 6.88 here
(eight alternating steps of one process, faster in all eight).
Lanes are used only without dropout while training: dropout masks drawn in several
threads would come in a random order, and a resumed run would not repeat its masks.
"""

from __future__ import annotations

import contextlib
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import torch

from kgc.errors import ConfigError

MAX_AUTO_LANES = 8  # more lanes than this would leave too few tokens per matrix product
MIN_SEQUENCES_PER_LANE = 32


def resolve_lanes(setting: int | None, device: torch.device) -> int:
    """Lanes per encoder pass: the ``cpu_lanes`` setting, or (``None``) one per intra-op
    thread, at most :data:`MAX_AUTO_LANES`. Always 1 on GPUs, which parallelise inside
    each operation."""
    if setting is not None and setting < 1:
        raise ConfigError(f"cpu_lanes must be at least 1, got {setting}")
    if device.type != "cpu":
        return 1
    return setting if setting is not None else max(1, min(MAX_AUTO_LANES, torch.get_num_threads()))


def lanes_for(num_sequences: int, lanes: int) -> int:
    """Fewer lanes for small batches: each keeps at least :data:`MIN_SEQUENCES_PER_LANE`."""
    return max(1, min(lanes, num_sequences // MIN_SEQUENCES_PER_LANE))


@functools.lru_cache(maxsize=None)
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kgc-lane")


def _in_threads(tasks: list[Callable[[], object]]) -> list[object]:
    """Run ``tasks`` at once, the first on this thread, each with one intra-op thread and
    this thread's grad, inference and CPU autocast modes (all thread-local in PyTorch)."""
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()
    cast, cast_dtype = torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")

    def call(task: Callable[[], object]) -> object:
        torch.set_num_threads(1)
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.inference_mode(inference))
            stack.enter_context(torch.set_grad_enabled(grad))
            stack.enter_context(torch.autocast("cpu", dtype=cast_dtype, enabled=cast))
            return task()

    threads = torch.get_num_threads()
    try:
        futures = [_pool(len(tasks) - 1).submit(call, task) for task in tasks[1:]]
        first = call(tasks[0])
        return [first] + [f.result() for f in futures]
    finally:
        torch.set_num_threads(threads)


class _Lanes(torch.autograd.Function):
    """Forward: each lane's layers in its own thread, from a detached copy of its inputs.
    Backward: each lane's backward pass in its own thread, from its share of the gradient,
    to its inputs and the parameters; the parameters' gradients are summed in lane order
    (the same sum whatever thread finishes first) and handed back to autograd, so
    ``backward()`` and ``torch.autograd.grad`` both see an ordinary differentiable op."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, run: Callable[[int, torch.Tensor], torch.Tensor], sizes: list[int],
                *params: torch.Tensor) -> torch.Tensor:
        inputs = [part.detach().requires_grad_() for part in x.split(sizes)]
        with torch.enable_grad():
            outputs = _in_threads([functools.partial(run, k, part) for k, part in enumerate(inputs)])
        ctx.lane_inputs, ctx.lane_outputs, ctx.params = inputs, outputs, params
        return torch.cat([out.detach() for out in outputs])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        def lane_backward(k: int, g: torch.Tensor) -> tuple:
            return torch.autograd.grad(ctx.lane_outputs[k], (ctx.lane_inputs[k], *ctx.params), g, allow_unused=True)

        per_lane = _in_threads([functools.partial(lane_backward, k, g)
                                for k, g in enumerate(grad.split([len(out) for out in ctx.lane_outputs]))])
        grad_x = torch.cat([g[0] if g[0] is not None else torch.zeros_like(x)
                            for g, x in zip(per_lane, ctx.lane_inputs)])
        param_grads = []
        for grads in zip(*(g[1:] for g in per_lane)):
            present = [g for g in grads if g is not None]
            param_grads.append(functools.reduce(torch.add, present) if present else None)
        del ctx.lane_inputs, ctx.lane_outputs, ctx.params
        return (grad_x, None, None, *param_grads)


def run_lanes(run: Callable[[int, torch.Tensor], torch.Tensor], x: torch.Tensor, sizes: list[int],
              params: list[torch.Tensor]) -> torch.Tensor:
    """``cat([run(k, part_k)])`` over the parts of ``x`` (rows cut by ``sizes``), one lane
    per part, differentiable through ``x`` and ``params`` (every parameter ``run`` uses)."""
    if len(sizes) == 1:
        return run(0, x)
    trainable = [p for p in params if p.requires_grad]
    if torch.is_grad_enabled() and (x.requires_grad or trainable):
        return _Lanes.apply(x, run, sizes, *trainable)
    return torch.cat(_in_threads([functools.partial(run, k, part) for k, part in enumerate(x.split(sizes))]))
