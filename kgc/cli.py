"""The ``kgc`` command: train, evaluate, predict, download.

Every setting of :class:`kgc.config.Config` is also a flag (``--batch-size 64``,
``--loss triplet``); ``--set key=value`` does the same for any key. Bad input exits with
code 2 and a message naming the file and line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from kgc.allocator import use_jemalloc
from kgc.config import FIELDS, Config, load_config, parse_value
from kgc.errors import InputError, KGCError

log = logging.getLogger("kgc")


def _add_setting_flags(parser: argparse.ArgumentParser, skip: set[str]) -> None:
    group = parser.add_argument_group("settings (override the config file)")
    for name in FIELDS:
        if name in skip:
            continue
        group.add_argument("--" + name.replace("_", "-"), dest="setting_" + name, metavar="VALUE", default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any setting (YAML syntax for the value)")


def _overrides(args: argparse.Namespace) -> dict:
    out = {}
    for key, value in vars(args).items():
        if key.startswith("setting_") and value is not None:
            name = key[len("setting_"):]
            out[name] = parse_value(name, value)
    for item in args.set:
        if "=" not in item:
            raise KGCError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip().replace("-", "_")] = parse_value(key.strip().replace("-", "_"), value)
    return out


def cmd_train(args: argparse.Namespace) -> int:
    from kgc.train import train

    overrides = _overrides(args)
    config_path = args.config
    if args.resume and config_path is None:
        # a resumed run continues with the settings it was started with
        from kgc import checkpoint

        run = Path(overrides.get("output_dir", Config().output_dir))
        cfg = checkpoint.load_config(checkpoint.resumable_dir(run), **overrides)
    else:
        cfg = load_config(config_path, overrides)
    summary = train(cfg, resume=args.resume, progress=not args.quiet)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from kgc.evaluate import evaluate, format_metrics, write_results
    from kgc.predict import Predictor

    p = Predictor.load(args.checkpoint, device=args.device, progress=not args.quiet, **_overrides(args))
    metrics, results = evaluate(p.model, p.ds, p.cfg, args.split, p.device, p.precision,
                                entity_vecs=p.entity_vecs, progress=not args.quiet)
    metrics["checkpoint"] = str(p.directory)
    output = Path(args.output_dir) if args.output_dir else Path(args.checkpoint)
    write_results(output, metrics, p.ds, results)
    print(format_metrics(metrics))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from kgc.predict import Predictor, read_queries

    if args.queries is None and (args.head is None or args.relation is None):
        raise KGCError("predict needs --head and --relation, or --queries FILE")
    # read the query file before loading anything, so a malformed file fails at once
    if args.queries is not None:
        items = read_queries(args.queries)
    else:
        items = [(None, args.head, args.relation)]
    predictor = Predictor.load(args.checkpoint, data_dir=args.data_dir, device=args.device, progress=not args.quiet)
    for line, head, relation in items:
        try:
            ranked = predictor.predict(head, relation, top_k=args.top_k, exclude_known=args.exclude_known)
        except KGCError as err:
            if line is None:
                raise
            raise InputError(args.queries, line, str(err)) from None
        if args.json:
            print(json.dumps({"head": head, "relation": relation,
                              "predictions": [p.__dict__ for p in ranked]}))
            continue
        if len(items) > 1:
            print(f"# {head}\t{relation}")
        for rank, p in enumerate(ranked, start=1):
            print(f"{rank}\t{p.entity}\t{p.score:.4f}\t{p.text}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from kgc.download import download

    for name in args.datasets:
        path = download(name, Path(args.target) / _FOLDERS.get(name, name))
        print(f"{name}: {path}")
    return 0


_FOLDERS = {"wn18rr": "WN18RR", "fb15k237": "FB15k-237", "umls": "UMLS"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kgc", description="Knowledge-graph completion with a contrastive bi-encoder.")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a bi-encoder; the output folder becomes a checkpoint")
    p.add_argument("--config", help="YAML run configuration (configs/*.yaml)")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/last")
    _add_setting_flags(p, skip=set())
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="filtered link prediction on a split; writes metrics.json")
    p.add_argument("--checkpoint", required=True, help="checkpoint or training output folder")
    p.add_argument("--split", default="test", choices=("test", "dev", "train"))
    p.add_argument("--output-dir", default=None, help="where metrics.json goes (default: the checkpoint folder)")
    p.add_argument("--device", default=None)
    _add_setting_flags(p, skip={"output_dir"})
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="rank candidate tails for (head, relation) queries")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--head", help="entity id or name")
    p.add_argument("--relation", help="relation id or text ('inverse <relation>' for the inverse)")
    p.add_argument("--queries", help="file of head<TAB>relation lines")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--exclude-known", action="store_true", help="drop answers already known in the graph")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--json", action="store_true", help="one JSON object per query")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("download", help="fetch benchmark datasets (needs internet)")
    p.add_argument("datasets", nargs="*", default=["wn18rr", "fb15k237"], choices=["wn18rr", "fb15k237", "umls"])
    p.add_argument("--target", default="data")
    p.set_defaults(func=cmd_download)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    for noisy in ("transformers", "dgl", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        return args.func(args)
    except KGCError as err:
        print(f"kgc: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kgc: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """Entry point of the ``kgc`` command: restart with jemalloc when it is installed (see
    :mod:`kgc.allocator`), then :func:`main`."""
    try:
        use_jemalloc()
    except KGCError as err:
        print(f"kgc: error: {err}", file=sys.stderr)
        sys.exit(2)
    sys.exit(main())


if __name__ == "__main__":
    run()
