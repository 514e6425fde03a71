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
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class AttributeConfig:
    backbone: Literal["small", "resnet18", "resnet50"] = "small"
    widths: tuple[int, ...] = (16, 32, 64, 128)  # small CNN only
    n_attributes: int = 40
    image_hw: tuple[int, int] = (109, 89)  # the CelebA mirror's size (H, W)
    dropout: float = 0.2


def attributes_small(**kw) -> "AttributeNet":
    return AttributeNet(AttributeConfig(backbone="small", **kw))


def attributes_tiny(**kw) -> "AttributeNet":
    """For tests: a few thousand parameters."""
    return AttributeNet(AttributeConfig(backbone="small", widths=(8, 16), **kw))


def attributes_resnet18(**kw) -> "AttributeNet":
    return AttributeNet(AttributeConfig(backbone="resnet18", **kw))


def attributes_paper(**kw) -> "AttributeNet":
    """The paper's raw ResNet-50 (no pretrained weights) at CelebA's official 218 × 178."""
    kw.setdefault("image_hw", (218, 178))
    return AttributeNet(AttributeConfig(backbone="resnet50", **kw))


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class AttributeNet(nn.Module):
    """``(B, 3, H, W)`` normalised RGB → ``(B, 40)`` attribute logits."""

    def __init__(self, config: AttributeConfig):
        super().__init__()
        self.config = config
        if config.backbone == "small":
            layers, cin = [conv_bn_relu(3, config.widths[0], stride=2)], config.widths[0]
            for w in config.widths:
                layers += [conv_bn_relu(cin, w), conv_bn_relu(w, w), nn.MaxPool2d(2, ceil_mode=True)]
                cin = w
            self.backbone = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
            width = cin
        else:
            import torchvision

            net = getattr(torchvision.models, config.backbone)(weights=None)
            width = net.fc.in_features
            net.fc = nn.Flatten()  # the output layer removed; avgpool → flatten stays
            self.backbone = net
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(width, config.n_attributes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)  # (B, D)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(feats))  # (B, 40)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self(x))


def bce_sum(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 2: binary cross-entropy summed over the attributes, averaged over the batch."""
    return nn.functional.binary_cross_entropy_with_logits(logits, target.float(), reduction="sum") / len(logits)


def to_input(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``(B, H, W, 3)`` uint8 → ``(B, 3, H, W)`` float in about [-1, 1]."""
    x = torch.as_tensor(np.asarray(images)).permute(0, 3, 1, 2).float()  # (B, 3, H, W)
    return x / 127.5 - 1.0


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
    augment_flip: bool = True


def load_train_config(cls, path: str | Path | None, **overrides):
    """A flat YAML file (keys = dataclass fields) plus non-None overrides → a frozen config."""
    import yaml

    values = {}
    if path is not None:
        from affectlens.errors import DataError

        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise DataError(path, f"unknown keys {unknown}; expected some of {sorted(names)}")
        values.update(raw)
    values.update({k: v for k, v in overrides.items() if v is not None})
    for f in fields(cls):  # YAML lists → tuples for the frozen dataclass
        if isinstance(values.get(f.name), list):
            values[f.name] = tuple(values[f.name])
    return cls(**values)


def load_images(ds, idx: np.ndarray, hw: tuple[int, int], progress: bool = True) -> np.ndarray:
    """Decode and resize the chosen images → ``(n, H, W, 3)`` uint8 (kept in memory)."""
    import cv2

    from affectlens.privacy.celeba import _progress, read_rgb

    out = np.zeros((len(idx), hw[0], hw[1], 3), np.uint8)
    for k, i in enumerate(_progress(idx, "decoding images", progress)):
        im = read_rgb(ds.path(int(i)))
        out[k] = im if im.shape[:2] == tuple(hw) else cv2.resize(im, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)
    return out


@torch.no_grad()
def predict(model: AttributeNet, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """``(n, H, W, 3)`` uint8 → ``(n, 40)`` probabilities."""
    model.eval()
    outs = [model.predict_proba(to_input(images[s:s + batch_size])).numpy() for s in range(0, len(images), batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0, model.config.n_attributes), np.float32)


def _split_idx(ds, split: str, limit: int) -> np.ndarray:
    idx = ds.indices(split)
    return idx[:limit] if limit else idx


def train_attributes(cfg: AttributeTrainConfig, log=print) -> dict:
    """Fit on train, select on val (held-out identities), report test mean accuracy once."""
    from affectlens.privacy.celeba import load_celeba
    from affectlens.privacy.trainer import batches, fit
    from affectlens.training import load_checkpoint, seed_everything
    from affectlens.utils import write_json

    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    ds = load_celeba(cfg.data, seed=cfg.seed)
    split = {s: _split_idx(ds, s, cfg.limit) for s in ("train", "val", "test")}
    images = {s: load_images(ds, i, cfg.image_hw) for s, i in split.items()}
    target = {s: ds.attributes[i] for s, i in split.items()}
    mcfg = AttributeConfig(backbone=cfg.backbone, widths=cfg.widths, image_hw=cfg.image_hw)
    model = AttributeNet(mcfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)

    def train_batches(epoch):
        for b in batches(np.arange(len(split["train"])), cfg.batch_size, epoch, cfg.seed):
            x = images["train"][b]
            if cfg.augment_flip:  # attributes are left-right symmetric labels
                flip = rng.random(len(b)) < 0.5
                x = np.where(flip[:, None, None, None], x[:, :, ::-1], x)
            yield to_input(x), torch.as_tensor(target["train"][b])

    def step(batch):
        x, y = batch
        loss = bce_sum(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    def evaluate():
        return {"val_mean_acc": mean_accuracy(predict(model, images["val"]), target["val"])[0]}

    steps = -(-len(split["train"]) // cfg.batch_size)
    state = fit(model, opt, train_batches, step, evaluate, epochs=cfg.epochs, out=cfg.out, config=mcfg,
                monitor="val_mean_acc", steps_per_epoch=steps, log=log)
    model.load_state_dict(load_checkpoint(Path(cfg.out) / "best.pt")["state_dict"])
    acc, per = mean_accuracy(predict(model, images["test"]), target["test"])
    base, base_per = majority_baseline(target["train"], target["test"])
    metrics = {"test_mean_accuracy": acc, "majority_baseline": base, "paper_resnet50": 0.8907,
               "n_train": len(split["train"]), "n_val": len(split["val"]), "n_test": len(split["test"]),
               "split": "identity-disjoint" if not (Path(cfg.data) / "list_eval_partition.txt").is_file()
               else "list_eval_partition.txt",
               "per_attribute": {n: {"acc": float(a), "majority": float(b)} for n, a, b in zip(ds.attr_names, per, base_per)},
               "history": state.history, "train_config": json.loads(json.dumps(asdict(cfg)))}
    write_json(Path(cfg.out) / "metrics.json", metrics)
    _plots(Path(cfg.out), state.history, ds.attr_names, per, base_per)
    return metrics


def _plots(out: Path, history: dict, names, per, base_per) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from affectlens.report.plots import curves_png

    curves_png(history, out / "curves.png")
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
    """A trained classifier from a ``save_checkpoint`` file (``best.pt``)."""
    from affectlens.training import load_checkpoint

    ck = load_checkpoint(path)
    c = ck["config"]
    cfg = AttributeConfig(**{**c, "widths": tuple(c["widths"]), "image_hw": tuple(c["image_hw"])})
    model = AttributeNet(cfg)
    model.load_state_dict(ck["state_dict"])
    return model.eval()
