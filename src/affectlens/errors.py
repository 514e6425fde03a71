"""The errors affectlens raises for bad input: each names the file (or row) and the problem."""
from __future__ import annotations

from pathlib import Path

from affectlens.interrupt import stop_if_interrupted


class AffectlensError(Exception):
    """Base class: a one-line, user-facing message about bad input or a failed step."""


class MediaError(AffectlensError):
    """A media file that is missing, not media, empty, corrupt or lacks a needed stream."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class DataError(AffectlensError):
    """A dataset file (labels, manifest, records) with a malformed row or wrong content."""

    def __init__(self, path: str | Path, reason: str, line: int | None = None):
        self.path = str(path)
        self.reason = reason
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")


class ShapeError(AffectlensError):
    """An array or tensor whose shape does not match the documented contract."""


def failure_line(item: object, error: Exception) -> str:
    """The one line a batch reports for ``item`` whose work raised ``error``: the error's own line
    when it names the item (every ``AffectlensError`` does), else ``item: Type: first line``.

    Every batch loop (``affectlens.scale.run_batch``, ``anonymize``, ``group predict``,
    ``expression predict``) calls this in its ``except Exception`` so a bad file costs only itself;
    a Ctrl-C that a library turned into an ``Exception`` is raised again as ``KeyboardInterrupt``
    here (``affectlens.interrupt``) instead of being blamed on the file.
    """
    stop_if_interrupted(error)
    if isinstance(error, AffectlensError):
        line = str(error)
    else:
        first = (str(error).strip().splitlines() or [""])[0]
        line = f"{type(error).__name__}: {first}" if first else type(error).__name__
    return line if str(item) in line else f"{item}: {line}"
