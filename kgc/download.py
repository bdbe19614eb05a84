"""Fetch the public benchmark files (KG-BERT layout) into a dataset folder.

``download("wn18rr", "data/WN18RR")`` fetches the split and text files of KG-BERT's data
release (github.com/yao8839836/kg-bert) with ``urllib`` only; for FB15k-237 it also fetches
the full entity descriptions ``FB15k_mid2description.txt`` from the first public mirror that
answers. Every file is written atomically, and the result is checked with
:func:`kgc.data.load_graph` before it is reported done.
"""

from __future__ import annotations

import logging
import os
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from kgc.data import load_graph
from kgc.errors import KGCError
from kgc.io import atomic_path

log = logging.getLogger("kgc")

KG_BERT_BASE = "https://raw.githubusercontent.com/yao8839836/kg-bert/master/data"

# Full FB15k-237 descriptions (DKRL's Wikipedia descriptions, "..."@en literals), tried in order.
FB15K237_DESCRIPTION_URLS = (
    # SimKGC's data folder (the file its README's preprocessing uses)
    "https://raw.githubusercontent.com/intfloat/SimKGC/main/data/FB15k237/FB15k_mid2description.txt",
    # public copies of the same file in other repositories, pinned to a commit
    "https://raw.githubusercontent.com/lnthanhhcmus/KGAU/3fb2156de98c3004570c9ac4d1d888a804d274b8/"
    "data/FB15k237/FB15k_mid2description.txt",
    "https://raw.githubusercontent.com/amirporia/Knowledge_graph_completion/"
    "757f0a58d57e5e9b5a2ea143b7b0e23c9d565ae6/data/FB15k237/FB15k_mid2description.txt",
)
DESCRIPTION_FILE = "FB15k_mid2description.txt"


@dataclass(frozen=True)
class DatasetSource:
    folder: str  # folder name under KG-BERT's data/
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    name_separator: str | None = None  # to pass to load_graph
    description_urls: tuple[str, ...] = ()


_SPLITS_AND_TEXTS = ("train.tsv", "dev.tsv", "test.tsv", "entity2text.txt", "relation2text.txt")

DATASETS: dict[str, DatasetSource] = {
    # WN18RR: entity2text holds "word, definition"; load_graph splits it (no long-description file)
    "wn18rr": DatasetSource("WN18RR", _SPLITS_AND_TEXTS, name_separator=", "),
    "fb15k237": DatasetSource("FB15k-237", _SPLITS_AND_TEXTS, ("entity2textlong.txt",),
                              description_urls=FB15K237_DESCRIPTION_URLS),
    "umls": DatasetSource("umls", _SPLITS_AND_TEXTS, ("entity2textlong.txt",)),
}
_ALIASES = {"fb15k-237": "fb15k237", "fb15k_237": "fb15k237", "wn18-rr": "wn18rr"}


class _Offline(Exception):
    """The network, not the server, failed."""


