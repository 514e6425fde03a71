"""Spontaneity on the training engine: exact resume of a net, a folder of other settings refused,
a CV that resumes fold by fold, one-line config errors, 2-rank DDP from the CLI, one GPU step."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from affectlens.errors import AffectlensError
from affectlens.spontaneity import recipe as P
from affectlens.spontaneity.model import spontaneity_tiny
from affectlens.spontaneity.synth import synthetic_arrays
from affectlens.training import load_checkpoint
from affectlens.training.hardware import Hardware
from tests.training.tiny import weights_hash

REPO = Path(__file__).resolve().parents[2]
CPU = Hardware(accelerator="cpu")
TINY = P.TrainConfig(size="tiny", epochs=1)


@pytest.fixture(scope="module")
def pairs():
    onset, apex, labels, subjects = synthetic_arrays(6, 4, seed=1)
    return onset, apex, labels, subjects


def _net(out, pairs, epochs, **tc):
    torch.set_num_threads(1)
    o, a, y = P.to_tensor(pairs[0]), P.to_tensor(pairs[1]), torch.from_numpy(pairs[2])
    return P.train_net(spontaneity_tiny("comp", "comb", 2), o, a, y, P.TrainConfig(size="tiny", epochs=epochs, **tc),
                       0, out, hardware=CPU, progress=False)


def test_resume_of_a_net_ends_with_the_weights_of_an_uninterrupted_run(tmp_path, pairs):
    whole, _ = _net(tmp_path / "whole", pairs, 4)
    _net(tmp_path / "cut", pairs, 2)  # an interrupted run: stopped after epoch 2
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 2
    resumed, res = _net(tmp_path / "cut", pairs, 4)
    assert len(res.history["train_loss"]) == 4 and weights_hash(resumed) == weights_hash(whole)


def test_a_net_folder_made_with_other_settings_is_refused(tmp_path, pairs):
    _net(tmp_path, pairs, 1)
    with pytest.raises(AffectlensError, match=r"another recipe \(lr: 0.003 there, 0.01 now\)"):
        _net(tmp_path, pairs, 1, lr=1e-2)
    other = tuple(p[::-1].copy() for p in pairs[:3])  # other training pairs: another fingerprint
    with pytest.raises(AffectlensError, match=r"another recipe \(data: "):
        _net(tmp_path, other, 1)


def test_cv_resumes_fold_by_fold_and_a_finished_fold_is_not_retrained(tmp_path, pairs, monkeypatch):
    first = P.run_cv(*pairs, "kfold", 2, (0,), TINY, out=tmp_path, hardware=CPU)
    fold1 = tmp_path / "runs" / "seed0" / "fold01"
    assert sorted(p.name for p in fold1.iterdir()) == sorted(["fold.json", *P.METHODS[:4], *P.METHODS[5:8]])
    (fold1 / "fold.json").unlink()  # interrupted while fold 1 trained its last net
    for name in ("last.pt", "best.pt"):
        (fold1 / "CompCNN-Comb@3" / name).unlink()
    kept = {p: p.stat().st_mtime_ns for p in fold1.glob("*/last.pt")}
    original, calls = P.train_net, []

    def counting(*args, **kwargs):
        calls.append(args[0].name)
        return original(*args, **kwargs)

    monkeypatch.setattr(P, "train_net", counting)
    again = P.run_cv(*pairs, "kfold", 2, (0,), TINY, out=tmp_path, hardware=CPU)
    assert len(calls) == 7  # fold 0 came from its fold.json; fold 1 asked the engine for each net
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # finished nets were not trained again
    assert (fold1 / "CompCNN-Comb@3" / "last.pt").is_file() and again["errors"] == first["errors"]


def test_cv_refuses_run_folders_made_with_other_settings(tmp_path, pairs):
    P.run_cv(*pairs, "kfold", 2, (0,), TINY, out=tmp_path, hardware=CPU)
    with pytest.raises(AffectlensError, match=r"another recipe \(lr: "):
        P.run_cv(*pairs, "kfold", 2, (0,), P.TrainConfig(size="tiny", epochs=1, lr=0.01), out=tmp_path, hardware=CPU)
    P.run_cv(*pairs, "kfold", 2, (0,), P.TrainConfig(size="tiny", epochs=1, lr=0.01), out=tmp_path, hardware=CPU,
             resume=False)  # starting over is explicit
    assert json.loads((tmp_path / "runs" / "seed0" / "fold00" / "fold.json").read_text())["settings"]["lr"] == 0.01


@pytest.mark.parametrize("text,expected", [
    ("epochs: ten\n", r"c\.yaml: epochs: expected int, got 'ten'"),
    ("epochz: 3\n", r"c\.yaml: unknown key 'epochz' for CVConfig"),
    ("size: huge\n", r"c\.yaml: size: expected 'tiny' \| 'small' \| 'paper', got 'huge'"),
    ("epochs: [1\n", r"c\.yaml: not valid YAML \(line 2"),
])
def test_a_bad_config_is_one_line_naming_the_file_and_key(tmp_path, capsys, text, expected):
    import re

    from affectlens.cli import main

    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(SystemExit) as e:
        main(["spontaneity", "cv", str(tmp_path / "m.csv"), "--config", str(tmp_path / "c.yaml")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 1 and len(err.splitlines()) == 1 and re.search(expected, err), err


def test_train_takes_the_hardware_options_and_refuses_a_bad_one_in_one_line(tmp_path, capsys):
    from affectlens.cli import main

    with pytest.raises(SystemExit) as e:
        main(["spontaneity", "train", str(tmp_path / "m.csv"), "--out", str(tmp_path / "o"), "--accelerator", "tpu9"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 1 and len(err.splitlines()) == 1 and "--accelerator 'tpu9'" in err


@pytest.mark.slow
def test_train_on_two_cpu_ranks_writes_each_model_once(tmp_path):
    """``spontaneity train --accelerator cpu --devices 2 --strategy ddp``: Lightning re-runs the
    command as rank 1 (gloo); the seven nets train on both ranks, rank 0 writes every file."""
    from affectlens.spontaneity.synth import write_synthetic

    manifest = write_synthetic(tmp_path / "syn", 4, 4, 0, 0.3)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cli = [sys.executable, str(Path(sys.executable).with_name("affectlens"))]
    done = subprocess.run([*cli, "spontaneity", "train", str(manifest), "--out", str(tmp_path / "m"), "--size", "tiny",
                           "--epochs", "1", "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("wrote 9 models") == 1  # printed by rank 0 only
    assert sorted(p.name for p in (tmp_path / "m").glob("*.pt")) == sorted(f"{m}.pt" for m in P.METHODS)
    for run in (tmp_path / "m" / "runs").iterdir():
        assert sorted(p.name for p in run.glob("*.pt")) == ["best.pt", "last.pt"]
        assert json.loads((run / "metrics.json").read_text())["world_size"] == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
def test_one_gpu_epoch_writes_one_checkpoint(tmp_path, pairs):
    o, a, y = P.to_tensor(pairs[0]), P.to_tensor(pairs[1]), torch.from_numpy(pairs[2])
    net, res = P.train_net(spontaneity_tiny(), o, a, y, TINY, 0, tmp_path, hardware=Hardware(accelerator="gpu"),
                           progress=False)
    assert res.epochs == 1 and load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    p, _ = P.net_outputs(net.cuda(), o, a)
    assert p.shape == (len(y),) and np.isfinite(p).all()
