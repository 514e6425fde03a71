"""The group room's part of training on the one engine: :class:`GroupModule`.

Kept out of ``recipe.py`` so that evaluating and predicting never import Lightning (seconds at
start-up, and its torchmetrics pulls in ``transformers`` when that is installed); only
``recipe.train`` imports this module.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from affectlens.group.data import CLASSES
from affectlens.group.model import build_model
from affectlens.training.engine import TrainModule

if TYPE_CHECKING:
    from affectlens.group.recipe import TrainConfig


def loss_fn(cfg: TrainConfig):
    """Cross-entropy, or the focal loss FL = -(1 - p_t)^γ log p_t."""
    if cfg.loss == "ce":
        return F.cross_entropy
    if cfg.loss != "focal":
        raise ValueError(f"loss must be 'ce' or 'focal', not {cfg.loss!r}")

    def focal(logits, y):
        logp = F.log_softmax(logits, -1).gather(1, y[:, None]).squeeze(1)
        return (-(1 - logp.exp()) ** cfg.focal_gamma * logp).mean()

    return focal


class GroupModule(TrainModule):
    """What is the group room's own in training: the net, CE or focal loss, SGD or AdamW, the ViT
    frozen for the first ``freeze_vit_epochs`` epochs then released, and validation accuracy to
    select ``best.pt``. ``extra`` tells a checkpoint's readers the classes and the features the net reads."""

    monitor, mode = "val_acc", "max"
    resume_may_change = ("epochs", "threads")

    def __init__(self, cfg: TrainConfig):
        super().__init__(cfg.model_config(), cfg, seed=cfg.seed,
                         extra={"classes": list(CLASSES), "features": dataclasses.asdict(cfg.feature_spec())})
        self.model = build_model(self.model_config, vit_weights=cfg.vit_weights or None)
        self.loss_fn = loss_fn(cfg)

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self.model.set_vit_frozen(self.current_epoch < self.train_config.freeze_vit_epochs)

    def _step(self, batch: dict, split: str) -> torch.Tensor:
        logits, y = self.model(video=batch["video"], audio=batch["audio"]), batch["label"]
        loss = self.loss_fn(logits, y)
        self.record(f"{split}_loss", loss, len(y))
        self.record(f"{split}_acc", (logits.argmax(1) == y).float().mean(), len(y))
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self):
        cfg, params = self.train_config, self.model.parameters()  # a frozen ViT has no gradient: steps skip it
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        raise ValueError(f"optimizer must be 'sgd' or 'adamw', not {cfg.optimizer!r}")
