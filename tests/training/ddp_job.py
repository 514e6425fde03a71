"""``python -m tests.training.ddp_job OUT``: one epoch of a tiny model on 2 CPU ranks (gloo DDP).

Each rank records the sample ids it trained on and a hash of its final weights; every checkpoint
write is logged with the writer's rank, so the test can check the shards and the single write.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import lightning as L
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset

import affectlens.training.lightning as tl

N_SAMPLES = 16


class Blobs(Dataset):
    """Two well-separated Gaussian blobs in 4-d: a task a tiny MLP learns at once."""

    def __init__(self, n: int):
        g = torch.Generator().manual_seed(0)
        self.y = torch.arange(n) % 2
        self.x = torch.randn(n, 4, generator=g) * 0.3 + (self.y[:, None] * 2.0 - 1.0)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.x[i], "label": self.y[i], "id": i}


class RecordIds(L.Callback):
    def __init__(self, out: Path):
        self.out = out

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        with open(self.out / f"rank{trainer.global_rank}.ids", "a") as f:
            f.write("".join(f"{int(i)}\n" for i in batch["id"]))


def weights_hash(model: nn.Module) -> str:
    return hashlib.sha256(b"".join(t.detach().cpu().numpy().tobytes() for t in model.state_dict().values())).hexdigest()


def main(out: Path) -> None:
    torch.set_num_threads(1)
    save = tl.save_checkpoint

    def logged_save(path, model, config, **extra):
        rank = dist.get_rank() if dist.is_initialized() else -1
        with open(out / "writes.log", "a") as f:
            f.write(f"{rank}\n")
        return save(path, model, config, **extra)

    tl.save_checkpoint = logged_save
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    module = tl.LitClassifier(model, input_keys=("image",), optimizer="sgd", lr=0.1)
    loader = DataLoader(Blobs(N_SAMPLES), batch_size=4, shuffle=True)
    res = tl.fit(module, loader, loader, max_epochs=1, checkpoint=out / "model.pt", config={"width": 16},
                 accelerator="cpu", devices=2, strategy="ddp", progress=False,
                 callbacks=[RecordIds(out)])
    (out / f"rank{res.global_rank}.json").write_text(json.dumps({
        "world_size": res.world_size, "is_global_zero": res.is_global_zero, "history": res.history,
        "weights": weights_hash(model)}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
