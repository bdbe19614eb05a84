"""Errors kgc raises on bad input: each names the file, the line and what was wrong."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

log = logging.getLogger("kgc")


class KGCError(Exception):
    """Base class of every error kgc raises on purpose (the CLI turns it into exit code 2)."""


class InputError(KGCError):
    """A problem in an input file, located by path and (1-based) line number.

    ``str(err)`` reads ``path:line: problem`` (or ``path: problem`` when no line applies).
    """

    def __init__(self, path, line: int | None, problem: str):
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


class ConfigError(KGCError):
    """A bad configuration value or key (names the config file and the key)."""


class WarningCounter:
    """Counts warnings of the same kind and logs the first few with their location.

    Readers use it for problems a run can survive (duplicated triples, entities without
    text, ...): the first ``show`` of each kind are logged with file and line, then one
    summary line per kind by :meth:`summary`.
    """

    def __init__(self, show: int = 5):
        self.show = show
        self.counts: Counter[str] = Counter()

    def warn(self, kind: str, path: str | Path | None, line: int | None, message: str) -> None:
        self.counts[kind] += 1
        if self.counts[kind] <= self.show:
            where = "" if path is None else (f"{path}:{line}: " if line is not None else f"{path}: ")
            log.warning("%s%s", where, message)

    def summary(self) -> dict[str, int]:
        for kind, n in sorted(self.counts.items()):
            if n > self.show:
                log.warning("%d warnings of kind '%s' in total (%d shown)", n, kind, self.show)
        return dict(self.counts)
