"""Terminal output shared by every command: one stdout and one stderr console, one-line errors.

Every string a user controls (file names, label rows, option values, error messages) reaches
the terminal through these consoles, and they are built so that no such string is ever read as
Rich markup, an emoji code or a highlighter pattern: ``markup=False, emoji=False, highlight=False``.
Colour is added only through :class:`rich.text.Text` styles, never by markup in a message.

An error is one line however long the path (``soft_wrap=True``: no wrapping at 80 columns when
stderr is a pipe) and whatever the path contains (:func:`one_line` writes control characters as
``\\n``, ``\\t``, ``\\x1b`` …, as ``repr`` would).
"""
from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Iterable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

__all__ = ["make_console", "stdout", "stderr", "one_line", "error_line", "warning_line", "problem_lines",
           "progress", "track", "LineProgress", "PROGRESS_ENV"]


def make_console(stderr: bool = False, **kwargs: Any) -> Console:
    """A console that prints user strings literally (no markup, emoji or highlighting) and never wraps
    a line (``soft_wrap``); the stream is looked up at print time, so redirection and capture work."""
    opts = dict(stderr=stderr, soft_wrap=True, markup=False, emoji=False, highlight=False)
    return Console(**{**opts, **kwargs})


stdout = make_console()
stderr = make_console(stderr=True)

# C0/C1 controls, DEL, line/paragraph separators and the bidirectional overrides (which can make
# a file name read backwards on the terminal)
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def one_line(text: object) -> str:
    """``str(text)`` with control characters written as escapes (``a\\nb.mp4`` stays on one line)."""
    return _UNSAFE.sub(lambda m: repr(m.group())[1:-1], str(text))


def _labelled(label: str, style: str, message: object) -> Text:
    line = Text(f"{label}:", style=style)
    line.append(" " + one_line(message))
    return line


def error_line(message: object, label: str = "error", console: Console | None = None) -> None:
    """Print ``error: <message>`` as exactly one line on stderr (the label in red)."""
    (console or stderr).print(_labelled(label, "red", message))


def warning_line(message: object, label: str = "warning", console: Console | None = None) -> None:
    """Print ``warning: <message>`` as exactly one line on stderr (the label in yellow)."""
    (console or stderr).print(_labelled(label, "yellow", message))


def problem_lines(problems: list, what: str, label: str = "error", console: Console | None = None) -> bool:
    """One line per problem, then ``N <what> failed`` when there were any; True when there were."""
    for p in problems:
        error_line(p, label=label, console=console)
    if problems:
        (console or stderr).print(Text(f"{len(problems)} {what} failed", style="red"))
    return bool(problems)


PROGRESS_ENV = "AFFECTLENS_PROGRESS"  # auto (default) | plain | off


def progress(*columns: Any, transient: bool = False, enabled: bool = True, console: Console | None = None,
             failed_column: bool = False):
    """The one progress display of every long command, on stderr.

    On a terminal: a Rich bar whose task descriptions are shown literally (file names are safe).
    Elsewhere (CI logs, ``nohup``, ``| tee``): :class:`LineProgress`, a plain line per item or per
    ~5 % of the work. ``AFFECTLENS_PROGRESS=plain`` forces the lines, ``off`` silences both;
    ``enabled=False`` (a caller's ``progress=False``) silences both too.
    """
    console = console or stderr
    mode = os.environ.get(PROGRESS_ENV, "auto").strip().lower()
    show = enabled and mode != "off"
    if show and (mode == "plain" or not console.is_terminal):
        return LineProgress(console, failed_column=failed_column)
    cols = list(columns) or [TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), TimeRemainingColumn()]
    if failed_column:
        cols.append(TextColumn("{task.fields[failed]} failed", markup=False))
    return Progress(*cols, console=console, transient=transient, disable=not (show and console.is_terminal))


def track(items: Iterable, description: str, total: int | None = None, enabled: bool = True) -> Iterator:
    """Yield ``items`` while :func:`progress` shows how many are done."""
    if total is None:
        total = len(items) if hasattr(items, "__len__") else None
    with progress(enabled=enabled) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)


class LineProgress:
    """A progress display for logs: the part of Rich's ``Progress`` API the commands use
    (``add_task``, ``update``, ``advance``, ``remove_task``, ``disable``), printing one plain line

        files: 12/40 (30 %) 1m05s elapsed, ~2m32s left[, 1 failed]

    each time a task passes a further twentieth of its total (every item when there are at most
    20), at most one line per ``min_interval`` seconds and only once the work has run for
    ``min_interval`` (so a quick command stays quiet), plus the last line when a task completes.
    Hand-written because Rich's ``Progress`` prints nothing when its console is not a terminal and
    ``rich.progress.track`` has no such mode either.
    """

    disable = False

    def __init__(self, console: Console | None = None, failed_column: bool = False, min_interval: float = 2.0,
                 clock=time.monotonic):
        self.console, self.failed_column, self.min_interval, self.clock = console or stderr, failed_column, min_interval, clock
        self.tasks: dict[int, dict] = {}
        self.last_line = -math.inf

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc) -> None:
        return None

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **fields: Any) -> int:
        k = len(self.tasks)
        self.tasks[k] = {"description": description, "total": total, "completed": completed, "fields": fields,
                         "start": self.clock(), "shown": 0}
        return k

    def remove_task(self, task: int) -> None:
        self.tasks.pop(task, None)

    def advance(self, task: int, advance: float = 1) -> None:
        self.update(task, advance=advance)

    def update(self, task: int, *, advance: float = 0, completed: float | None = None, total: float | None = None,
               description: str | None = None, **fields: Any) -> None:
        t = self.tasks.get(task)
        if t is None:
            return
        t["total"] = t["total"] if total is None else total
        t["completed"] = (t["completed"] if completed is None else completed) + advance
        t["description"] = t["description"] if description is None else description
        t["fields"].update(fields)
        self._maybe_print(t)

    def _maybe_print(self, t: dict) -> None:
        total, done, now = t["total"], t["completed"], self.clock()
        if not total:
            return
        step = total / 20 if total > 20 else 1
        finished = done >= total
        passed = int(done // step) > t["shown"]
        ran = now - t["start"] >= self.min_interval
        if not passed or not ran or (not finished and now - self.last_line < self.min_interval):
            return
        t["shown"] = int(done // step)
        self.last_line = now
        elapsed = now - t["start"]
        line = f"{one_line(t['description']).strip()}: {done:g}/{total:g} ({100 * done / total:.0f} %) {_clock(elapsed)} elapsed"
        if 0 < done < total:
            line += f", ~{_clock(elapsed * (total - done) / done)} left"
        if self.failed_column and t["fields"].get("failed"):
            line += f", {t['fields']['failed']} failed"
        self.console.print(Text(line), soft_wrap=True)


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"
