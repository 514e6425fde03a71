"""Where and how a run trains: accelerator, devices, nodes, strategy, precision (Lightning's terms).

Light on purpose (no torch import): room CLIs build a :class:`Hardware` from the shared options
at start-up, and the engine turns it into ``lightning.Trainer`` arguments.
"""
from __future__ import annotations

from dataclasses import dataclass

from affectlens.errors import AffectlensError

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true", "fsdp", "deepspeed")
PRECISIONS = ("32-true", "32", "16-mixed", "bf16-mixed", "bf16-true", "16-true", "64-true")


def parse_devices(devices: str | int) -> int | str | list[int]:
    """``"2"`` → 2, ``"auto"`` → "auto", ``"0,1"`` → [0, 1] (device ids)."""
    if isinstance(devices, (list, tuple)):
        return [int(d) for d in devices]
    text = str(devices).strip()
    if text in ("auto", "-1"):
        return "auto" if text == "auto" else -1
    try:
        parsed = [int(d) for d in text.split(",") if d.strip()] if "," in text else int(text)
    except ValueError:
        raise AffectlensError(f"--devices {devices!r}: expected a count, 'auto' or ids like 0,1") from None
    if parsed == [] or (isinstance(parsed, int) and parsed < 1):
        raise AffectlensError(f"--devices {devices!r}: need at least one device")
    return parsed


@dataclass(frozen=True)
class Hardware:
    """The defaults are what a 2-core laptop needs; ``accelerator="auto"`` takes a GPU when present."""

    accelerator: str = "auto"
    devices: str = "1"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"

    def __post_init__(self) -> None:
        if self.accelerator not in ACCELERATORS:
            raise AffectlensError(f"--accelerator {self.accelerator!r}: expected one of {', '.join(ACCELERATORS)}")
        parse_devices(self.devices)
        if not isinstance(self.num_nodes, int) or self.num_nodes < 1:
            raise AffectlensError(f"--num-nodes {self.num_nodes!r}: need at least one node")
        if self.strategy not in STRATEGIES:
            raise AffectlensError(f"--strategy {self.strategy!r}: expected one of {', '.join(STRATEGIES)}")
        if str(self.precision) not in PRECISIONS:
            raise AffectlensError(f"--precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}")

    def processes(self) -> int:
        """How many training processes these settings start (devices per node x nodes); ``auto``
        counts the GPUs when training on GPUs, else one process."""
        d = parse_devices(self.devices)
        if isinstance(d, list):
            n = len(d)
        elif isinstance(d, int) and d > 0:
            n = d
        else:
            import torch

            n = max(1, torch.cuda.device_count()) if self.accelerator in ("auto", "gpu", "cuda") else 1
        return n * self.num_nodes

    def trainer_kwargs(self) -> dict:
        return {"accelerator": self.accelerator, "devices": parse_devices(self.devices), "num_nodes": self.num_nodes,
                "strategy": self.strategy, "precision": self.precision}
