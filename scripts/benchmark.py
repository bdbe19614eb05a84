#!/usr/bin/env python
"""Measure kgc's speed on this machine, in one run, against the machine's own peak.

1. fp32 and bf16 matrix-product throughput (the peak each precision can reach here);
2. training examples/s on WN18RR with the default model, batch 256, 50-token texts, over
   22 steps (3 with --quick) after two untimed warm-up steps (kgc/train.py says why), and
   that of a plain SimKGC-style step (the reference: 3 timed steps after the same two
   warm-up steps; 1 step of batch 32 with --quick);
3. entity-encoding entities/s and the wall time of a full filtered WN18RR test evaluation
   (both directions, all 40,943 entities, entity encoding included);
4. achieved model FLOP/s of training and of encoding as a fraction of the measured peak of
   the precision used (see kgc/flops.py for what is counted).

    python scripts/benchmark.py --json bench.json            # full run (< 10 min)
    python scripts/benchmark.py --quick                      # < 3 min
WN18RR is read from --data-dir, else from data/WN18RR or $KGC_DATA_ROOT/WN18RR
($KGC_DATA_ROOT defaults to ../shared/data beside the repository, as in the tests).
Like the ``kgc`` command, the script restarts itself once with jemalloc when it is installed
(see kgc/allocator.py; KGC_ALLOCATOR=system to measure with the system's malloc).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
if (REPO.parent / "shared" / "data").is_dir():
    os.environ.setdefault("KGC_DATA_ROOT", str(REPO.parent / "shared" / "data"))

from kgc import allocator  # noqa: E402
from kgc.batches import TokenBatch, batch_triples, epoch_order, make_batch  # noqa: E402
from kgc.config import Config, load_config  # noqa: E402
from kgc.dataset import Dataset  # noqa: E402
from kgc.encoder import BiEncoder, load_tokenizer, pool_padded, resolve_model_path  # noqa: E402
from kgc.evaluate import evaluate  # noqa: E402
from kgc.flops import encoder_shape, forward_flops  # noqa: E402
from kgc.io import write_json  # noqa: E402
from kgc.losses.inputs import ContrastiveInputs  # noqa: E402
from kgc.precision import cpu_bf16_flags, pick_device, processor_name, resolve_precision  # noqa: E402
from kgc.train import WARMUP_STEPS, loss_from_config, train  # noqa: E402

log = logging.getLogger("kgc")


def matmul_gflops(dtype: torch.dtype, device: torch.device, seconds: float) -> float:
    """Best throughput over a few square sizes (the peak this precision reaches here)."""
    best = 0.0
    for n in (1024, 2048, 4096):
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        for _ in range(2):
            a @ b
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ b
            count += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * n**3 * count / (time.perf_counter() - start) / 1e9)
    return best


def cpu_steal_seconds() -> float | None:
    """CPU time the hypervisor has given to other guests so far, summed over this machine's
    CPUs (the ``steal`` column of /proc/stat), or None where there is no /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def stolen_since(mark: float | None) -> float | None:
    """Seconds the hypervisor gave to other guests since ``mark`` (a :func:`cpu_steal_seconds`
    reading); None where that is unknown."""
    now = cpu_steal_seconds()
    return None if mark is None or now is None else now - mark


