"""The ``affectlens`` console script (and ``python -m affectlens``).

It imports the CLI (torch, PyAV, OpenCV: seconds) with SIGINT only *noted*: an interrupt in the
middle of importing torch can leave it half-initialised or crash the process, so it is acted on
once the imports are done (exit 130, nothing started; see :mod:`affectlens.interrupt`).
"""
from __future__ import annotations

import signal
import sys


def run_cli() -> None:
    """The ``affectlens`` console script: import the CLI with SIGINT noted, then run it."""
    noted: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: noted.append(signum))
    try:
        from affectlens.cli import main
    finally:
        signal.signal(signal.SIGINT, previous)
    if noted:
        sys.exit(130)
    main()


if __name__ == "__main__":
    run_cli()
