"""The training loop, readable top to bottom: set-up, then for each step
batch -> encode -> loss -> backward -> clip -> step, with evaluation and checkpoints
at the end of every epoch (and every ``save_every`` / ``eval_every`` steps when set).

Every training triple is used in both directions: (h, r, t) and (t, r⁻¹, h).
A run killed at any moment can continue with ``resume=True`` from ``last/``: the batch
order is a pure function of (seed, epoch), and the optimizer, step, random state and
negative queues travel in the checkpoint, so the resumed run ends with the same weights.
"""

from __future__ import annotations

import copy
import gc
import logging
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from kgc import allocator, checkpoint
from kgc.batches import batch_triples, epoch_order, make_batch, num_batches
from kgc.config import Config
from kgc.dataset import Dataset
from kgc.encoder import BiEncoder, load_tokenizer
from kgc.errors import KGCError
from kgc.evaluate import evaluate
from kgc.flops import encoder_shape, training_flops
from kgc.lanes import resolve_lanes
from kgc.io import write_json
from kgc.plots import plot_history
from kgc.losses import ARBRegularizer, ContrastiveInputs, build_loss
from kgc.precision import autocast, grad_scaler, pick_device, resolve_precision
from kgc.queues import MomentumQueue, PreBatchQueue, ema_update

log = logging.getLogger("kgc")
WARMUP_STEPS = 2  # steps of a process left out of its measured throughput (see the training loop)


def loss_from_config(cfg: Config) -> torch.nn.Module:
    """The configured loss; SimKGC's settings feed InfoNCE, ``loss_options`` any loss."""
    kwargs: dict[str, Any] = {}
    if cfg.loss == "infonce":
        kwargs = dict(margin=cfg.margin, temperature=cfg.temperature, learn_temperature=cfg.learn_temperature,
                      prebatch_weight=cfg.prebatch_weight, use_self_negatives=cfg.self_negatives,
                      symmetric=cfg.symmetric)
    elif cfg.loss == "supcon":
        kwargs = dict(temperature=cfg.temperature, learn_temperature=cfg.learn_temperature)
    return build_loss(cfg.loss, **{**kwargs, **cfg.loss_options})