def reference_examples_per_s(cfg: Config, ds: Dataset, device: torch.device, batch_size: int,
                             steps: int) -> float:
    """Training examples/s of a plain step as the SimKGC paper's code takes one, on kgc's data.

    fp32; two encoders (queries, entities) run through their Hugging Face forward pass with
    eager attention and their pretrained dropout (0.1); the queries, the tails and the heads
    (self-negatives) of a batch are each one batch padded to its longest text; mean pooling;
    kgc's InfoNCE loss with in-batch and self negatives; gradient clipping and the default
    AdamW (a loop over tensors on CPU). The same texts (50-token limit) and batches as kgc's
    training. Its first ``WARMUP_STEPS`` steps are not timed, as in kgc's training."""
    path = resolve_model_path(cfg.model)
    encoders = [transformers.AutoModel.from_pretrained(path, use_safetensors=True, attn_implementation="eager")
                .to(device).train() for _ in range(2)]
    loss_fn = loss_from_config(cfg).to(device)
    params = [p for module in (*encoders, loss_fn) for p in module.parameters()]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr)
    examples = ds.kg.triples("train", with_inverse=True)
    order = epoch_order(len(examples), cfg.seed, 0)

    def encode(encoder: torch.nn.Module, texts: list[tuple[tuple[int, ...], tuple[int, ...]]]) -> torch.Tensor:
        """One forward pass over all ``texts`` padded to the longest of them."""
        batch = TokenBatch.build([ids for ids, _ in texts], [types for _, types in texts], ds.tokens.pad_id,
                                 group_size=len(texts)).to(device)
        (padded,) = batch.padded_chunks()
        pooled = pool_padded(encoder(**padded).last_hidden_state, padded["attention_mask"], "mean")
        return F.normalize(pooled[batch.restore], dim=-1)

    seconds = 0.0
    for index in range(steps + WARMUP_STEPS):
        start = time.perf_counter()
        triples = batch_triples(examples, order, index, batch_size)
        masks = make_batch(triples, ds.tokens, ds.known_train, cfg.encode_chunk)  # only its known-answer masks
        heads, rels, tails = triples.T.tolist()
        query = encode(encoders[0], [ds.tokens.query(h, r, exclude=t) for h, r, t in zip(heads, rels, tails)])
        tail_vecs = encode(encoders[1], [ds.tokens.entity(t, exclude=h) for h, t in zip(heads, tails)])
        head_vecs = encode(encoders[1], [ds.tokens.entity(h, exclude=t) for h, t in zip(heads, tails)])
        loss = loss_fn(ContrastiveInputs(query=query, tails=tail_vecs, batch_known=masks.batch_known.to(device),
                                         heads=head_vecs, head_known=masks.head_known.to(device)))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if index >= WARMUP_STEPS:
            seconds += time.perf_counter() - start
    return steps * batch_size / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data/WN18RR")
    parser.add_argument("--json", default=None, help="write the results here as JSON")
    parser.add_argument("--quick", action="store_true", help="fewer steps and queries (< 3 min)")
    parser.add_argument("--train-steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    if args.train_steps is not None and args.train_steps <= WARMUP_STEPS:
        parser.error(f"--train-steps must be more than {WARMUP_STEPS}: the first {WARMUP_STEPS} steps are not timed")
    allocator.use_jemalloc()  # restarts this script once with jemalloc preloaded, when installed
    t_start = time.perf_counter()

    def elapsed() -> str:
        return f"[{time.perf_counter() - t_start:.0f} s] "

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    for noisy in ("transformers", "dgl"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    transformers.utils.logging.disable_progress_bar()  # checkpoint writes inside training

    device = pick_device()
    precision = resolve_precision(args.precision, device)
    # timed steps: all but the first WARMUP_STEPS (one-off costs, see kgc/train.py)
    steps = args.train_steps or (5 if args.quick else 24)
    results: dict = {"precision": precision, "device": str(device), "processor": processor_name(device),
                     "cpu_bf16_units": list(cpu_bf16_flags()), "threads": torch.get_num_threads(),
                     "allocator": allocator.describe(), "quick": args.quick}
    print(f"{results['processor']}, {results['threads']} threads, bf16 units: "
          f"{', '.join(results['cpu_bf16_units']) or 'none'}, memory allocator: {results['allocator']}", flush=True)

    # 1. the machine's own peak --------------------------------------------------------
    results["matmul_gflops_fp32"] = matmul_gflops(torch.float32, device, 0.3 if args.quick else 1.5)
    results["matmul_gflops_bf16"] = matmul_gflops(torch.bfloat16, device, 0.3 if args.quick else 1.5)
    peak = results["matmul_gflops_bf16" if precision == "bf16" else "matmul_gflops_fp32"]
    if precision == "fp16":
        peak = matmul_gflops(torch.float16, device, 1.0)
    results["peak_gflops_used"] = peak
    print(f"{elapsed()}matmul peak: fp32 {results['matmul_gflops_fp32']:.0f} GFLOP/s, bf16 {results['matmul_gflops_bf16']:.0f} GFLOP/s",
          flush=True)

    # 2. training ------------------------------------------------------------------------
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(REPO / "configs" / "wn18rr.yaml", {
            "data_dir": args.data_dir, "batch_size": args.batch_size, "max_steps": steps,
            "eval_split": "none", "output_dir": tmp, "log_every": 10**9, "precision": args.precision,
            "max_tokens": 50})
        start, steal = time.perf_counter(), cpu_steal_seconds()
        summary = train(cfg, progress=False)
        results["train_wall_seconds"] = time.perf_counter() - start
        # time the hypervisor gave to other guests while training ran: what makes runs differ
        results["train_cpu_steal_seconds"] = stolen_since(steal)
    results["train_batch_size"] = args.batch_size
    results["train_timed_steps"] = summary["timed_steps"]
    results["train_warmup_step_seconds"] = summary["warmup_step_seconds"]
    results["train_step_seconds"] = summary["step_seconds"]  # min / median / max of the timed steps
    results["train_lanes"] = summary["lanes"]
    results["train_examples_per_s"] = summary["examples_per_s"]
    results["train_model_gflops"] = summary["model_flops_per_s"] / 1e9
    results["train_flops_fraction_of_peak"] = summary["model_flops_per_s"] / 1e9 / peak
    # the ceiling: every model FLOP of these steps at the measured matmul peak
    flops_per_example = summary["model_flops_per_s"] / summary["examples_per_s"]
    results["train_examples_per_s_at_peak"] = peak * 1e9 / flops_per_example
    print(f"{elapsed()}training ({results['train_lanes']} lane(s)): {results['train_examples_per_s']:.1f} examples/s, "
          f"{results['train_model_gflops']:.0f} GFLOP/s = {results['train_flops_fraction_of_peak']:.1%} of peak "
          f"(all at peak: {results['train_examples_per_s_at_peak']:.1f} examples/s); a step took "
          f"{results['train_step_seconds']['min']:.2f} / {results['train_step_seconds']['median']:.2f} / "
          f"{results['train_step_seconds']['max']:.2f} s (min / median / max)", flush=True)

    # 5. the reference step (before 3: the dataset built here serves the evaluation too) --
    cfg = load_config(REPO / "configs" / "wn18rr.yaml", {"data_dir": args.data_dir, "precision": args.precision,
                                                          "max_tokens": 50})
    ds = Dataset.build(cfg, load_tokenizer(cfg.model))
    ref_batch = 32 if args.quick else args.batch_size
    results["reference_batch_size"] = ref_batch
    steal = cpu_steal_seconds()
    results["reference_train_examples_per_s"] = reference_examples_per_s(cfg, ds, device, ref_batch,
                                                                         1 if args.quick else 3)
    results["reference_cpu_steal_seconds"] = stolen_since(steal)
    results["train_speedup_vs_reference"] = results["train_examples_per_s"] / results["reference_train_examples_per_s"]
    print(f"{elapsed()}reference step (fp32, padded, batch {ref_batch}): {results['reference_train_examples_per_s']:.1f} "
          f"examples/s; kgc is {results['train_speedup_vs_reference']:.1f}x faster", flush=True)

    # 3. encoding and full evaluation ---------------------------------------------------
    start = time.perf_counter()
    model = BiEncoder.from_pretrained(cfg.model).to(device).eval()
    results["eval_setup_seconds"] = time.perf_counter() - start
    if args.quick:
        cfg = cfg.replace(eval_max_queries=500)
    metrics, _ = evaluate(model, ds, cfg, "test", device, precision, progress=False)
    lengths = [len(ds.tokens.entity(e)[0]) for e in range(ds.kg.num_entities)]
    enc = metrics["entity_encoding_seconds"]
    results["encode_entities"] = ds.kg.num_entities
    results["encode_entities_per_s"] = ds.kg.num_entities / enc
    results["encode_model_gflops"] = forward_flops(encoder_shape(model.entity_module()), lengths) / enc / 1e9
    results["encode_flops_fraction_of_peak"] = results["encode_model_gflops"] / peak
    results["eval_wn18rr_test_seconds"] = metrics["seconds"]
    results["eval_queries"] = metrics["count"]
    results["eval_untrained_metrics"] = {k: metrics[k] for k in ("mrr", "mr", "hits@1", "hits@3", "hits@10")}
    print(f"{elapsed()}encoding: {results['encode_entities_per_s']:.0f} entities/s, {results['encode_model_gflops']:.0f} GFLOP/s "
          f"= {results['encode_flops_fraction_of_peak']:.1%} of peak", flush=True)
    print(f"{elapsed()}evaluation of WN18RR test ({metrics['count']} queries, {ds.kg.num_entities} entities): "
          f"{metrics['seconds']:.1f} s (entity encoding {enc:.1f} s)", flush=True)

    # table ------------------------------------------------------------------------------
    rows = [("precision", precision),
            ("matmul fp32 (GFLOP/s)", f"{results['matmul_gflops_fp32']:.0f}"),
            ("matmul bf16 (GFLOP/s)", f"{results['matmul_gflops_bf16']:.0f}"),
            ("train examples/s (batch %d)" % args.batch_size, f"{results['train_examples_per_s']:.1f}"),
            ("train model GFLOP/s", f"{results['train_model_gflops']:.0f}"),
            ("train fraction of peak", f"{results['train_flops_fraction_of_peak']:.1%}"),
            ("train examples/s, all at peak", f"{results['train_examples_per_s_at_peak']:.1f}"),
            ("reference examples/s (fp32, batch %d)" % ref_batch, f"{results['reference_train_examples_per_s']:.1f}"),
            ("train speed-up vs reference", f"{results['train_speedup_vs_reference']:.1f}x"),
            ("encode entities/s", f"{results['encode_entities_per_s']:.0f}"),
            ("encode fraction of peak", f"{results['encode_flops_fraction_of_peak']:.1%}"),
            ("eval WN18RR test (s)", f"{results['eval_wn18rr_test_seconds']:.1f}")]
    if results["train_cpu_steal_seconds"] is not None:
        rows.append(("CPU time stolen while training (s)", f"{results['train_cpu_steal_seconds']:.1f}"))
    width = max(len(r[0]) for r in rows)
    print()
    for name, value in rows:
        print(f"{name:<{width}}  {value:>10}")
    results["wall_seconds"] = time.perf_counter() - t_start
    if args.json:
        write_json(args.json, results)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
