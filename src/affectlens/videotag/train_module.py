"""The videotag room's part of training on the one engine: :class:`VideotagModule`.

Kept out of ``recipe.py`` (as in group) so that evaluating and predicting never import Lightning;
only ``recipe.fit`` imports this module.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from affectlens.metrics.multilabel import gap
from affectlens.training.engine import TrainModule
from affectlens.videotag import models as M

if TYPE_CHECKING:
    from affectlens.videotag.recipe import TrainConfig


class VideotagModule(TrainModule):
    """BCE summed over the seen classes and averaged over videos (the starter code's loss), Adam,
    biases started at the label prior, and GAP on the eval shards to select ``best.pt``."""

    monitor, mode = "val_gap", "max"
    resume_may_change = ("epochs", "threads")

    def __init__(self, model: torch.nn.Module, classes: np.ndarray, cfg: TrainConfig, y_train: np.ndarray):
        super().__init__(getattr(model, "config", None), cfg, seed=cfg.seed, extra={"classes": classes.tolist()})
        self.model, self.cfg = model, cfg
        M.init_prior(self.model, torch.from_numpy(y_train.mean(0).astype(np.float32)))
        self._scores: list = []

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self.model(batch["x"], batch.get("lengths"))
        loss = F.binary_cross_entropy_with_logits(logits, batch["y"], reduction="sum") / len(logits)
        self.record("train_loss", loss, len(logits))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._scores.append((torch.sigmoid(self.model(batch["x"], batch.get("lengths"))), batch["y"]))

    def on_validation_epoch_end(self) -> None:
        if self._scores:  # GAP needs every video at once: gathered from all ranks
            scores, y = (self.all_gather(torch.cat(t)).flatten(0, -2) for t in zip(*self._scores))
            self.record("val_gap", gap(scores.double().cpu().numpy(), y.cpu().numpy() > 0.5, self.cfg.top_k))
        self._scores = []
        super().on_validation_epoch_end()

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
