"""The privacy research nets on the training engine: exact resume, a folder of other settings
refused, one-line config errors, one reader for every net, 2-rank DDP from the CLI, one GPU step."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from affectlens.errors import AffectlensError, DataError
from affectlens.privacy import attack as K
from affectlens.privacy import reconstruct as R
from affectlens.training import load_checkpoint, save_checkpoint
from affectlens.training.hardware import Hardware
from affectlens.privacy import model as PM
from tests.privacy.test_attributes import _write_celeba
from tests.training.tiny import weights_hash

REPO = Path(__file__).resolve().parents[2]
CPU = Hardware(accelerator="cpu")


def _photos(n_ids=3, per_id=4, seed=0):
    """Identity k = a bright horizontal band (it survives the random flips)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_ids), per_id)
    images = np.zeros((len(labels), 128, 64, 3), np.uint8)
    for i, k in enumerate(labels):
        images[i, k * 40:(k + 1) * 40] = 200 + rng.integers(0, 50)
    return images, labels


def _recogniser(out, epochs, lr=3e-3, photos=None, hardware=CPU):
    torch.set_num_threads(1)
    images, labels = photos or _photos()
    config = PM.recognizer_tiny(n_classes=3).config
    return K.train_recognizer(config, images, labels, out, epochs=epochs, lr=lr, batch_size=4, hardware=hardware,
                              progress=False)


def test_resume_of_the_recogniser_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    whole, _ = _recogniser(tmp_path / "whole", 4)
    _recogniser(tmp_path / "cut", 2)  # an interrupted run: stopped after epoch 2
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 2
    resumed, res = _recogniser(tmp_path / "cut", 4)
    assert len(res.history["train_loss"]) == 4 and weights_hash(resumed) == weights_hash(whole)


def test_a_run_folder_made_with_other_settings_is_refused(tmp_path):
    _recogniser(tmp_path, 1)
    with pytest.raises(AffectlensError, match=r"another recipe \(lr: 0.003 there, 0.01 now\)"):
        _recogniser(tmp_path, 1, lr=1e-2)
    with pytest.raises(AffectlensError, match=r"another recipe \(data: "):  # other people's photos
        _recogniser(tmp_path, 1, photos=_photos(seed=1))


def test_one_reader_loads_every_privacy_net_and_refuses_the_wrong_one(tmp_path):
    nets = {"a.pt": PM.attributes_tiny(), "r.pt": PM.recon_tiny(), "k.pt": PM.recognizer_tiny()}
    for name, net in nets.items():
        save_checkpoint(tmp_path / name, net, net.config)
        back = PM.load_model(tmp_path / name)
        assert type(back) is type(net) and back.config == net.config and not back.training
    assert isinstance(R.load_recon_model(tmp_path / "r.pt"), PM.ReconNet)
    with pytest.raises(DataError, match=r"a\.pt: holds AttributeNet, expected ReconNet"):
        R.load_recon_model(tmp_path / "a.pt")


@pytest.mark.parametrize("command,text,expected", [
    ("train-attributes", "epochs: ten\n", r"c\.yaml: epochs: expected int, got 'ten'"),
    ("train-attributes", "backbone: resnet9\n", r"c\.yaml: backbone: expected 'small' \| 'resnet18' \| 'resnet50'"),
    ("train-reconstruct", "widhts: [4, 8]\n", r"c\.yaml: unknown key 'widhts' for ReconTrainConfig"),
    ("train-reconstruct", "lr: 1e-3: x\n", r"c\.yaml: not valid YAML \(line 1"),
])
def test_a_bad_config_is_one_line_naming_the_file_and_key(tmp_path, capsys, command, text, expected):
    from affectlens.cli import main

    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(SystemExit) as e:
        main(["privacy", command, "--config", str(tmp_path / "c.yaml")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 1 and len(err.splitlines()) == 1 and re.search(expected, err), err


@pytest.mark.slow
def test_train_attributes_on_two_cpu_ranks_writes_one_checkpoint(tmp_path):
    """``privacy train-attributes --accelerator cpu --devices 2 --strategy ddp`` on a tiny CelebA:
    Lightning re-runs the command as rank 1 (gloo); rank 0 alone writes and reports."""
    _write_celeba(tmp_path / "celeba", n=40)
    (tmp_path / "c.yaml").write_text(f"data: {tmp_path / 'celeba'}\nout: {tmp_path / 'run'}\nwidths: [4, 8]\n"
                                     "image_hw: [20, 16]\nepochs: 1\nbatch_size: 8\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cli = [sys.executable, str(Path(sys.executable).with_name("affectlens"))]
    done = subprocess.run([*cli, "privacy", "train-attributes", "--config", str(tmp_path / "c.yaml"),
                           "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("test mean accuracy") == 1  # reported by rank 0 only
    assert sorted(p.name for p in (tmp_path / "run").glob("*.pt")) == ["best.pt", "last.pt"]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and 0 <= metrics["test_mean_accuracy"] <= 1
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
def test_one_gpu_epoch_writes_one_checkpoint(tmp_path):
    net, res = _recogniser(tmp_path, 1, hardware=Hardware(accelerator="gpu"))
    assert res.epochs == 1 and load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    images, labels = _photos()
    assert 0 <= K.recognizer_accuracy(net.cuda(), images, labels) <= 1
    x, y = R.build_input(*(torch.as_tensor(a).cuda() for a in _stage2_batch()))
    assert x.device.type == "cuda" and x.shape == (2, 111, 128, 64) and y.device.type == "cuda"


def _stage2_batch():
    rng = np.random.default_rng(0)
    masks = np.zeros((2, 128, 64), np.uint8)
    masks[:, 40:100, 12:52] = 1
    return (rng.integers(0, 256, (2, 128, 64, 3), dtype=np.uint8), masks,
            rng.uniform([12, 40], [52, 100], (2, 68, 2)).astype(np.float32), rng.integers(0, 2, (2, 40)).astype(np.uint8))
