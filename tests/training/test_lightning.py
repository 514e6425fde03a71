"""Lightning glue: CLI options → Trainer arguments, a tiny model learns, and 2-rank gloo DDP."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from affectlens.errors import AffectlensError
from affectlens.training import load_checkpoint

REPO = Path(__file__).resolve().parents[2]


def test_options_become_trainer_kwargs():
    from affectlens.training.options import (
        ACCELERATOR_OPTION,
        DEVICES_OPTION,
        NUM_NODES_OPTION,
        STRATEGY_OPTION,
        trainer_kwargs,
    )

    app = typer.Typer()
    seen = {}

    @app.command()
    def train(devices: str = DEVICES_OPTION, num_nodes: int = NUM_NODES_OPTION, strategy: str = STRATEGY_OPTION,
              accelerator: str = ACCELERATOR_OPTION):
        seen.update(trainer_kwargs(devices, num_nodes, strategy, accelerator))

    res = CliRunner().invoke(app, ["--devices", "2", "--num-nodes", "3", "--strategy", "ddp", "--accelerator", "cpu"])
    assert res.exit_code == 0, res.output
    assert seen == {"devices": 2, "num_nodes": 3, "strategy": "ddp", "accelerator": "cpu"}
    assert trainer_kwargs("0,1")["devices"] == [0, 1] and trainer_kwargs("auto")["devices"] == "auto"
    with pytest.raises(AffectlensError, match="--devices 'two'"):
        trainer_kwargs("two")
    with pytest.raises(AffectlensError, match="--devices '0'"):
        trainer_kwargs("0")


def test_options_do_not_import_torch():
    """Room CLIs import the options at start-up; `affectlens --help` must not pay for torch."""
    code = "import sys, affectlens.training.options; print('torch' in sys.modules, 'lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_single_process_fit_learns_and_checkpoints(tmp_path):
    from torch import nn
    from torch.utils.data import DataLoader

    from affectlens.training.lightning import LitClassifier, fit
    from tests.training.ddp_job import Blobs

    torch.set_num_threads(1)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    res = fit(LitClassifier(model, lr=0.05), DataLoader(Blobs(64), batch_size=8, shuffle=True),
              DataLoader(Blobs(64), batch_size=32), max_epochs=4, checkpoint=tmp_path / "m.pt",
              config={"width": 16}, accelerator="cpu", progress=False)
    assert res.is_global_zero and res.world_size == 1
    assert len(res.history["train_loss"]) == 4 and res.history["train_loss"][-1] < res.history["train_loss"][0]
    assert res.history["val_acc"][-1] == 1.0  # two separated blobs
    ckpt = load_checkpoint(tmp_path / "m.pt")
    assert ckpt["epoch"] == 4 and ckpt["config"] == {"width": 16}
    fresh = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    fresh.load_state_dict(ckpt["state_dict"])
    torch.testing.assert_close(fresh(Blobs(8).x), model(Blobs(8).x))


@pytest.mark.slow
def test_ddp_two_cpu_ranks_shard_data_and_write_one_checkpoint(tmp_path):
    """Lightning's own `--strategy ddp` launcher re-runs the job as rank 1 (gloo on CPU)."""
    from tests.training.ddp_job import N_SAMPLES, weights_hash

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-m", "tests.training.ddp_job", str(tmp_path)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=400, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = [[int(x) for x in (tmp_path / f"rank{r}.ids").read_text().split()] for r in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == N_SAMPLES // 2  # one epoch, half the set each
    assert not set(seen[0]) & set(seen[1]) and sorted(seen[0] + seen[1]) == list(range(N_SAMPLES))
    assert (tmp_path / "writes.log").read_text().split() == ["0"]  # written once, by rank 0
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["is_global_zero"] for r in ranks] == [True, False]
    assert ranks[0]["weights"] == ranks[1]["weights"]  # gradients were averaged across ranks
    assert ranks[0]["history"] == ranks[1]["history"] and len(ranks[0]["history"]["train_loss"]) == 1

    from torch import nn

    ckpt = load_checkpoint(tmp_path / "model.pt")
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    model.load_state_dict(ckpt["state_dict"])
    assert weights_hash(model) == ranks[0]["weights"] and ckpt["epoch"] == 1


def test_is_distributed_and_single_process_rooms():
    from affectlens.training.options import is_distributed, require_single_process

    assert not is_distributed("1", 1, "auto")  # the defaults keep every room's own loop
    assert is_distributed("2") and is_distributed("0,1") and is_distributed("auto")
    assert is_distributed("1", 2) and is_distributed("1", 1, "ddp")
    require_single_process("x train")
    with pytest.raises(AffectlensError, match=r"^x train trains in a single process .* \(got 2/1/auto\)$"):
        require_single_process("x train", "2")
