"""The distributed-training options every room's ``train`` shares, without importing torch.

Room CLIs use these as Typer defaults at import time, so this module stays light (``affectlens
--help`` must not pay for importing Lightning); :mod:`affectlens.training.lightning` re-exports
them next to ``fit``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import typer

from affectlens.errors import AffectlensError

DEVICES_OPTION = typer.Option("1", "--devices", help="Devices (processes) per node: a count, 'auto', or ids like 0,1.")
NUM_NODES_OPTION = typer.Option(1, "--num-nodes", min=1, help="Machines taking part in distributed training.")
STRATEGY_OPTION = typer.Option("auto", "--strategy", help="auto, ddp (gloo on CPU, NCCL on GPU) or ddp_spawn.")
ACCELERATOR_OPTION = typer.Option("auto", "--accelerator", help="cpu, gpu or auto.")


def parse_devices(devices: str | int | Sequence[int]) -> int | str | list[int]:
    """``"2"`` → 2, ``"auto"`` → "auto", ``"0,1"`` → [0, 1] (device ids)."""
    if isinstance(devices, (list, tuple)):
        return [int(d) for d in devices]
    text = str(devices).strip()
    if text == "auto":
        return text
    try:
        parsed = [int(d) for d in text.split(",") if d.strip()] if "," in text else int(text)
    except ValueError:
        raise AffectlensError(f"--devices {devices!r}: expected a count, 'auto' or ids like 0,1") from None
    if parsed == [] or (isinstance(parsed, int) and parsed < 1):
        raise AffectlensError(f"--devices {devices!r}: need at least one device")
    return parsed


def trainer_kwargs(devices: str | int = "1", num_nodes: int = 1, strategy: str = "auto",
                   accelerator: str = "auto") -> dict[str, Any]:
    """Lightning ``Trainer`` arguments from the shared CLI options (validated, one-line errors)."""
    if num_nodes < 1:
        raise AffectlensError(f"--num-nodes {num_nodes}: need at least one node")
    if accelerator not in ("auto", "cpu", "gpu", "cuda", "mps"):
        raise AffectlensError(f"--accelerator {accelerator!r}: expected cpu, gpu or auto")
    return {"devices": parse_devices(devices), "num_nodes": int(num_nodes), "strategy": strategy,
            "accelerator": accelerator}


def is_distributed(devices: str | int = "1", num_nodes: int = 1, strategy: str = "auto") -> bool:
    """Whether the options ask for more than the one plain process (several devices or nodes, or an
    explicit strategy): a room's ``train`` then goes through :func:`affectlens.training.lightning.fit`."""
    d = parse_devices(devices)
    many = d == "auto" or (isinstance(d, list) and len(d) > 1) or (isinstance(d, int) and d > 1)
    return many or int(num_nodes) > 1 or strategy != "auto"


def require_single_process(command: str, devices: str | int = "1", num_nodes: int = 1, strategy: str = "auto") -> None:
    """One-line error for a ``train`` whose hand-written loop runs in one process only."""
    if is_distributed(devices, num_nodes, strategy):
        raise AffectlensError(f"{command} trains in a single process (its own loop): --devices/--num-nodes/"
                              f"--strategy must stay 1/1/auto (got {devices}/{num_nodes}/{strategy})")
