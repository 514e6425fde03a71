"""Check where a command will write before it does any work.

``check_output(path)`` refuses, with one :class:`~affectlens.errors.AffectlensError` line naming the
path, an output that cannot be written: a parent that is a file, a folder where a file is needed
(or the reverse), a folder without write permission, a read-only file system, or an output that is
one of the command's inputs. It creates nothing: the test write is a temporary file in the nearest
existing folder, removed at once (the only way to see a read-only mount, or permissions, when the
process runs as root and ``os.access`` always says yes).
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from affectlens.errors import AffectlensError

__all__ = ["check_output", "OutputError"]


class OutputError(AffectlensError):
    """An output location the command cannot write to (it names the path and why)."""

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{self.path}: cannot write output ({reason})")


def _nearest_existing(path: Path) -> Path:
    p = path
    while not os.path.lexists(p):
        if p.parent == p:
            break
        p = p.parent
    return p


def _resolved(p: str | Path) -> Path | None:
    try:
        return Path(p).resolve()
    except (OSError, RuntimeError):
        return None


def check_output(path: str | Path, kind: str = "file", inputs: Iterable[str | Path] = ()) -> Path:
    """Raise :class:`OutputError` unless ``path`` (a ``"file"`` or a ``"dir"``) can be written; return it.

    ``inputs``: paths the command reads; an output that is one of them (or, for a folder output,
    an input file's own path) is refused, since outputs never overwrite inputs.
    """
    if kind not in ("file", "dir"):
        raise ValueError(f"kind must be 'file' or 'dir', not {kind!r}")
    path = Path(path)
    try:
        target = path.resolve()
    except (OSError, RuntimeError):  # Python 3.11 raises RuntimeError on a symlink loop
        raise OutputError(path, "symbolic link loop") from None
    for src in inputs:
        if Path(src).exists() and _resolved(src) == target:
            raise OutputError(path, "it is an input of this command; outputs never overwrite inputs")
    if path.exists():
        if kind == "file" and path.is_dir():
            raise OutputError(path, "it is a folder, a file is needed")
        if kind == "dir" and not path.is_dir():
            raise OutputError(path, "it is a file, a folder is needed")
    elif os.path.islink(path):
        raise OutputError(path, "it is a broken symbolic link")
    base = _nearest_existing(path if kind == "dir" and path.is_dir() else path.parent)
    if not base.is_dir():
        raise OutputError(path, f"{base} is not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputError(path, f"no permission to write in {base}")
    try:  # permissions can lie (root, ACLs, read-only mounts): try a real write
        with tempfile.TemporaryFile(dir=base, prefix=".affectlens-write-check."):
            pass
    except OSError as e:
        raise OutputError(path, f"{base} is not writable: {e.strerror or e}") from None
    return path  # an existing read-only file is no obstacle: outputs are renamed over, never opened
