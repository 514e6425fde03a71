"""A tiny task for the engine's tests: two Gaussian blobs in 4-d and an MLP (with dropout, so
resume must restore the random state too). ``python -m tests.training.tiny OUT [devices]`` trains
it through the engine (the DDP test runs it as two gloo ranks)."""
from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from affectlens.training.engine import TrainModule, fit, loader
from affectlens.training.hardware import Hardware

N_SAMPLES = 16


class Blobs(Dataset):
    """Two well-separated Gaussian blobs in 4-d: a task a tiny MLP learns at once."""

    def __init__(self, n: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.arange(n) % 2
        self.x = torch.randn(n, 4, generator=g) * 0.3 + (self.y[:, None] * 2.0 - 1.0)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.x[i], "label": self.y[i], "id": i}


@dataclass(frozen=True)
class TinyConfig:
    width: int = 16


@dataclass(frozen=True)
class TinyTrain:
    epochs: int = 4
    lr: float = 0.05
    seed: int = 0


def build(cfg: TinyConfig) -> nn.Module:
    return nn.Sequential(nn.Linear(4, cfg.width), nn.ReLU(), nn.Dropout(0.3), nn.Linear(cfg.width, 2))


class TinyModule(TrainModule):
    monitor, mode = "val_acc", "max"

    def __init__(self, cfg: TinyConfig = TinyConfig(), train: TinyTrain = TinyTrain()):
        super().__init__(cfg, train, seed=train.seed)
        self.model = build(cfg)

    def training_step(self, batch, batch_idx):
        loss = F.cross_entropy(self.model(batch["image"]), batch["label"])
        self.record("train_loss", loss, len(batch["label"]))
        return loss

    def validation_step(self, batch, batch_idx):
        acc = (self.model(batch["image"]).argmax(-1) == batch["label"]).float().mean()
        self.record("val_acc", acc, len(batch["label"]))

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.train_config.lr, momentum=0.9)
        return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)]


def weights_hash(model: nn.Module) -> str:
    return hashlib.sha256(b"".join(t.detach().cpu().numpy().tobytes() for t in model.state_dict().values())).hexdigest()


class StopAfter(L.Callback):
    """Stops a run after ``epochs`` epochs, as an interruption would (``last.pt`` is then that epoch's)."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, module):
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


class RecordIds(L.Callback):
    def __init__(self, out: Path):
        self.out = out

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        with open(self.out / f"rank{trainer.global_rank}.ids", "a") as f:
            f.write("".join(f"{int(i)}\n" for i in batch["id"]))


def main(out: Path, devices: str = "1", epochs: int = 1) -> None:
    torch.set_num_threads(1)
    module = TinyModule(train=TinyTrain(epochs=epochs, lr=0.1))
    hw = Hardware(accelerator="cpu", devices=devices, strategy="ddp" if devices != "1" else "auto")
    res = fit(module, loader(Blobs(N_SAMPLES), 4, shuffle=True), loader(Blobs(N_SAMPLES), 8), out=out,
              epochs=epochs, hardware=hw, progress=False, callbacks=[RecordIds(out)])
    rank = 0 if res.is_global_zero else 1
    (out / f"rank{rank}.json").write_text(json.dumps({
        "world_size": res.world_size, "is_global_zero": res.is_global_zero, "history": res.history,
        "weights": weights_hash(module.model)}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), *(sys.argv[2:3] or ["1"]), *[int(a) for a in sys.argv[3:4]])
