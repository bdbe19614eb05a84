"""The allocator choice (kgc.allocator): when a kgc process restarts itself with jemalloc."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kgc import allocator
from kgc.errors import KGCError

REPO = Path(__file__).resolve().parent.parent
LIB = Path("/opt/lib/libjemalloc.so.2")


def test_found_jemalloc_is_preloaded_once_with_the_keep_memory_settings():
    env = allocator.restart_env({"PATH": "/bin"}, LIB)
    assert env["LD_PRELOAD"] == str(LIB)
    assert env["MALLOC_CONF"] == allocator.JEMALLOC_CONF
    assert env["PATH"] == "/bin"
    # the restarted process must not restart again, even if the library did not load
    assert allocator.restart_env(env, LIB) is None


def test_existing_preloads_and_malloc_conf_are_kept():
    env = allocator.restart_env({"LD_PRELOAD": "/x/libfoo.so", "MALLOC_CONF": "narenas:1"}, LIB)
    assert env["LD_PRELOAD"] == f"{LIB}:/x/libfoo.so"
    assert env["MALLOC_CONF"] == "narenas:1"


def test_no_restart_when_not_wanted_or_not_found():
    assert allocator.restart_env({"KGC_ALLOCATOR": "system"}, LIB) is None
    assert allocator.restart_env({"KGC_ALLOCATOR": "auto"}, None) is None
    assert allocator.restart_env({}, None) is None


def test_required_jemalloc_that_is_missing_or_did_not_load_is_an_error():
    with pytest.raises(KGCError, match="no libjemalloc.so found"):
        allocator.restart_env({"KGC_ALLOCATOR": "jemalloc"}, None)
    with pytest.raises(KGCError, match="not in the process"):
        allocator.restart_env({"KGC_ALLOCATOR": "jemalloc", "KGC_ALLOCATOR_RESTARTED": "1"}, LIB)
    assert allocator.restart_env({"KGC_ALLOCATOR": "jemalloc"}, LIB)["LD_PRELOAD"] == str(LIB)


def test_unknown_choice_is_an_error_naming_the_variable():
    with pytest.raises(KGCError, match="KGC_ALLOCATOR='tcmalloc'"):
        allocator.restart_env({"KGC_ALLOCATOR": "tcmalloc"}, LIB)


def test_find_jemalloc_looks_in_the_given_folders_in_order(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    assert allocator.find_jemalloc([first, second]) is None
    (second / "libjemalloc.so").write_bytes(b"")
    assert allocator.find_jemalloc([first, second]) == second / "libjemalloc.so"
    (first / "libjemalloc.so.2").write_bytes(b"")
    assert allocator.find_jemalloc([first, second]) == first / "libjemalloc.so.2"


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("KGC_ALLOCATOR", "LD_PRELOAD", "MALLOC_CONF"))}
    full.update(env)
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=full, capture_output=True, text=True,
                          timeout=120)


USE_AND_REPORT = "from kgc import allocator; allocator.use_jemalloc(); print(allocator.describe())"


def test_system_choice_keeps_the_process_as_it_is():
    done = run_python(USE_AND_REPORT, KGC_ALLOCATOR="system")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "system"


@pytest.mark.skipif(sys.platform != "linux" or allocator.find_jemalloc() is None,
                    reason="no jemalloc installed (apt-get install libjemalloc2)")
def test_the_process_restarts_with_jemalloc_loaded_when_it_is_installed():
    done = run_python(USE_AND_REPORT + "; import os; print(os.environ['MALLOC_CONF'])")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["jemalloc", allocator.JEMALLOC_CONF]
