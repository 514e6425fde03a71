"""Stage 1 of paper 004: the 40-attribute face classifier (multi-label, sigmoid outputs, BCE, Adam).

The paper's network is an untrained ("raw") ResNet-50 whose output layer is replaced by a
flatten + 40-unit dense layer with sigmoid activations, trained with the binary cross-entropy
summed over the 40 attributes (eq. 1-2) and Adam with default settings, batch 64, 15 epochs.
``attributes_paper()`` builds exactly that; ``attributes_resnet18()`` and ``attributes_small()``
(a 4-stage conv-BN-ReLU CNN) are the CPU sizes. The model returns logits ``(B, 40)``;
``predict_proba`` applies the sigmoid.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from affectlens.files import write_json
from affectlens.privacy.celeba import Arrays, as_batch, load_celeba, load_images, subsample
from affectlens.privacy.model import AttributeConfig, AttributeNet, load_model, to_input
from affectlens.report.plots import curves_png
from affectlens.training.engine import TrainModule, fit, loader


def bce_sum(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 2: binary cross-entropy summed over the attributes, averaged over the batch."""
    return nn.functional.binary_cross_entropy_with_logits(logits, target.float(), reduction="sum") / len(logits)


def mean_accuracy(probs: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean over attributes of per-attribute accuracy at 0.5 (the paper's "average accuracy")."""
    per = ((np.asarray(probs) >= 0.5) == (np.asarray(target) > 0)).mean(axis=0)
    return float(per.mean()), per


def majority_baseline(train_target: np.ndarray, test_target: np.ndarray) -> tuple[float, np.ndarray]:
    """Predict each attribute's most frequent training value for every test image."""
    majority = (np.asarray(train_target).mean(axis=0) >= 0.5).astype(float)
    return mean_accuracy(np.broadcast_to(majority, test_target.shape), test_target)


# ----------------------------------------------------------------------------------------- recipe
@dataclass(frozen=True)
class AttributeTrainConfig:
    data: str = "../shared/data/celeba"
    out: str = "runs/privacy/attributes"
    backbone: Literal["small", "resnet18", "resnet50"] = "small"
    widths: tuple[int, ...] = (16, 32, 64, 128)
    image_hw: tuple[int, int] = (109, 89)
    epochs: int = 8
    batch_size: int = 64
    lr: float = 1e-3  # Adam's default
    seed: int = 0
    threads: int = 1
    limit: int = 0  # >0: use only the first `limit` images of each split (smoke runs)
    fraction: float = 1.0  # share of each split used, its first part (the paper: 0.3)
    augment_flip: bool = True


@torch.no_grad()
def predict(model: AttributeNet, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """``(n, H, W, 3)`` uint8 → ``(n, 40)`` probabilities."""
    model.eval()
    device = next(model.parameters()).device
    outs = [model.predict_proba(to_input(images[s:s + batch_size]).to(device)).cpu().numpy()
            for s in range(0, len(images), batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0, model.config.n_attributes), np.float32)


def _split_idx(ds, split: str, limit: int, fraction: float = 1.0) -> np.ndarray:
    idx = subsample(ds.indices(split), fraction)
    return idx[:limit] if limit else idx


class AttributeModule(TrainModule):
    """Stage 1's own: BCE summed over the 40 attributes (eq. 2), Adam, random left-right flips (the
    attributes are symmetric labels) and the validation mean accuracy (held-out identities) that
    selects ``best.pt``."""

    monitor, mode = "val_mean_acc", "max"
    resume_may_change = ("epochs", "threads")

    def __init__(self, cfg: AttributeTrainConfig):
        mcfg = AttributeConfig(backbone=cfg.backbone, widths=cfg.widths, image_hw=cfg.image_hw)
        super().__init__(mcfg, cfg, seed=cfg.seed)
        self.model = AttributeNet(mcfg)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x = batch["image"]  # (B, H, W, 3) uint8
        if self.train_config.augment_flip:
            flip = torch.rand(len(x), device=x.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(2), x)
        loss = bce_sum(self.model(to_input(x)), batch["target"])
        self.record("train_loss", loss, len(x))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        probs = torch.sigmoid(self.model(to_input(batch["image"])))  # (B, 40)
        self.record("val_mean_acc", ((probs >= 0.5) == (batch["target"] > 0)).float().mean(), len(probs))

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.train_config.lr)


def train_attributes(cfg: AttributeTrainConfig, hardware=None, resume: bool = True,
                     progress: bool | None = None) -> dict | None:
    """Fit on train, select on val (held-out identities), report test mean accuracy once.

    Trains through the engine into ``cfg.out`` (``last.pt``, ``best.pt``, ``metrics.csv``); rank 0
    adds the test figures to ``metrics.json`` and draws the plots; other ranks return None."""
    torch.set_num_threads(cfg.threads)
    ds = load_celeba(cfg.data, seed=cfg.seed)
    split = {s: _split_idx(ds, s, cfg.limit, cfg.fraction) for s in ("train", "val", "test")}
    images = {s: load_images(ds, i, cfg.image_hw) for s, i in split.items()}
    target = {s: ds.attributes[i] for s, i in split.items()}
    data = {s: Arrays(image=images[s], target=target[s]) for s in ("train", "val")}
    res = fit(AttributeModule(cfg), loader(data["train"], cfg.batch_size, shuffle=True, seed=cfg.seed, collate_fn=as_batch),
              loader(data["val"], 256, collate_fn=as_batch), out=cfg.out, epochs=cfg.epochs, hardware=hardware,
              resume=resume, progress=progress)
    if not res.is_global_zero:
        return None
    acc, per = mean_accuracy(predict(load_model(res.best_path, AttributeNet), images["test"]), target["test"])
    base, base_per = majority_baseline(target["train"], target["test"])
    metrics = {**json.loads((res.out / "metrics.json").read_text(encoding="utf-8")),
               "test_mean_accuracy": acc, "majority_baseline": base, "paper_resnet50": 0.8907,
               "n_train": len(split["train"]), "n_val": len(split["val"]), "n_test": len(split["test"]),
               "split": "identity-disjoint" if not (Path(cfg.data) / "list_eval_partition.txt").is_file()
               else "list_eval_partition.txt",
               "per_attribute": {n: {"acc": float(a), "majority": float(b)} for n, a, b in zip(ds.attr_names, per, base_per)}}
    write_json(res.out / "metrics.json", metrics)
    _plots(res.out, res.history, ds.attr_names, per, base_per)
    return metrics


def _plots(out: Path, history: dict, names, per, base_per) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves_png({k: v for k, v in history.items() if k != "epoch_seconds"}, out / "curves.png")
    fig, ax = plt.subplots(figsize=(12, 4))
    x = np.arange(len(names))
    ax.bar(x - 0.2, per, 0.4, label="classifier")
    ax.bar(x + 0.2, base_per, 0.4, label="majority class")
    ax.set_xticks(x, names, rotation=90, fontsize=7)
    ax.set_ylim(0.4, 1.0)
    ax.set_ylabel("test accuracy (held-out identities)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "per_attribute.png", dpi=120)
    plt.close(fig)


def load_attribute_model(path: str | Path) -> AttributeNet:
    """A trained stage-1 classifier (``best.pt``); any other net is refused in one line."""
    return load_model(path, AttributeNet)
