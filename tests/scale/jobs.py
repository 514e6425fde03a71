"""Work functions for the batch tests (module level, so Ray workers can import them)."""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from affectlens.errors import DataError
from affectlens.files import atomic_path


def out_path(src: Path, out_dir: Path) -> Path:
    return Path(out_dir) / f"{Path(src).stem}.out.txt"


def transform(src: Path, out_dir: Path, pid_dir: Path | None = None, delay: float = 0.0) -> Path:
    """Write a transformed copy of a small text file: reversed upper-cased lines + the input's hash."""
    src = Path(src)
    text = src.read_text(encoding="utf-8")  # a missing input raises FileNotFoundError
    if text.startswith("BAD"):
        raise DataError(src, "bad header, expected a sample")
    if text.startswith("CRASH"):
        os._exit(3)  # a worker process dying mid-task
    time.sleep(delay)
    out = out_path(src, out_dir)
    body = "\n".join(line.upper() for line in reversed(text.splitlines()))
    with atomic_path(out) as tmp:
        tmp.write_text(f"{body}\nsha256={hashlib.sha256(text.encode()).hexdigest()}\n", encoding="utf-8")
    if pid_dir is not None:
        Path(pid_dir).mkdir(parents=True, exist_ok=True)
        (Path(pid_dir) / f"{src.stem}.pid").write_text(str(os.getpid()))
    return out


def no_output(src: Path) -> Path:
    """A buggy job that returns a path it never wrote."""
    return Path(src).with_suffix(".never")


def count_lines(src: Path) -> dict:
    """A collect-mode job: no file written, a small result returned (lines and a checksum)."""
    text = Path(src).read_text(encoding="utf-8")
    if text.startswith("BAD"):
        raise DataError(src, "bad header, expected a sample")
    return {"file": Path(src).name, "lines": len(text.splitlines()), "sha": hashlib.sha256(text.encode()).hexdigest()[:8]}
