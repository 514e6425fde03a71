"""Option types every command validates with at the CLI boundary (before any work).

Integers use Typer's ``min=``/``max=``; floats use :func:`real_option` (a range that also refuses
NaN and infinity, and may be open: ``--hop`` must be > 0); fixed vocabularies use
:func:`choice_option` (also for repeatable options such as ``--tta none --tta flip``). A bad value
is a usage error, which ``affectlens.cli.main`` prints as one line, e.g.
``error: --hop: 0 is not > 0 (see 'affectlens group predict --help')``.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import typer

__all__ = ["choice", "choice_option", "real", "real_option"]


def choice(values: Sequence[str]) -> Callable[[Any], str]:
    """A Typer ``parser`` accepting exactly one of ``values`` (case-sensitive)."""
    values = tuple(values)

    def parse(value: Any) -> str:
        if value not in values:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(values)}")
        return value

    parse.__name__ = "choice"
    return parse


def real(min: float | None = None, max: float | None = None, *, min_open: bool = False,
         max_open: bool = False) -> Callable[[Any], float]:
    """A Typer ``parser`` for a finite float in a range (``min_open``: strictly greater than ``min``)."""

    def parse(value: Any) -> float:
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise typer.BadParameter(f"{value!r} is not a number") from None
        if not math.isfinite(x):
            raise typer.BadParameter(f"{value!r} is not a finite number")
        if min is not None and (x <= min if min_open else x < min):
            raise typer.BadParameter(f"{value} is not {'>' if min_open else '>='} {min:g}")
        if max is not None and (x >= max if max_open else x > max):
            raise typer.BadParameter(f"{value} is not {'<' if max_open else '<='} {max:g}")
        return x

    parse.__name__ = "real"
    return parse


def _range_text(min: float | None, max: float | None, min_open: bool, max_open: bool) -> str:
    lo = "" if min is None else f"{min:g}{'<' if min_open else '<='}"
    hi = "" if max is None else f"{'<' if max_open else '<='}{max:g}"
    return f"FLOAT {lo}x{hi}" if lo or hi else "FLOAT"


def real_option(default: Any, *decls: str, min: float | None = None, max: float | None = None,
                min_open: bool = False, max_open: bool = False, **kwargs: Any):
    """``typer.Option`` for a finite float in a range, e.g. ``real_option(2.5, "--hop", min=0, min_open=True)``."""
    return typer.Option(default, *decls, parser=real(min, max, min_open=min_open, max_open=max_open),
                        metavar=_range_text(min, max, min_open, max_open), **kwargs)


def choice_option(default: Any, *decls: str, choices: Sequence[str], **kwargs: Any):
    """``typer.Option`` accepting one of ``choices`` (for a ``list[str]`` option: each value)."""
    return typer.Option(default, *decls, parser=choice(choices), metavar="[" + "|".join(choices) + "]", **kwargs)