def fetch(url: str, timeout: float) -> bytes:
    """Body of ``url`` (the one network call of this module; tests replace it)."""
    request = urllib.request.Request(url, headers={"User-Agent": "kgc-download"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def dataset_names() -> list[str]:
    return sorted(DATASETS)


def _source(name: str) -> DatasetSource:
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise KGCError(f"unknown dataset {name!r}; known: {', '.join(dataset_names())}")
    return DATASETS[key]


def _manual_help(source: DatasetSource, target: Path) -> str:
    files = ", ".join(source.required)
    if source.optional:
        files += f" (and {', '.join(source.optional)} where the release has it)"
    text = (f"To install it by hand, copy {files} from github.com/yao8839836/kg-bert, "
            f"folder data/{source.folder}, into {target}")
    if source.description_urls:
        text += (f"; for the full entity descriptions also put {DESCRIPTION_FILE} there "
                 f"(from e.g. {source.description_urls[0]})")
    return text + "."


def _get(url: str, timeout: float) -> bytes | None:
    """The body of ``url``; ``None`` on 404; raises ``_Offline`` when the network failed and
    KGCError for another HTTP error."""
    try:
        return fetch(url, timeout)
    except urllib.error.HTTPError as err:  # the server answered: not an offline problem
        if err.code == 404:
            return None
        raise KGCError(f"download of {url} failed: the server answered HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise _Offline(f"{url}: {reason}") from err


def _looks_like_data(body: bytes) -> bool:
    """Reject what a mirror might serve instead of the file: HTML pages, Git LFS pointers."""
    head = body[:512].lstrip().lower()
    return bool(body.strip()) and not head.startswith((b"<!doctype", b"<html", b"version https://git-lfs"))


def _write(path: Path, body: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(body)


def download(name: str, target_dir: str | os.PathLike, *, timeout: float = 30) -> Path:
    """Fetch dataset ``name`` ("wn18rr", "fb15k237" or "umls") into ``target_dir`` itself
    (the folder then holds train.tsv, dev.tsv, ... and can be given to ``load_graph``).

    Returns ``target_dir``. Raises :class:`KGCError` when a URL cannot be reached (saying
    which, that the machine seems offline, and how to place the files by hand) or when the
    fetched files do not parse.
    """
    source = _source(name)
    target = Path(target_dir)
    target.mkdir(parents=True, exist_ok=True)
    base = f"{KG_BERT_BASE}/{source.folder}"

    def offline(err: _Offline) -> KGCError:
        return KGCError(f"could not download {err}. This machine seems to be offline (or GitHub is "
                        f"unreachable). {_manual_help(source, target)}")

    for filename in source.required + source.optional:
        url = f"{base}/{filename}"
        try:
            body = _get(url, timeout)
        except _Offline as err:
            raise offline(err) from err
        if body is None:
            if filename in source.optional:
                log.info("%s: not in the release, skipped", url)
                continue
            raise KGCError(f"download of {url} failed: the server answered HTTP 404 (not found). "
                           f"{_manual_help(source, target)}")
        if not _looks_like_data(body):
            raise KGCError(f"download of {url} returned no data file (empty, an HTML page or a "
                           f"Git LFS pointer). {_manual_help(source, target)}")
        _write(target / filename, body)
        log.info("fetched %s (%d bytes)", url, len(body))

    if source.description_urls:
        _fetch_descriptions(source, target, timeout, offline)

    try:
        kg = load_graph(target, name_separator=source.name_separator)
    except KGCError as err:
        raise KGCError(f"downloaded {source.folder} files do not parse: {err}") from err
    log.info("%s ready in %s: %d entities, %d relations", source.folder, target, kg.num_entities,
             kg.num_relations)
    return target


def _fetch_descriptions(source: DatasetSource, target: Path, timeout: float, offline) -> None:
    """Try each description mirror in order; keep the first good file. Mirrors that are gone
    only cost a warning (the release's entity2textlong.txt still gives short descriptions)."""
    tried = []
    last_offline: _Offline | None = None
    for url in source.description_urls:
        try:
            body = _get(url, timeout)
        except _Offline as err:
            last_offline = err
            tried.append(f"{url} (unreachable)")
            continue
        except KGCError as err:
            tried.append(f"{url} ({err})")
            continue
        if body is None or not _looks_like_data(body) or b"\t" not in body[:4096]:
            tried.append(f"{url} ({'not found' if body is None else 'not a description file'})")
            continue
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            tried.append(f"{url} (not UTF-8)")
            continue
        _write(target / DESCRIPTION_FILE, body)
        log.info("fetched %s (%d bytes)", url, len(body))
        return
    if last_offline is not None and len(tried) == len(source.description_urls) and all(
            t.endswith("(unreachable)") for t in tried):
        raise offline(last_offline)
    log.warning("no mirror served %s (tried: %s); %s keeps the short descriptions of "
                "entity2textlong.txt", DESCRIPTION_FILE, "; ".join(tried), source.folder)
