"""Files every room writes: atomic writes, cleaning up after a killed run, and JSON."""
from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Iterator

import numpy as np

TEMP_CHARS = 8  # the random part of a ``tempfile.mkstemp`` name: 8 of [a-z0-9_]


def cache_dir(*parts: str) -> Path:
    """The user cache every room keeps derived data in (decoded datasets, landmarks, the dynamic
    CenterFace graph): ``$AFFECTLENS_CACHE``, else ``$XDG_CACHE_HOME/affectlens``, else
    ``~/.cache/affectlens``; ``parts`` name a sub-folder. Nothing in it is needed: deleting it only
    costs the time to derive it again."""
    root = os.environ.get("AFFECTLENS_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "affectlens"
    return Path(root, *parts)


def temp_beside(path: str | Path, suffix: str | None = None) -> Path:
    """Create an empty temporary file ``.{stem}.<8 random characters>{suffix}`` in ``path``'s folder.

    Hidden (folder walks skip it), with ``path``'s extension (or ``suffix``) so writers that infer
    the format from the name still work, and with normal permissions (mkstemp makes 0600). The
    name is the one pattern ``stale_temps`` recognises after a killed run.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (``temp_beside``); rename it onto ``path`` only if the
    block succeeds. A crash or an exception never leaves a half-written ``path`` behind."""
    path = Path(path)
    tmp = temp_beside(path, suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def stale_temps(paths: Iterable[str | Path], before: float) -> list[Path]:
    """Temporary files a killed run left for ``paths`` (the final files it writes): named exactly as
    ``temp_beside`` names one for such a path and last modified before ``before`` (a
    ``time.time()``), so a file that a run started since is writing is never among them."""
    wanted: dict[Path, set[tuple[str, str]]] = {}
    for path in paths:
        path = Path(path)
        wanted.setdefault(path.parent, set()).add((path.stem, path.suffix))
    found = []
    for folder, names in wanted.items():
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            suffix = p.suffix
            body = p.name[1:len(p.name) - len(suffix)].rsplit(".", 1)  # [stem, random part]
            if (p.name.startswith(".") and len(body) == 2 and _RANDOM.fullmatch(body[1])
                    and (body[0], suffix) in names and p.is_file() and p.stat().st_mtime < before):
                found.append(p)
    return sorted(found)


_RANDOM = re.compile(rf"[a-z0-9_]{{{TEMP_CHARS}}}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, obj: Any) -> Path:
    """Write JSON atomically (indented, UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_jsonable) + "\n", encoding="utf-8")
    return Path(path)


def _jsonable(o: Any):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
