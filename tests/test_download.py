"""kgc.download without the network: the fetch function is replaced by local files."""

from __future__ import annotations

import contextlib
import urllib.error
from pathlib import Path

import pytest

import kgc.download as download_mod
from kgc.data import load_graph
from kgc.download import FB15K237_DESCRIPTION_URLS, KG_BERT_BASE, download
from kgc.errors import KGCError

UMLS = Path(__file__).resolve().parents[1] / "data" / "UMLS"


def http_error(url: str, code: int) -> urllib.error.HTTPError:
    return urllib.error.HTTPError(url, code, "Not Found" if code == 404 else "Error", None, None)


def serve(files: dict[str, bytes], calls: list[str]):
    """A fetch() answering URLs by file name, 404 for anything else."""

    def fake_fetch(url: str, timeout: float) -> bytes:
        calls.append(url)
        name = url.rsplit("/", 1)[-1]
        if name not in files:
            raise http_error(url, 404)
        return files[name]

    return fake_fetch


@pytest.fixture
def umls_files() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in UMLS.iterdir() if p.is_file()}


@pytest.fixture
def atomic_spy(monkeypatch):
    """Records every atomic write and checks the final file is absent while being written."""
    record: list[tuple[Path, Path]] = []
    real = download_mod.atomic_path

    @contextlib.contextmanager
    def spy(path):
        before = Path(path).read_bytes() if Path(path).exists() else None
        with real(path) as tmp:
            yield tmp
            assert tmp.parent == Path(path).parent and tmp != Path(path)
            now = Path(path).read_bytes() if Path(path).exists() else None
            assert now == before, "final file changed before the atomic rename"
        record.append((Path(path), tmp))

    monkeypatch.setattr(download_mod, "atomic_path", spy)
    return record


def test_umls_download_lands_atomically(tmp_path, monkeypatch, umls_files, atomic_spy):
    calls: list[str] = []
    monkeypatch.setattr(download_mod, "fetch", serve(umls_files, calls))
    target = tmp_path / "umls"
    (target).mkdir()
    (target / "train.tsv").write_text("stale\tstale\tstale\n")  # replaced, never half-written
    out = download("umls", target)
    assert out == target
    assert all(u.startswith(f"{KG_BERT_BASE}/umls/") for u in calls)
    assert sorted(p.name for p in target.iterdir()) == sorted(umls_files)  # no temporary files left
    for name, body in umls_files.items():
        assert (target / name).read_bytes() == body
    assert {p.name for p, _ in atomic_spy} == set(umls_files)
    assert all(not tmp.exists() for _, tmp in atomic_spy)
    kg = load_graph(out)
    assert kg.num_entities == 135 and kg.num_relations == 46


def test_optional_file_missing_is_skipped(tmp_path, monkeypatch, umls_files):
    served = {k: v for k, v in umls_files.items() if k != "entity2textlong.txt"}
    monkeypatch.setattr(download_mod, "fetch", serve(served, []))
    out = download("UMLS", tmp_path / "u")
    assert not (out / "entity2textlong.txt").exists()
    assert (out / "train.tsv").is_file()


def test_offline_message(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError(OSError(101, "Network is unreachable"))

    monkeypatch.setattr(download_mod, "fetch", offline)
    target = tmp_path / "wn"
    with pytest.raises(KGCError) as info:
        download("wn18rr", target)
    msg = str(info.value)
    assert f"{KG_BERT_BASE}/WN18RR/train.tsv" in msg
    assert "offline" in msg
    assert "Network is unreachable" in msg
    for name in ("train.tsv", "dev.tsv", "test.tsv", "entity2text.txt", "relation2text.txt"):
        assert name in msg
    assert "yao8839836/kg-bert" in msg and str(target) in msg
    assert not any(target.iterdir())  # nothing half-written


def test_offline_midway_keeps_finished_files_whole(tmp_path, monkeypatch, umls_files):
    def fetch(url, timeout):
        if url.endswith("test.tsv"):
            raise TimeoutError("timed out")
        return umls_files[url.rsplit("/", 1)[-1]]

    monkeypatch.setattr(download_mod, "fetch", fetch)
    target = tmp_path / "u"
    with pytest.raises(KGCError, match="offline"):
        download("umls", target)
    assert sorted(p.name for p in target.iterdir()) == ["dev.tsv", "train.tsv"]
    assert (target / "train.tsv").read_bytes() == umls_files["train.tsv"]


def test_http_error_is_not_called_offline(tmp_path, monkeypatch):
    def fetch(url, timeout):
        raise http_error(url, 500)

    monkeypatch.setattr(download_mod, "fetch", fetch)
    with pytest.raises(KGCError) as info:
        download("umls", tmp_path / "u")
    assert "HTTP 500" in str(info.value) and "offline" not in str(info.value)


def test_fb15k237_description_mirrors_tried_in_order(tmp_path, monkeypatch, umls_files):
    # UMLS files stand in for FB15k-237; the first mirror is gone, the second serves HTML,
    # the third has the file.
    description = b'idea_or_concept\t"An \\"idea\\" is a concept."@en\nvirus\t"A small agent."@en\n'
    calls: list[str] = []

    def fetch(url, timeout):
        calls.append(url)
        if url == FB15K237_DESCRIPTION_URLS[0]:
            raise http_error(url, 404)
        if url == FB15K237_DESCRIPTION_URLS[1]:
            return b"<!DOCTYPE html><html>moved</html>"
        if url == FB15K237_DESCRIPTION_URLS[2]:
            return description
        assert url.startswith(f"{KG_BERT_BASE}/FB15k-237/")
        return umls_files[url.rsplit("/", 1)[-1]]

    monkeypatch.setattr(download_mod, "fetch", fetch)
    out = download("fb15k237", tmp_path / "fb")
    assert calls[-3:] == list(FB15K237_DESCRIPTION_URLS)
    assert (out / "FB15k_mid2description.txt").read_bytes() == description
    kg = load_graph(out)
    assert kg.entity_descriptions[kg.entity_index["idea_or_concept"]] == 'An "idea" is a concept.'
    assert kg.entity_descriptions[kg.entity_index["virus"]] == "A small agent."


def test_fb15k237_without_any_mirror_keeps_short_descriptions(tmp_path, monkeypatch, umls_files):
    monkeypatch.setattr(download_mod, "fetch", serve(umls_files, []))
    out = download("fb15k-237", tmp_path / "fb")
    assert not (out / "FB15k_mid2description.txt").exists()
    assert (out / "entity2textlong.txt").is_file()


def test_downloaded_files_are_verified(tmp_path, monkeypatch, umls_files):
    broken = dict(umls_files, **{"dev.tsv": b"a\tb\n"})
    monkeypatch.setattr(download_mod, "fetch", serve(broken, []))
    with pytest.raises(KGCError, match="do not parse.*dev.tsv:1:"):
        download("umls", tmp_path / "u")


def test_unknown_dataset(tmp_path):
    with pytest.raises(KGCError, match="unknown dataset.*fb15k237.*umls.*wn18rr"):
        download("imagenet", tmp_path)
