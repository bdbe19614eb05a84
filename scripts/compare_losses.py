#!/usr/bin/env python
"""Train the bi-encoder once per training objective and compare them on one budget.

Every run starts from the same pretrained encoder, sees the same batches in the same order
(same seed and batch size) and takes the same number of optimizer steps with the same learning
rate schedule; only the objective differs. Dev MRR is measured every ``--eval-every`` steps to
draw a learning curve, and the final model of each run (its ``last/`` checkpoint, not the best
one on dev) is scored on the whole test split with ``kgc evaluate``.

    python scripts/compare_losses.py                                  # all runs, UMLS, 60 steps
    python scripts/compare_losses.py --losses infonce,triplet --steps 200 --out /tmp/cmp

Outputs (in ``--out``, default ``docs/``):

- ``loss_comparison.md``   table sorted by test MRR, and the budget it was measured on;
- ``loss_comparison.json`` the same, plus each run's dev metrics and training loss per step;
- ``loss_comparison.png``  dev MRR against training steps, one line per run.

Each run's folder (``--workdir``, default a new temporary folder) keeps ``history.json``,
``train_summary.json``, ``training_curve.png``, ``metrics.json`` and ``predictions.jsonl``;
the checkpoints are deleted once evaluated unless ``--keep-checkpoints`` is given.

The runs and why their settings are what they are
-------------------------------------------------
All runs share the config defaults: self-negatives on (every objective sees the query's own
head as an extra negative), no pre-batch queue, dropout off, warm-up over a tenth of the steps
then linear decay, and the same learning rate (``--lr``, 5e-5).

Two facts about the starting point guided the choices. First, measured on a UMLS batch of 128,
the pretrained all-MiniLM-L6-v2 gives positives and negatives almost the same cosine (about
0.17 and 0.16, std 0.16; the hardest in-batch negative averages 0.80), i.e. it ranks nothing
yet. Second, the learnable scalars inside the losses (InfoNCE / SupCon temperature, the
sigmoid loss's scale and bias) share the encoder's learning rate, so over a budget of tens of
steps they move by less than 0.01: their initial values are effectively their values.

``infonce``          SimKGC: additive margin 0.02, temperature 0.05 (learnable), symmetric.
``contrastive``      Hadsell et al. on Euclidean distance of unit vectors (range 0..2), margin
                     sqrt(2) ~ 1.41, the distance of orthogonal vectors: a negative costs
                     something as long as its cosine to the query is above 0. The default 0.5
                     (cosine 0.875) would leave nearly every negative of the pretrained encoder
                     inactive, so the loss would only pull positives together and the space
                     would shrink before any negative pushed back.
``triplet``          hinge on cosine scores over all negatives, margin 0.1 (the default; it is
                     FaceNet's 0.2 on squared distances of unit vectors).
``triplet-hardest``  the same with only the hardest negative of each query (``mining: hardest``).
``sigmoid``          SigLIP with initial scale 20 and bias -10 instead of the defaults 10 / -10.
                     With 10 / -10 the decision boundary sits at cosine 1, so no pair can ever be
                     classified positive, and since the scalars hardly move in a short run it
                     stays there. Scale 20 equals InfoNCE's 1/temperature and puts the boundary
                     at cosine 0.5.
``supcon``           supervised contrastive, temperature 0.05 (learnable) like InfoNCE, no margin.
``infonce+arb``      ``infonce`` plus the ARB regulariser with weight 0.1 (``arb_weight``).
``infonce+moco``     ``infonce`` plus a momentum queue of 1024 tails (8 batches of 128) encoded by
                     an EMA copy of the entity encoder with momentum 0.999 (the config default,
                     MoCo's value: over a short run the key encoder stays close to the pretrained
                     one, which is what keeps the queued keys consistent).

Training time is the wall-clock time of :func:`kgc.train.train`, so it includes the dev
evaluations every ``--eval-every`` steps and the checkpoint writes (the same number for every
run); ``examples_per_s`` in the JSON counts the training steps only.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from kgc import cli  # noqa: E402
from kgc.config import load_config  # noqa: E402
from kgc.dataset import Dataset  # noqa: E402
from kgc.encoder import BiEncoder, load_tokenizer  # noqa: E402
from kgc.errors import KGCError  # noqa: E402
from kgc.evaluate import evaluate  # noqa: E402
from kgc.io import atomic_open, write_json  # noqa: E402
from kgc.plots import save_figure  # noqa: E402
from kgc.precision import pick_device, resolve_precision  # noqa: E402
from kgc.train import loss_from_config, train  # noqa: E402

CONTRASTIVE_MARGIN = math.sqrt(2.0)
TRIPLET_MARGIN = 0.1
SIGMOID_SCALE, SIGMOID_BIAS = 20.0, -10.0
ARB_WEIGHT = 0.1
MOCO_QUEUE = 1024

# name -> (config settings of the run, short description for the table)
RUNS: dict[str, tuple[dict, str]] = {
    "infonce": ({"loss": "infonce"}, "margin 0.02, τ 0.05 learnable, symmetric (SimKGC)"),
    "contrastive": ({"loss": "contrastive", "loss_options": {"margin": CONTRASTIVE_MARGIN}},
                    f"margin {CONTRASTIVE_MARGIN:.3f} (Euclidean)"),
    "triplet": ({"loss": "triplet", "loss_options": {"margin": TRIPLET_MARGIN, "mining": "all"}},
                f"margin {TRIPLET_MARGIN} (cosine), all negatives"),
    "triplet-hardest": ({"loss": "triplet", "loss_options": {"margin": TRIPLET_MARGIN, "mining": "hardest"}},
                        f"margin {TRIPLET_MARGIN} (cosine), hardest negative"),
    "sigmoid": ({"loss": "sigmoid", "loss_options": {"temperature": SIGMOID_SCALE, "bias": SIGMOID_BIAS}},
                f"scale {SIGMOID_SCALE:g}, bias {SIGMOID_BIAS:g} (learnable)"),
    "supcon": ({"loss": "supcon"}, "τ 0.05 learnable, known answers as positives"),
    "infonce+arb": ({"loss": "infonce", "arb_weight": ARB_WEIGHT}, f"infonce + ARB weight {ARB_WEIGHT}"),
    "infonce+moco": ({"loss": "infonce", "momentum_queue": MOCO_QUEUE},
                     f"infonce + momentum queue {MOCO_QUEUE}, momentum 0.999"),
}

METRICS = ("mrr", "hits@1", "hits@3", "hits@10")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--losses", default=",".join(RUNS),
                   help=f"comma-separated runs to compare (default all: {', '.join(RUNS)})")
    p.add_argument("--out", default=str(REPO / "docs"), help="where the table, JSON and plot go (default docs/)")
    p.add_argument("--data-dir", default="data/UMLS")
    p.add_argument("--model", default="default", help="encoder name or folder (default: bundled all-MiniLM-L6-v2)")
    p.add_argument("--steps", type=int, default=60, help="optimizer steps per run")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--eval-every", type=int, default=20, help="dev evaluation every N steps")
    p.add_argument("--eval-queries", type=int, default=None,
                   help="dev triples per evaluation during training (default all)")
    p.add_argument("--test-queries", type=int, default=None,
                   help="score only the first N test triples (default all; for quick checks)")
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    p.add_argument("--workdir", default=None, help="folder for the run folders (default: a new temporary one)")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep each run's best/ and last/ folders")
    p.add_argument("-v", "--verbose", action="store_true", help="kgc's own log lines and progress bars")
    args = p.parse_args(argv)
    if not Path(args.data_dir).exists() and (REPO / args.data_dir).is_dir():
        args.data_dir = str(REPO / args.data_dir)  # the default works from any working directory
    args.losses = [name.strip() for name in args.losses.split(",") if name.strip()]
    unknown = [name for name in args.losses if name not in RUNS]
    if unknown or not args.losses:
        p.error(f"unknown run(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(RUNS)}")
    for name in ("steps", "batch_size", "eval_every"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("eval_queries", "test_queries"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def base_settings(args: argparse.Namespace) -> dict:
    """What every run shares: data, model, budget, seed, schedule and evaluation."""
    return {
        "data_dir": args.data_dir, "model": args.model, "max_steps": args.steps,
        "batch_size": args.batch_size, "lr": args.lr, "warmup_steps": max(1, args.steps // 10),
        "seed": args.seed, "precision": args.precision, "eval_split": "dev",
        "eval_every": args.eval_every, "eval_max_queries": args.eval_queries,
    }


def elapsed(start: float) -> str:
    seconds = int(time.perf_counter() - start)
    return f"{seconds // 60}m{seconds % 60:02d}s"


def untrained_metrics(args: argparse.Namespace) -> dict:
    """Dev and test metrics of the pretrained encoder before any training (every run's step 0)."""
    cfg = load_config(None, base_settings(args))
    device = pick_device()
    precision = resolve_precision(cfg.precision, device)
    model = BiEncoder.from_pretrained(cfg.model, pooling=cfg.pooling, shared=cfg.shared_encoder,
                                      trust_remote_code=cfg.trust_remote_code).to(device).eval()
    ds = Dataset.build(cfg, load_tokenizer(cfg.model, cfg.trust_remote_code))
    out = {}
    for split, split_cfg in (("dev", cfg), ("test", cfg.replace(eval_max_queries=args.test_queries))):
        metrics, _ = evaluate(model, ds, split_cfg, split, device, precision, progress=args.verbose)
        out[split] = {k: metrics[k] for k in (*METRICS, "mr")}
    return out


def prepare_run_dir(run_dir: Path) -> None:
    """Clear the folder of an earlier comparison run; refuse to touch anything else."""
    if run_dir.exists() and any(run_dir.iterdir()):
        if not ((run_dir / "train_summary.json").exists() or (run_dir / "last").exists()
                or (run_dir / "history.json").exists()):
            raise KGCError(f"{run_dir} exists and is not a kgc run folder; choose another --workdir")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def run_one(name: str, args: argparse.Namespace, run_dir: Path) -> dict:
    """Train one run, evaluate its final model on test, and collect what the report needs."""
    settings, description = RUNS[name]
    cfg = load_config(None, {**base_settings(args), **settings, "output_dir": str(run_dir)})
    prepare_run_dir(run_dir)
    start = time.perf_counter()
    summary = train(cfg, progress=args.verbose)
    train_seconds = time.perf_counter() - start

    history = json.loads((run_dir / "history.json").read_text(encoding="utf-8"))
    rc = cli.main([*([] if args.verbose else ["-q"]), "evaluate", "--checkpoint", str(run_dir / "last"),
                   "--split", "test", "--output-dir", str(run_dir),
                   "--eval-max-queries", "null" if args.test_queries is None else str(args.test_queries)])
    if rc != 0:
        raise KGCError(f"kgc evaluate failed for {name} (exit code {rc})")
    test = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    if not args.keep_checkpoints:
        for sub in ("best", "last"):
            shutil.rmtree(run_dir / sub, ignore_errors=True)
    return {
        "name": name,
        "loss": cfg.loss,
        "config": description,
        "settings": settings,
        "loss_config": loss_from_config(cfg).get_config_dict(),
        "test": {k: test[k] for k in (*METRICS, "mr")},
        "train_seconds": round(train_seconds, 1),
        "steps": summary["steps"],
        "precision": summary["precision"],
        "examples_per_s": summary.get("examples_per_s"),
        "best_dev_mrr": summary.get("best_dev_mrr"),
        "dev_history": [{"step": h["step"], **h["eval"]} for h in history if "eval" in h],
        "train_loss": [[h["step"], h["loss"]] for h in history if "loss" in h],
        "run_dir": str(run_dir),
    }


def sort_key(run: dict) -> float:
    mrr = run.get("test", {}).get("mrr")
    return -mrr if mrr is not None and math.isfinite(mrr) else math.inf


def markdown(report: dict) -> str:
    b = report["budget"]
    lines = [
        "# Training objectives compared",
        "",
        f"Budget: {b['steps']} steps of batch {b['batch_size']} per run, lr {b['lr']:g} "
        f"(warm-up {b['warmup_steps']} steps, then linear decay), seed {b['seed']}, precision {b['precision']}; "
        f"data {report['data_dir']}, model {report['model']}. Dev MRR every {b['eval_every']} steps on "
        f"{b['eval_queries'] or 'all'} dev triples; test metrics are of each run's final model on "
        f"{'the whole test split' if b['test_queries'] is None else 'the first %d test triples' % b['test_queries']} "
        "(filtered, realistic ranks, both directions). Training time includes the periodic dev "
        "evaluations and checkpoint writes.",
        "",
        "| loss | config | test MRR | Hits@1 | Hits@3 | Hits@10 | training time (s) | steps |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in report["runs"]:
        if "error" in run:
            error = run["error"].replace("|", "/")
            lines.append(f"| {run['name']} | {run['config']} | failed: {error} | | | | | |")
            continue
        t = run["test"]
        lines.append(f"| {run['name']} | {run['config']} | {t['mrr']:.4f} | {t['hits@1']:.4f} | "
                     f"{t['hits@3']:.4f} | {t['hits@10']:.4f} | {run['train_seconds']:.0f} | {run['steps']} |")
    base = report.get("untrained")
    if base:
        t = base["test"]
        lines += ["", f"Untrained encoder (step 0, for reference): test MRR {t['mrr']:.4f}, Hits@1 {t['hits@1']:.4f}, "
                      f"Hits@3 {t['hits@3']:.4f}, Hits@10 {t['hits@10']:.4f}; dev MRR {base['dev']['mrr']:.4f}."]
    lines += ["", "Dev MRR against training steps: `loss_comparison.png`; per-step numbers: `loss_comparison.json`.", ""]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 5))
    base = report.get("untrained")
    for run in report["runs"]:
        points = [(h["step"], h["mrr"]) for h in run.get("dev_history", [])]
        if base:
            points.insert(0, (0, base["dev"]["mrr"]))
        if points:
            ax.plot(*zip(*points), "o-", ms=3, lw=1.5, label=run["name"])
    b = report["budget"]
    ax.set_xlabel("training step")
    ax.set_ylabel("dev MRR")
    ax.set_title(f"{Path(report['data_dir']).name}, {Path(report['model']).name}: batch {b['batch_size']}, "
                 f"lr {b['lr']:g}, seed {b['seed']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    out = Path(args.out)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="kgc-loss-comparison-"))
    start = time.perf_counter()
    device = pick_device()
    print(f"comparing {len(args.losses)} run(s) on {args.data_dir} with model {args.model}: {args.steps} steps "
          f"of batch {args.batch_size}, lr {args.lr:g}, seed {args.seed}, precision "
          f"{resolve_precision(args.precision, device)} on {device}; run folders in {workdir}", flush=True)

    print(f"[0/{len(args.losses)}] evaluating the untrained encoder ...", flush=True)
    untrained = untrained_metrics(args)
    print(f"      dev MRR {untrained['dev']['mrr']:.4f}, test MRR {untrained['test']['mrr']:.4f} "
          f"(elapsed {elapsed(start)})", flush=True)

    def write_outputs(runs: list[dict]) -> str:
        """Write the three outputs for the runs finished so far (after every run, so a long
        comparison that is stopped part-way still leaves its results)."""
        report = {
            "data_dir": args.data_dir,
            "model": args.model,
            "budget": {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
                       "warmup_steps": max(1, args.steps // 10), "seed": args.seed,
                       "precision": resolve_precision(args.precision, device), "eval_every": args.eval_every,
                       "eval_queries": args.eval_queries, "test_queries": args.test_queries,
                       "test_checkpoint": "last"},
            "untrained": untrained,
            "workdir": str(workdir),
            "total_seconds": round(time.perf_counter() - start, 1),
            "runs": sorted(runs, key=sort_key),
        }
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "loss_comparison.json", report)
        table = markdown(report)
        with atomic_open(out / "loss_comparison.md") as f:
            f.write(table)
        plot(report, out / "loss_comparison.png")
        return table

    runs: list[dict] = []
    for i, name in enumerate(args.losses, start=1):
        print(f"[{i}/{len(args.losses)}] {name}: {RUNS[name][1]} ...", flush=True)
        try:
            run = run_one(name, args, workdir / name)
        except Exception as err:  # one failing objective should not cost the results of the others
            traceback.print_exc()
            message = f"{type(err).__name__}: {err}".splitlines()[0]
            print(f"      {name} failed: {message} (elapsed {elapsed(start)})", flush=True)
            runs.append({"name": name, "config": RUNS[name][1], "settings": RUNS[name][0], "error": message})
        else:
            trace = " → ".join(f"{h['mrr']:.3f}" for h in run["dev_history"])
            print(f"      trained in {run['train_seconds']:.0f} s; dev MRR {trace}; test MRR {run['test']['mrr']:.4f} "
                  f"(elapsed {elapsed(start)})", flush=True)
            runs.append(run)
        table = write_outputs(runs)

    print()
    print(table)
    print(f"wrote {out / 'loss_comparison.md'}, {out / 'loss_comparison.json'}, {out / 'loss_comparison.png'} "
          f"(total {elapsed(start)})", flush=True)
    return 0 if all("error" not in r for r in runs) else 1

if __name__ == "__main__":
    sys.exit(main())
