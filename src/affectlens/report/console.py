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

import re
from typing import Any

from rich.console import Console
from rich.text import Text

__all__ = ["make_console", "stdout", "stderr", "one_line", "error_line", "warning_line", "problem_lines",
           "progress"]


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


def progress(*columns: Any, transient: bool = False, enabled: bool = True, console: Console | None = None,
             failed_column: bool = False):
    """A Rich progress bar on stderr whose task descriptions are shown literally (file names are safe).

    Shown only on a terminal: piped or captured stderr gets the command's result lines alone."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    cols = list(columns) or [TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), TimeRemainingColumn()]
    if failed_column:
        cols.append(TextColumn("{task.fields[failed]} failed", markup=False))
    console = console or stderr
    return Progress(*cols, console=console, transient=transient, disable=not (enabled and console.is_terminal))
