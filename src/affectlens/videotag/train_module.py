"""The videotag room's part of training on the one engine: :class:`VideotagModule`.

Kept out of ``recipe.py`` (as in group) so that evaluating and predicting never import Lightning;
only ``recipe.fit`` / ``recipe.train`` import this module.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from affectlens.metrics.multilabel import TopK
from affectlens.training.engine import TrainModule
from affectlens.videotag import models as M

if TYPE_CHECKING:
    from affectlens.videotag.recipe import TrainConfig


class VideotagModule(TrainModule):
    """The YouTube-8M starter code's recipe: BCE summed over classes and averaged over videos,
    Adam with the learning rate decayed by ``lr_decay`` every ``lr_decay_examples`` examples, an L2
    penalty on the weights (``weight_decay``; biases are free), biases started at the label prior;
    plus ``label_smoothing`` (targets pulled towards the prior). ``best.pt`` is selected by GAP on
    the validation shards, computed from each video's top 20 (memory O(videos x 20)); under DDP
    every rank scores the whole validation split (it is small next to training) and gets the same
    figure."""

    monitor, mode = "val_gap", "max"
    resume_may_change = ("epochs", "threads", "num_workers", "patience", "shard_cache")

    def __init__(self, model: torch.nn.Module, classes: np.ndarray, cfg: TrainConfig, prior: np.ndarray):
        super().__init__(getattr(model, "config", None), cfg, seed=cfg.seed, extra={"classes": classes.tolist()})
        self.model, self.cfg = model, cfg
        self.register_buffer("prior", torch.from_numpy(np.asarray(prior, np.float32)), persistent=False)
        M.init_prior(self.model, self.prior)
        self._topk: TopK | None = None

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self.model(batch["x"], batch.get("lengths"))
        y = batch["y"].to(logits.dtype)
        if self.cfg.label_smoothing:
            y = y * (1 - self.cfg.label_smoothing) + self.cfg.label_smoothing * self.prior.to(logits.dtype)
        loss = F.binary_cross_entropy_with_logits(logits, y, reduction="sum") / len(logits)
        self.record("train_loss", loss, len(logits))
        return loss

    def on_validation_epoch_start(self) -> None:
        self._topk = None

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        scores = torch.sigmoid(self.model(batch["x"], batch.get("lengths")).float())
        if self._topk is None:
            self._topk = TopK(scores.shape[1], self.cfg.top_k)
        self._topk.add(scores.cpu().numpy(), batch["y"].cpu().numpy() > 0.5)

    def on_validation_epoch_end(self) -> None:
        """Every rank reads every validation shard (the stream is not shared out), so each holds
        the whole split's GAP with no collective call: a rank left without a shard would hang one."""
        if self._topk is not None and not self.trainer.sanity_checking:
            self.record("val_gap", self._topk.gap())
        self._topk = None
        super().on_validation_epoch_end()

    def configure_optimizers(self):
        decay = [p for n, p in self.model.named_parameters() if p.ndim > 1]
        free = [p for n, p in self.model.named_parameters() if p.ndim <= 1]
        opt = torch.optim.Adam([{"params": decay, "weight_decay": self.cfg.weight_decay},
                                {"params": free, "weight_decay": 0.0}], lr=self.cfg.lr)
        per_step = self.cfg.batch_size * self.trainer.world_size / max(self.cfg.lr_decay_examples, 1)
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: self.cfg.lr_decay ** (step * per_step))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
