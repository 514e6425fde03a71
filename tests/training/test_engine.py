"""The one training engine: a tiny model learns, one payload in best/last.pt, exact resume after
an interrupted run, a folder of other settings refused, 2-rank gloo DDP, and one GPU step."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from affectlens.errors import AffectlensError
from affectlens.training.checkpoint import FORMAT, load_checkpoint
from affectlens.training.engine import EpochSampler, fit, loader
from affectlens.training.hardware import Hardware
from tests.training.tiny import Blobs, StopAfter, TinyConfig, TinyModule, TinyTrain, build, weights_hash

REPO = Path(__file__).resolve().parents[2]
CPU = Hardware(accelerator="cpu")


def _fit(out, epochs, resume=True, stop_after=None, **train):
    torch.set_num_threads(1)
    module = TinyModule(train=TinyTrain(epochs=epochs, **train))
    res = fit(module, loader(Blobs(64), 8, shuffle=True), loader(Blobs(32, seed=1), 16), out=out, epochs=epochs,
              hardware=CPU, resume=resume, progress=False, callbacks=[StopAfter(stop_after)] if stop_after else [])
    return module, res


def test_a_tiny_model_learns_and_the_run_folder_holds_one_payload(tmp_path):
    module, res = _fit(tmp_path, 4)
    h = res.history
    assert len(h["train_loss"]) == 4 and h["train_loss"][-1] < h["train_loss"][0] / 5
    assert h["val_acc"][-1] == 1.0 and res.best["metric"] == "val_acc" and res.best["value"] == 1.0
    last, best = load_checkpoint(tmp_path / "last.pt"), load_checkpoint(tmp_path / "best.pt")
    for ck in (last, best):
        assert ck["format"] == FORMAT and ck["model"] == {"width": 16}
        assert ck["train"] == {"epochs": 4, "lr": 0.05, "seed": 0}
    assert last["epoch"] == 4 and "optimizer" in last and "lightning" in last
    assert best["epoch"] == res.best["epoch"] and "optimizer" not in best
    assert last["history"] == h
    net = build(TinyConfig())
    net.load_state_dict(last["state_dict"])
    assert weights_hash(net) == weights_hash(module.model)
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows[0].split(",")[:1] and len(rows) == 5 and "val_acc" in rows[0]
    assert json.loads((tmp_path / "metrics.json").read_text())["best"]["epoch"] == res.best["epoch"]


def test_resume_continues_after_the_last_epoch_and_ends_with_the_same_weights(tmp_path):
    whole, _ = _fit(tmp_path / "whole", 4)
    _fit(tmp_path / "cut", 4, stop_after=2)  # the same run, interrupted after epoch 2
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 2
    resumed, res = _fit(tmp_path / "cut", 4)
    assert len(res.history["train_loss"]) == 4
    assert weights_hash(resumed.model) == weights_hash(whole.model)
    assert len((tmp_path / "cut" / "metrics.csv").read_text().splitlines()) == 1 + 4  # the log holds all 4 epochs


def test_a_run_folder_made_with_other_settings_is_refused(tmp_path):
    _fit(tmp_path, 1)
    with pytest.raises(AffectlensError, match=r"another recipe \(lr: 0.05 there, 0.2 now\)"):
        _fit(tmp_path, 2, lr=0.2)
    _, res = _fit(tmp_path, 1, resume=False, lr=0.2)  # starting over is explicit
    assert load_checkpoint(tmp_path / "last.pt")["train"]["lr"] == 0.2


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_a_killed_run_rerun_matches_an_uninterrupted_run(tmp_path, sig):
    """A real interruption: the process is killed while it trains; the re-run finishes the job."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "tests.training.tiny", str(tmp_path / "cut"), "1", "40"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        last = tmp_path / "cut" / "last.pt"
        if last.is_file() and load_checkpoint(last)["epoch"] >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    if sig == signal.SIGINT:  # Lightning stops between steps; we say how to go on
        assert "run the same command again to resume" in err and "Traceback" not in err
    done = load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"]
    assert 3 <= done < 40, done
    hidden = lambda: [p for p in (tmp_path / "cut").iterdir() if p.name.startswith(".")]  # noqa: E731
    if sig == signal.SIGINT:  # a SIGKILL may land mid-write: its temporary file goes at the next start
        assert not hidden()  # no half-written file
    subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True, timeout=300)
    assert not hidden()  # no half-written file
    subprocess.run([*cmd[:3], str(tmp_path / "whole"), "1", "40"], cwd=REPO, env=env, check=True,
                   capture_output=True, timeout=300)
    cut, whole = (json.loads((tmp_path / d / "rank0.json").read_text()) for d in ("cut", "whole"))
    assert cut["weights"] == whole["weights"] and len(cut["history"]["train_loss"]) == 40


def test_epoch_sampler_is_a_fresh_repeatable_permutation_per_epoch():
    s = EpochSampler(10, seed=3)
    first = list(s)
    s.set_epoch(1)
    second = list(s)
    assert sorted(first) == sorted(second) == list(range(10)) and first != second
    s.set_epoch(0)
    assert list(s) == first
    assert list(EpochSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]


