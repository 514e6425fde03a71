"""Typer options shared by several room CLIs: the one home of every CLI option object (``training``,
``scale`` and ``report`` stay free of Typer).

Option types every command validates with at the CLI boundary (before any work): integers use
Typer's ``min=``/``max=``; floats use :func:`real_option` (a range that also refuses NaN and
infinity, and may be open: ``--hop`` must be > 0); fixed vocabularies use :func:`choice_option`
(also for repeatable options such as ``--tta none --tta flip``). A bad value is a usage error,
which ``affectlens.cli.main`` prints as one line, e.g.
``error: --hop: 0 is not > 0 (see 'affectlens group predict --help')``.

The batch options (``--backend``, ``--address``, ``--workers``, ``--resume``) go to
:func:`affectlens.scale.run_batch`; ``--report`` to :func:`affectlens.report.html.write_eval_report`.

``@hardware_options`` gives a ``train`` command the same ``--accelerator``, ``--devices``,
``--num-nodes``, ``--strategy`` and ``--precision`` options everywhere, and hands the command one
validated :class:`affectlens.training.hardware.Hardware` as its ``hardware`` argument.
"""
from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import typer

from affectlens.training.hardware import Hardware


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


BACKEND_OPTION = choice_option("local", "--backend", choices=("local", "ray"),
                               help="local (this process) or ray (spread files over Ray).")
ADDRESS_OPTION = typer.Option(None, "--address",
                              help="Ray cluster to join (e.g. ray://head:10001 or auto); default: start a local one.")
WORKERS_OPTION = typer.Option(None, "--workers", min=1, help="Ray workers of a local cluster (default: all CPUs).")
RESUME_OPTION = typer.Option(True, "--resume/--no-resume", help="Skip files whose output already exists.")
REPORT_OPTION = typer.Option(None, "--report", help="Also write a self-contained HTML report (plots embedded) here.")

_HARDWARE = {
    "accelerator": (str, typer.Option("auto", "--accelerator", help="cpu, gpu or auto (a GPU when there is one).")),
    "devices": (str, typer.Option("1", "--devices", help="Devices (processes) per node: a count, 'auto', or ids like 0,1.")),
    "num_nodes": (int, typer.Option(1, "--num-nodes", min=1, help="Machines taking part (SLURM / torchrun are detected).")),
    "strategy": (str, typer.Option("auto", "--strategy", help="auto, ddp (gloo on CPU, NCCL on GPU), ddp_spawn, fsdp.")),
    "precision": (str, typer.Option("32-true", "--precision", help="32-true, 16-mixed, bf16-mixed, 64-true ...")),
}


def hardware_options(fn):
    """Replace ``fn``'s ``hardware: Hardware`` parameter by the five shared Typer options."""
    sig = inspect.signature(fn)
    if "hardware" not in sig.parameters:
        raise TypeError(f"{fn.__name__} needs a 'hardware' parameter")
    params = [p for p in sig.parameters.values() if p.name != "hardware"]
    params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=tp)
               for name, (tp, opt) in _HARDWARE.items()]

    @functools.wraps(fn)
    def command(*args, accelerator: str, devices: str, num_nodes: int, strategy: str, precision: str, **kwargs):
        hw = Hardware(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy,
                      precision=precision)
        return fn(*args, hardware=hw, **kwargs)

    command.__signature__ = sig.replace(parameters=params)
    command.__annotations__ = {**{k: v for k, v in fn.__annotations__.items() if k != "hardware"},
                               **{name: tp for name, (tp, _) in _HARDWARE.items()}}
    return command
