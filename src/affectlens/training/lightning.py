"""Lightning glue for every room's ``train``: one process, several devices, or several nodes.

A room's CLI takes the shared options and hands them to :func:`fit`::

    from affectlens.training.options import (ACCELERATOR_OPTION, DEVICES_OPTION, NUM_NODES_OPTION,
                                             STRATEGY_OPTION, trainer_kwargs)  # light, no torch import

    @app.command()
    def train(..., devices: str = DEVICES_OPTION, num_nodes: int = NUM_NODES_OPTION,
              strategy: str = STRATEGY_OPTION, accelerator: str = ACCELERATOR_OPTION):
        from affectlens.training.lightning import LitClassifier, fit  # heavy: import inside the command

        module = LitClassifier(model, input_keys=("video", "audio"), optimizer="sgd", lr=1e-5)
        result = fit(module, train_loader, val_loader, max_epochs=epochs, checkpoint=out / "model.pt",
                     config=cfg, **trainer_kwargs(devices, num_nodes, strategy, accelerator))
        if not result.is_global_zero:   # with --strategy ddp every rank runs this command;
            return                      # only rank 0 evaluates and writes reports

``--strategy ddp`` on CPUs uses the gloo backend (two processes on one machine:
``--accelerator cpu --devices 2 --strategy ddp``); on GPUs NCCL. For several nodes launch the
same command on each node with ``--num-nodes N`` and the usual ``MASTER_ADDR``, ``MASTER_PORT``,
``NODE_RANK`` environment (or under SLURM / torchrun, which Lightning detects). Each rank reads
a disjoint shard of the training set (Lightning's ``DistributedSampler``; with a set size that is
not a multiple of the world size a few samples are repeated to even the shards), gradients are
averaged, and the checkpoint (a plain ``state_dict`` + config, :mod:`affectlens.training.checkpoint`)
is written by rank 0 only, atomically, after every epoch.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from affectlens.errors import AffectlensError
from affectlens.training.checkpoint import save_checkpoint
from affectlens.training.options import (  # noqa: F401 (re-exported for room CLIs)
    ACCELERATOR_OPTION,
    DEVICES_OPTION,
    NUM_NODES_OPTION,
    STRATEGY_OPTION,
    parse_devices,
    trainer_kwargs,
)
from affectlens.training.seed import seed_everything


class LitClassifier(L.LightningModule):
    """Wrap a plain ``nn.Module`` that returns logits for Lightning.

    Batches are the data-contract dicts; the model is called as ``model(*[batch[k] for k in
    input_keys])`` and compared with ``batch["label"]`` (class ids for ``loss="ce"``, 0/1 float
    targets for ``loss="bce"``). Epoch means of loss (and accuracy for ``ce``) over *all* ranks
    land in ``history`` (``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``).
    """

    def __init__(self, model: torch.nn.Module, *, input_keys: Sequence[str] = ("image",), loss: str = "ce",
                 optimizer: str = "adam", lr: float = 1e-3, momentum: float = 0.9, weight_decay: float = 0.0):
        super().__init__()
        if loss not in ("ce", "bce") or optimizer not in ("adam", "adamw", "sgd"):
            raise AffectlensError(f"loss {loss!r} / optimizer {optimizer!r}: expected ce|bce and adam|adamw|sgd")
        self.model = model
        self.input_keys = tuple(input_keys)
        self.loss_name, self.optimizer_name = loss, optimizer
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.history: dict[str, list[float]] = defaultdict(list)
        self._sums: dict[str, torch.Tensor] = {}

    def forward(self, batch: dict) -> torch.Tensor:
        return self.model(*[batch[k] for k in self.input_keys])

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        logits, y = self(batch), batch["label"]
        if self.loss_name == "ce":
            loss = F.cross_entropy(logits, y)
            correct = (logits.argmax(-1) == y).sum()
        else:
            loss = F.binary_cross_entropy_with_logits(logits, y.float())
            correct = torch.zeros((), device=loss.device)
        n = y.shape[0]
        stats = torch.stack([loss.detach() * n, correct.float(), torch.tensor(float(n), device=loss.device)])
        self._sums[stage] = self._sums.get(stage, torch.zeros(3, device=loss.device)) + stats
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def _flush(self, stage: str) -> None:
        sums = self._sums.pop(stage, None)
        if sums is None:
            return
        total = self.trainer.strategy.reduce(sums, reduce_op="sum")  # every rank's share
        loss_sum, correct, n = (float(v) for v in total)
        self.history[f"{stage}_loss"].append(loss_sum / max(n, 1))
        if self.loss_name == "ce":
            self.history[f"{stage}_acc"].append(correct / max(n, 1))

    def on_train_epoch_end(self) -> None:
        self._flush("train")

    def on_validation_epoch_end(self) -> None:
        self._flush("val")

    def configure_optimizers(self):
        params = self.model.parameters()  # frozen parameters stay in, so a later release trains them
        if self.optimizer_name == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        cls = torch.optim.AdamW if self.optimizer_name == "adamw" else torch.optim.Adam
        return cls(params, lr=self.lr, weight_decay=self.weight_decay)


class _SaveEachEpoch(L.Callback):
    """Rank 0 writes the plain-``state_dict`` checkpoint after every training epoch."""

    def __init__(self, path: Path, config: Any):
        self.path, self.config = path, config

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            history = {k: list(v) for k, v in getattr(module, "history", {}).items()}
            save_checkpoint(self.path, getattr(module, "model", module), self.config,
                            epoch=trainer.current_epoch + 1, history=history)


@dataclass
class FitResult:
    history: dict[str, list[float]] = field(default_factory=dict)
    checkpoint: Path | None = None
    is_global_zero: bool = True
    global_rank: int = 0
    world_size: int = 1


def fit(module: L.LightningModule, train_loader, val_loader=None, *, max_epochs: int = 1,
        checkpoint: str | Path | None = None, config: Any = None, seed: int = 0,
        devices: str | int = "1", num_nodes: int = 1, strategy: str = "auto", accelerator: str = "auto",
        callbacks: Sequence[L.Callback] = (), progress: bool = True, **trainer_extra: Any) -> FitResult:
    """Train ``module`` with Lightning on one or many processes; see the module docstring.

    With ``checkpoint`` set (and ``config``: the model's dataclass config), rank 0 writes it after
    each epoch. Returns on every rank; only ``is_global_zero`` should go on to evaluate/report.
    """
    seed_everything(seed)
    cbs = list(callbacks)
    if checkpoint is not None:
        cbs.append(_SaveEachEpoch(Path(checkpoint), config if config is not None else {}))
    trainer = L.Trainer(max_epochs=max_epochs, callbacks=cbs, logger=False, enable_checkpointing=False,
                        enable_progress_bar=progress, enable_model_summary=False, num_sanity_val_steps=0,
                        **trainer_kwargs(devices, num_nodes, strategy, accelerator), **trainer_extra)
    trainer.fit(module, train_loader, val_loader)
    history = {k: list(v) for k, v in getattr(module, "history", {}).items()}
    return FitResult(history, Path(checkpoint) if checkpoint is not None else None, trainer.is_global_zero,
                     trainer.global_rank, trainer.world_size)
