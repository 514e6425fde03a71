"""Ctrl-C (SIGINT) stops a command, whatever a library made of the ``KeyboardInterrupt``.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be, and some places turn it
into something else: a C extension interrupted while it initialises raises ``ImportError:
initialization failed``, PyAV's interrupt callback ends an FFmpeg call with an ``FFmpegError``,
Lightning catches it and exits 1. A batch that catches ``Exception`` per file (so one bad file
does not cost the others their results) would then record the interrupted file as *failed* and go
on with the rest. This module keeps the fact that SIGINT arrived, so every batch loop can ask
:func:`stop_if_interrupted` before it blames a file, and the CLI exits 130 (the shell's code for
SIGINT) however the interrupt surfaced.

The console script (``affectlens.__main__.run_cli``) imports the CLI with SIGINT only *noted*.
This module imports nothing of affectlens, so any room may use it without pulling in the CLI.
"""
from __future__ import annotations

import signal
import threading

_received = threading.Event()


def _on_sigint(signum, frame) -> None:
    _received.set()
    raise KeyboardInterrupt


def install() -> None:
    """Note every SIGINT (and raise ``KeyboardInterrupt``, as Python's own handler does). Only the
    main thread may set a handler; elsewhere this does nothing."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_sigint)


def interrupted() -> bool:
    """Whether SIGINT arrived since :func:`install`."""
    return _received.is_set()


def stop_if_interrupted(error: BaseException | None = None) -> None:
    """Raise ``KeyboardInterrupt`` (from ``error``) when SIGINT arrived: a batch calls this before
    it records a file as failed, because the file did not fail, the user stopped the run."""
    if _received.is_set():
        raise KeyboardInterrupt from error