@pytest.mark.slow
def test_ddp_two_cpu_ranks_shard_data_and_write_one_checkpoint(tmp_path):
    """``--accelerator cpu --devices 2 --strategy ddp``: Lightning re-runs the job as rank 1 (gloo)."""
    from tests.training.tiny import N_SAMPLES

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-m", "tests.training.tiny", str(tmp_path), "2", "1"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=400, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = [[int(x) for x in (tmp_path / f"rank{r}.ids").read_text().split()] for r in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == N_SAMPLES // 2  # one epoch, half the set each
    assert not set(seen[0]) & set(seen[1]) and sorted(seen[0] + seen[1]) == list(range(N_SAMPLES))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["is_global_zero"] for r in ranks] == [True, False]
    assert ranks[0]["weights"] == ranks[1]["weights"]  # gradients were averaged across ranks
    for k in ("train_loss", "val_acc"):  # reduced over both ranks: the same on each (seconds are their own)
        assert ranks[0]["history"][k] == ranks[1]["history"][k] and len(ranks[0]["history"][k]) == 1
    ck = load_checkpoint(tmp_path / "last.pt")
    net = build(TinyConfig())
    net.load_state_dict(ck["state_dict"])
    assert weights_hash(net) == ranks[0]["weights"] and ck["epoch"] == 1
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["best.pt", "last.pt"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
def test_one_gpu_step_writes_one_checkpoint(tmp_path):
    module = TinyModule(train=TinyTrain(epochs=1))
    res = fit(module, loader(Blobs(16), 8, shuffle=True), None, out=tmp_path, epochs=1,
              hardware=Hardware(accelerator="gpu"), progress=False)
    assert res.epochs == 1 and load_checkpoint(tmp_path / "last.pt")["epoch"] == 1


def test_hardware_options_are_validated_in_one_line():
    assert Hardware(devices="0,1").trainer_kwargs()["devices"] == [0, 1]
    assert Hardware(devices="auto").trainer_kwargs()["devices"] == "auto"
    assert Hardware(devices="0,1", num_nodes=2).processes() == 4 and Hardware(devices="3").processes() == 3
    assert Hardware(accelerator="cpu", devices="auto").processes() == 1
    for bad in ({"devices": "two"}, {"devices": "0"}, {"accelerator": "tpu9"}, {"strategy": "bogus"},
                {"precision": "8-bit"}, {"num_nodes": 0}):
        with pytest.raises(AffectlensError):
            Hardware(**bad)


def test_hardware_options_reach_a_command_and_do_not_import_torch():
    import typer
    from typer.testing import CliRunner

    from affectlens.cli_options import hardware_options

    app, seen = typer.Typer(), {}

    @app.command()
    @hardware_options
    def train(epochs: int = typer.Option(1), hardware: Hardware = None):
        seen.update(hardware.trainer_kwargs(), epochs=epochs)

    res = CliRunner().invoke(app, ["--devices", "2", "--num-nodes", "3", "--strategy", "ddp", "--accelerator", "cpu",
                                   "--precision", "bf16-mixed", "--epochs", "5"])
    assert res.exit_code == 0, res.output
    assert seen == {"devices": 2, "num_nodes": 3, "strategy": "ddp", "accelerator": "cpu",
                    "precision": "bf16-mixed", "epochs": 5}
    code = "import sys, affectlens.cli_options; print('torch' in sys.modules, 'lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


TRAIN_COMMANDS = [("expression", "train"), ("group", "train"), ("group", "ablation"), ("spontaneity", "train"),
                  ("spontaneity", "cv"), ("spontaneity", "curve"), ("group", "sweep"), ("videotag", "train"), ("videotag", "ablation"),
                  ("privacy", "train-attributes"), ("privacy", "train-reconstruct"), ("privacy", "evaluate")]


@pytest.mark.parametrize("path", TRAIN_COMMANDS, ids=" ".join)
def test_every_command_that_trains_takes_the_same_hardware_options(path):
    import typer

    from affectlens.cli import app

    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    options = {o for p in command.params for o in p.opts}
    assert {"--accelerator", "--devices", "--num-nodes", "--strategy", "--precision"} <= options, path


def test_patience_stops_early_and_the_same_command_does_not_train_on(tmp_path):
    """lr 0: validation never improves after epoch 1, so patience 2 stops after epoch 3 of 10."""
    def run():
        return fit(TinyModule(train=TinyTrain(epochs=10, lr=0.0)), loader(Blobs(32), 8, shuffle=True),
                   loader(Blobs(16, seed=1), 8), out=tmp_path, epochs=10, progress=False, log=False, patience=2)

    first = run()
    assert first.epochs == 3 and first.best["epoch"] == 1
    again = run()
    assert again.epochs == 3 and load_checkpoint(tmp_path / "last.pt")["epoch"] == 3