def lr_at(step: int, cfg: Config, total_steps: int) -> float:
    """Linear warm-up to ``lr`` over ``warmup_steps``, then linear decay to 0 at ``total_steps``."""
    warmup = min(cfg.warmup_steps, max(1, total_steps // 10))
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    return cfg.lr * max(0.0, (total_steps - step) / max(1, total_steps - warmup))


def param_groups(modules: list[torch.nn.Module], weight_decay: float) -> list[dict]:
    """AdamW groups: no weight decay for biases, LayerNorm weights and loss scalars."""
    decay, no_decay = [], []
    for module in modules:
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim < 2 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train(cfg: Config, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    # ---------------------------------------------------------------- set-up
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device()
    precision = resolve_precision(cfg.precision, device)
    torch.manual_seed(cfg.seed)

    last_dir = out / "last"
    state: dict[str, Any] | None = None
    loss_fn = loss_from_config(cfg)
    if resume:
        found = checkpoint.resumable_dir(out)
        state = checkpoint.load_trainer_state(found)
        model = checkpoint.load_model(found, cfg)
        tokenizer = load_tokenizer(str(found / "tokenizer"))
        checkpoint.load_loss_state(found, loss_fn)
        log.info("resuming from %s at step %d", found, state["step"])
    else:
        model = BiEncoder.from_pretrained(cfg.model, pooling=cfg.pooling, shared=cfg.shared_encoder,
                                          trust_remote_code=cfg.trust_remote_code)
        tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    model.set_dropout(cfg.dropout)
    model.to(device).train()
    lanes = resolve_lanes(cfg.cpu_lanes, device)
    if lanes > 1 and model.dropout_active():
        # dropout masks drawn in several threads come in a random order: a resumed run
        # would not repeat them (kgc.lanes)
        log.info("dropout is on: one lane instead of %d", lanes)
        lanes = 1
    ds = Dataset.build(cfg, tokenizer)

    loss_fn.to(device)
    arb = ARBRegularizer(cfg.arb_weight) if cfg.arb_weight > 0 else None
    # fused AdamW: one kernel over all tensors (the default on CPU is a per-tensor loop)
    optimizer = torch.optim.AdamW(param_groups([model, loss_fn], cfg.weight_decay), lr=cfg.lr,
                                  fused=device.type in ("cpu", "cuda"))
    scaler = grad_scaler(precision, device)
    prebatch = PreBatchQueue(cfg.prebatch)
    momentum_queue = MomentumQueue(cfg.momentum_queue) if cfg.momentum_queue > 0 else None
    ema = copy.deepcopy(model.entity_module()).eval().requires_grad_(False) if momentum_queue is not None else None

    examples = ds.kg.triples("train", with_inverse=True)
    per_epoch = num_batches(len(examples), cfg.batch_size)
    total_steps = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * per_epoch
    step, epoch, index, best, history = 0, 0, 0, -math.inf, []
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        prebatch.load_state_dict(state["prebatch"])
        if momentum_queue is not None:
            momentum_queue.load_state_dict(state["momentum_queue"])
            ema.load_state_dict(state["ema"])
        torch.set_rng_state(state["rng"])
        step, epoch, index, best = state["step"], state["epoch"], state["index"], state["best"]
        history = state["history"]
    q_shape, e_shape = encoder_shape(model.query_encoder), encoder_shape(model.entity_module())
    log.info("training %s on %s: %d examples (both directions), %d steps of %d, precision %s, device %s, "
             "memory allocator %s, %d lane(s)", cfg.model, ds.kg.path, len(examples), total_steps, cfg.batch_size,
             precision, device, allocator.describe(), lanes)

    def save(final_eval: bool) -> None:
        nonlocal best, t_log, ex_log, flops_log
        metrics = None
        if final_eval and cfg.eval_split != "none" and len(ds.kg.triples(cfg.eval_split)):
            metrics, _ = evaluate(model, ds, cfg, cfg.eval_split, device, precision, progress=progress)
            history.append({"step": step, "epoch": epoch, "eval": {k: metrics[k] for k in ("mrr", "hits@1", "hits@3", "hits@10")}})
            log.info("step %d %s: MRR %.4f  Hits@1 %.4f  Hits@10 %.4f", step, cfg.eval_split,
                     metrics["mrr"], metrics["hits@1"], metrics["hits@10"])
        for p in model.parameters():
            if not torch.isfinite(p).all():
                raise KGCError("non-finite weights: refusing to write a checkpoint")
        is_best = metrics is not None and metrics["mrr"] > best
        if is_best:
            best = metrics["mrr"]
        info = {"step": step, "epoch": epoch, "data_dir": str(ds.kg.path), "precision": precision,
                "eval": None if metrics is None else {"split": cfg.eval_split, **{k: metrics[k] for k in ("mrr", "mr", "hits@1", "hits@3", "hits@10")}}}
        trainer_state = {
            "step": step, "epoch": epoch, "index": index, "best": best, "history": history,
            "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "prebatch": prebatch.state_dict(), "rng": torch.get_rng_state(),
        }
        if momentum_queue is not None:
            trainer_state["momentum_queue"] = momentum_queue.state_dict()
            trainer_state["ema"] = ema.state_dict()
        checkpoint.save(last_dir, model, tokenizer, cfg, loss_fn, info, trainer_state)
        if is_best or not (out / "best").exists():
            checkpoint.save(out / "best", model, tokenizer, cfg, loss_fn, info)
        write_json(out / "history.json", history)
        t_log, ex_log, flops_log = time.perf_counter(), 0, 0.0  # logged speed covers training only

    # The token cache, data and model are ~0.6 M Python objects that live as long as the run.
    # A full garbage collection walks them all (0.15-0.42 s each for WN18RR here; set-up
    # triggers eight) and, inside a step, would hold up the lane on the main thread while the
    # other waits. Frozen, they are skipped by every later collection. Unfrozen when training
    # ends.
    gc.collect()
    gc.freeze()
    try:
        # ---------------------------------------------------------------- loop
        nonfinite, t_log, ex_log, flops_log = 0, time.perf_counter(), 0, 0.0
        # Throughput over every step but the first two of this process, which pay one-off
        # costs: the first generates oneDNN's kernels and touches its ~3 GB of activation
        # memory for the first time (~840,000 page faults for WN18RR at batch 256 here), the
        # second first-touches activation memory again, since AdamW's state (0.36 GB for the
        # two default encoders) took freed pages at the end of the first: ~125,000 faults,
        # ~36,000 without an optimizer step; later steps take a few thousand to tens of
        # thousands while the process grows to its steady size (~40 steps), then few.
        speed = {"examples": 0, "flops": 0.0, "warmup_seconds": [], "step_seconds": []}
        first_step = step
        bar = tqdm(total=total_steps, initial=step, desc="training", disable=not progress, dynamic_ncols=True)
        while step < total_steps:
            order = epoch_order(len(examples), cfg.seed, epoch)
            while index < per_epoch and step < total_steps:
                t_step = time.perf_counter()
                triples = batch_triples(examples, order, index, cfg.batch_size)
                batch = make_batch(triples, ds.tokens, ds.known_train, cfg.encode_chunk, cfg.self_negatives, lanes).to(device)
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step, cfg, total_steps)
                heads, rels = batch.triples[:, 0], batch.triples[:, 1]
                queue_vecs, queue_ids = prebatch.embeddings(), prebatch.entity_ids()
                if momentum_queue is not None and momentum_queue.embeddings() is not None:
                    mq, mi = momentum_queue.embeddings(), momentum_queue.entity_ids()
                    queue_vecs = mq if queue_vecs is None else torch.cat([queue_vecs, mq])
                    queue_ids = mi if queue_ids is None else torch.cat([queue_ids, mi])
                with autocast(precision, device):
                    query = model.encode_queries(batch.queries)
                    entities = model.encode_entities(batch.entities)
                    tails = entities[batch.tail_index]
                    inputs = ContrastiveInputs(
                        query=query, tails=tails, batch_known=batch.batch_known,
                        heads=entities[batch.head_index] if cfg.self_negatives else None,
                        head_known=batch.head_known if cfg.self_negatives else None,
                        queue=None if queue_vecs is None else queue_vecs.to(device),
                        queue_known=None if queue_ids is None else ds.known_train.contains(heads.cpu(), rels.cpu(), queue_ids.cpu()).to(device),
                    )
                    loss = loss_fn(inputs)
                    if arb is not None:
                        loss = loss + arb(query, tails)
                ok = bool(torch.isfinite(loss))
                if ok:
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)
                    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    ok = bool(torch.isfinite(grad_norm))
                if ok:
                    scaler.step(optimizer)
                    scaler.update()
                    nonfinite = 0
                else:
                    nonfinite += 1
                    log.warning("step %d: non-finite loss or gradient, step skipped (%d in a row)", step, nonfinite)
                    if nonfinite >= cfg.max_nonfinite_steps:
                        raise KGCError(f"{nonfinite} non-finite steps in a row at step {step}: aborting; "
                                       f"the last good checkpoint is in {last_dir}")
                optimizer.zero_grad(set_to_none=True)
                prebatch.push(tails.detach(), batch.triples[:, 2])
                if momentum_queue is not None:
                    ema_update(ema, model.entity_module(), cfg.momentum)
                    with torch.no_grad(), autocast(precision, device):
                        vecs = model.encode_with(ema, batch.entities)
                    momentum_queue.push(vecs[batch.tail_index], batch.triples[:, 2])

                step += 1
                index += 1
                ex_log += len(triples)
                step_flops = training_flops(q_shape, batch.queries.lengths) + training_flops(e_shape, batch.entities.lengths)
                flops_log += step_flops
                if step <= first_step + WARMUP_STEPS:
                    speed["warmup_seconds"].append(round(time.perf_counter() - t_step, 3))
                else:
                    speed["step_seconds"].append(time.perf_counter() - t_step)
                    speed["examples"] += len(triples)
                    speed["flops"] += step_flops
                bar.update(1)
                if ok:
                    history.append({"step": step, "loss": round(loss.item(), 6)})
                if step % cfg.log_every == 0 or step == total_steps:
                    dt = time.perf_counter() - t_log
                    temp = getattr(loss_fn, "temperature", None)
                    log.info("step %d/%d epoch %d loss %.4f lr %.2e%s | %.1f examples/s, %.1f GFLOP/s",
                             step, total_steps, epoch, loss.item(), optimizer.param_groups[0]["lr"],
                             f" temperature {temp:.4f}" if temp is not None else "", ex_log / dt, flops_log / dt / 1e9)
                    bar.set_postfix(loss=f"{loss.item():.3f}", ex_s=f"{ex_log / dt:.1f}")
                    t_log, ex_log, flops_log = time.perf_counter(), 0, 0.0
                if cfg.save_every and step % cfg.save_every == 0 and step < total_steps:
                    save(final_eval=bool(cfg.eval_every) and step % cfg.eval_every == 0)
                elif cfg.eval_every and step % cfg.eval_every == 0 and step < total_steps:
                    save(final_eval=True)
            if index >= per_epoch:
                epoch, index = epoch + 1, 0
                if step < total_steps:
                    save(final_eval=True)
        bar.close()
        save(final_eval=True)
        plot_history(history, out / "training_curve.png", title=f"{cfg.loss} on {ds.kg.path.name}")
        summary = {"steps": step, "epochs": epoch, "best_" + cfg.eval_split + "_mrr": best if best > -math.inf else None,
                   "precision": precision, "lanes": lanes, "output_dir": str(out)}
        times = speed["step_seconds"]
        if times:
            summary["examples_per_s"] = speed["examples"] / sum(times)
            summary["model_flops_per_s"] = speed["flops"] / sum(times)
            summary["timed_steps"] = len(times)
            summary["step_seconds"] = {"min": round(min(times), 3), "median": round(statistics.median(times), 3),
                                       "max": round(max(times), 3)}
        summary["warmup_step_seconds"] = speed["warmup_seconds"]  # the untimed first steps, for the record
        write_json(out / "train_summary.json", summary)
        return summary
    finally:
        gc.unfreeze()
