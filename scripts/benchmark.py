#!/usr/bin/env python
"""Measure kgc's speed on this machine, in one run, against the machine's own peak.

1. fp32 and bf16 matrix-product throughput (the peak each precision can reach here);
2. training examples/s on WN18RR with the default model, batch 256, 50-token texts;
3. entity-encoding entities/s and the wall time of a full filtered WN18RR test evaluation
   (both directions, all 40,943 entities, entity encoding included);
4. achieved model FLOP/s of training and of encoding as a fraction of the measured peak of
   the precision used (see kgc/flops.py for what is counted).

    python scripts/benchmark.py --json bench.json            # full run (< 10 min)
    python scripts/benchmark.py --quick                      # < 3 min
WN18RR is read from --data-dir, else from data/WN18RR or $KGC_DATA_ROOT/WN18RR
($KGC_DATA_ROOT defaults to ../shared/data beside the repository, as in the tests).
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
import transformers

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
if (REPO.parent / "shared" / "data").is_dir():
    os.environ.setdefault("KGC_DATA_ROOT", str(REPO.parent / "shared" / "data"))

from kgc.config import load_config  # noqa: E402
from kgc.dataset import Dataset  # noqa: E402
from kgc.encoder import BiEncoder, load_tokenizer  # noqa: E402
from kgc.evaluate import evaluate  # noqa: E402
from kgc.flops import encoder_shape, forward_flops  # noqa: E402
from kgc.io import write_json  # noqa: E402
from kgc.precision import cpu_bf16_flags, pick_device, processor_name, resolve_precision  # noqa: E402
from kgc.train import train  # noqa: E402

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data/WN18RR")
    parser.add_argument("--json", default=None, help="write the results here as JSON")
    parser.add_argument("--quick", action="store_true", help="fewer steps and queries (< 3 min)")
    parser.add_argument("--train-steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    for noisy in ("transformers", "dgl"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    transformers.utils.logging.disable_progress_bar()  # checkpoint writes inside training

    device = pick_device()
    precision = resolve_precision(args.precision, device)
    steps = args.train_steps or (4 if args.quick else 12)
    results: dict = {"precision": precision, "device": str(device), "processor": processor_name(device),
                     "cpu_bf16_units": list(cpu_bf16_flags()), "threads": torch.get_num_threads(),
                     "quick": args.quick}
    print(f"{results['processor']}, {results['threads']} threads, bf16 units: "
          f"{', '.join(results['cpu_bf16_units']) or 'none'}", flush=True)

    # 1. the machine's own peak --------------------------------------------------------
    results["matmul_gflops_fp32"] = matmul_gflops(torch.float32, device, 0.5 if args.quick else 1.5)
    results["matmul_gflops_bf16"] = matmul_gflops(torch.bfloat16, device, 0.5 if args.quick else 1.5)
    peak = results["matmul_gflops_bf16" if precision == "bf16" else "matmul_gflops_fp32"]
    if precision == "fp16":
        peak = matmul_gflops(torch.float16, device, 1.0)
    results["peak_gflops_used"] = peak
    print(f"matmul peak: fp32 {results['matmul_gflops_fp32']:.0f} GFLOP/s, bf16 {results['matmul_gflops_bf16']:.0f} GFLOP/s",
          flush=True)

    # 2. training ------------------------------------------------------------------------
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(REPO / "configs" / "wn18rr.yaml", {
            "data_dir": args.data_dir, "batch_size": args.batch_size, "max_steps": steps,
            "eval_split": "none", "output_dir": tmp, "log_every": 10**9, "precision": args.precision,
            "max_tokens": 50})
        start = time.perf_counter()
        summary = train(cfg, progress=False)
        results["train_wall_seconds"] = time.perf_counter() - start
    results["train_batch_size"] = args.batch_size
    results["train_timed_steps"] = summary["timed_steps"]
    results["train_examples_per_s"] = summary["examples_per_s"]
    results["train_model_gflops"] = summary["model_flops_per_s"] / 1e9
    results["train_flops_fraction_of_peak"] = summary["model_flops_per_s"] / 1e9 / peak
    print(f"training: {results['train_examples_per_s']:.1f} examples/s, "
          f"{results['train_model_gflops']:.0f} GFLOP/s = {results['train_flops_fraction_of_peak']:.1%} of peak", flush=True)

    # 3. encoding and full evaluation ---------------------------------------------------
    cfg = load_config(REPO / "configs" / "wn18rr.yaml", {"data_dir": args.data_dir, "precision": args.precision})
    start = time.perf_counter()
    model = BiEncoder.from_pretrained(cfg.model).to(device).eval()
    ds = Dataset.build(cfg, load_tokenizer(cfg.model))
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
    print(f"encoding: {results['encode_entities_per_s']:.0f} entities/s, {results['encode_model_gflops']:.0f} GFLOP/s "
          f"= {results['encode_flops_fraction_of_peak']:.1%} of peak", flush=True)
    print(f"evaluation of WN18RR test ({metrics['count']} queries, {ds.kg.num_entities} entities): "
          f"{metrics['seconds']:.1f} s (entity encoding {enc:.1f} s)", flush=True)

    # table ------------------------------------------------------------------------------
    rows = [("precision", precision),
            ("matmul fp32 (GFLOP/s)", f"{results['matmul_gflops_fp32']:.0f}"),
            ("matmul bf16 (GFLOP/s)", f"{results['matmul_gflops_bf16']:.0f}"),
            ("train examples/s (batch %d)" % args.batch_size, f"{results['train_examples_per_s']:.1f}"),
            ("train model GFLOP/s", f"{results['train_model_gflops']:.0f}"),
            ("train fraction of peak", f"{results['train_flops_fraction_of_peak']:.1%}"),
            ("encode entities/s", f"{results['encode_entities_per_s']:.0f}"),
            ("encode fraction of peak", f"{results['encode_flops_fraction_of_peak']:.1%}"),
            ("eval WN18RR test (s)", f"{results['eval_wn18rr_test_seconds']:.1f}")]
    width = max(len(r[0]) for r in rows)
    print()
    for name, value in rows:
        print(f"{name:<{width}}  {value:>10}")
    if args.json:
        write_json(args.json, results)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
