"""Typer options shared by several room CLIs (kept out of ``training``, ``scale`` and ``report``,
which must not depend on Typer).

``@hardware_options`` gives a ``train`` command the same ``--accelerator``, ``--devices``,
``--num-nodes``, ``--strategy`` and ``--precision`` options everywhere, and hands the command one
validated :class:`affectlens.training.hardware.Hardware` as its ``hardware`` argument.
"""
from __future__ import annotations

import functools
import inspect

import typer

from affectlens.training.hardware import Hardware

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
