"""The memory allocator of a kgc process: jemalloc when the system has it.

A training step allocates and frees gigabytes of activations and gradients. glibc's
malloc gives much of that memory back to the kernel and takes it again the next step:
tens of thousands of page faults a step on this project's machine, each one a fresh page
zeroed by the kernel, plus the fragmentation that makes the process grow by ~100 MB a step.
jemalloc, told to keep what it has (``oversize_threshold:0`` keeps large blocks in the
ordinary arenas, ``dirty_decay_ms:-1`` / ``muzzy_decay_ms:-1`` never hand pages back),
reuses the same memory step after step (a few thousand faults, a flat footprint). This is
the allocator PyTorch's CPU performance guide recommends.

A running process cannot change its allocator, so the ``kgc`` command (and
``scripts/benchmark.py``) start themselves again, once, with jemalloc in ``LD_PRELOAD``
when it is installed and not already loaded. ``KGC_ALLOCATOR`` chooses:

- ``auto`` (default): jemalloc if found, else the system's malloc;
- ``system``: never restart, keep the system's malloc;
- ``jemalloc``: jemalloc or an error.

Install it with ``apt-get install libjemalloc2`` (Debian, Ubuntu) or ``conda install
jemalloc``. A ``MALLOC_CONF`` of your own is kept as it is.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from kgc.errors import KGCError

CHOICE_ENV = "KGC_ALLOCATOR"
CHOICES = ("auto", "system", "jemalloc")
JEMALLOC_CONF = "oversize_threshold:0,dirty_decay_ms:-1,muzzy_decay_ms:-1"
# set in the restarted process, so that a jemalloc that fails to load is not retried forever
_RESTARTED_ENV = "KGC_ALLOCATOR_RESTARTED"
_NAMES = ("libjemalloc.so.2", "libjemalloc.so")


def search_dirs() -> list[Path]:
    """Where jemalloc is looked for: this environment's lib/ (virtualenv, conda), then the system's."""
    dirs = [Path(sys.prefix) / "lib"]
    if os.environ.get("CONDA_PREFIX"):
        dirs.append(Path(os.environ["CONDA_PREFIX"]) / "lib")
    dirs += [Path(f"/usr/lib/{platform.machine()}-linux-gnu"), Path("/usr/lib64"), Path("/usr/lib"),
             Path("/usr/local/lib")]
    return dirs


def find_jemalloc(dirs: Sequence[Path] | None = None) -> Path | None:
    """The first jemalloc shared library in ``dirs`` (default :func:`search_dirs`), or None."""
    for folder in search_dirs() if dirs is None else dirs:
        for name in _NAMES:
            if (folder / name).is_file():
                return folder / name
    return None


def loaded_jemalloc() -> str | None:
    """Path of the jemalloc library mapped into this process, or None (also off Linux)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    for line in maps.splitlines():
        if "libjemalloc" in line:
            return line.split()[-1]
    return None


def describe() -> str:
    """``"jemalloc"`` or ``"system"``: the allocator of this process, for logs and results."""
    return "jemalloc" if loaded_jemalloc() else "system"


def restart_env(environ: Mapping[str, str], library: Path | None) -> dict[str, str] | None:
    """The environment to start this command again with ``library`` preloaded, or None to go on as is.

    Raises :class:`~kgc.errors.KGCError` for an unknown ``KGC_ALLOCATOR`` and for
    ``KGC_ALLOCATOR=jemalloc`` when no jemalloc was found or it did not load."""
    choice = environ.get(CHOICE_ENV, "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise KGCError(f"{CHOICE_ENV}={environ[CHOICE_ENV]!r}: expected one of {', '.join(CHOICES)}")
    if choice == "system":
        return None
    if library is None or environ.get(_RESTARTED_ENV):
        if choice == "jemalloc":
            why = ("it was preloaded but is not in the process" if library is not None
                   else "no libjemalloc.so found in " + ", ".join(str(d) for d in search_dirs()))
            raise KGCError(f"{CHOICE_ENV}=jemalloc: {why}; install it (apt-get install libjemalloc2) "
                           f"or set {CHOICE_ENV}=auto")
        return None
    env = dict(environ)
    env["LD_PRELOAD"] = ":".join(p for p in (str(library), environ.get("LD_PRELOAD", "")) if p)
    env.setdefault("MALLOC_CONF", JEMALLOC_CONF)
    env[_RESTARTED_ENV] = "1"
    return env


def use_jemalloc() -> None:
    """Start this process again, same command line, with jemalloc preloaded (see the module
    docstring). Returns at once when jemalloc is already loaded, not wanted or not found.

    Call it first thing in a program's entry point: everything before it runs twice."""
    if loaded_jemalloc():
        return
    env = restart_env(os.environ, find_jemalloc() if sys.platform == "linux" else None)
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, env)
