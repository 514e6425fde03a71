"""The group room on the one engine: a tiny model learns, exact resume through ``train``, a folder
of other settings refused, the ViT freeze schedule, 2-rank gloo DDP from the CLI, one GPU step."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from affectlens.errors import AffectlensError
from affectlens.group.recipe import TrainConfig, _hardware, load_model, train
from affectlens.group.synth import SynthSpec, generate_dataset
from affectlens.group.train_module import GroupModule
from affectlens.training.checkpoint import FORMAT, load_checkpoint
from affectlens.training.engine import fit, loader
from affectlens.training.hardware import Hardware

CPU = Hardware(accelerator="cpu")
SPEC = SynthSpec(width=48, height=48, fps=5, seconds=2.0, min_faces=3, max_faces=4)


class Cues(Dataset):
    """Clips whose class shows in both inputs: frame colour (video) and log-mel level (audio)."""

    def __init__(self, n: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.arange(n) % 3
        self.video = torch.rand(n, 5, 3, 32, 32, generator=g) * 0.3  # (N, T, 3, H, W)
        self.video[torch.arange(n), :, self.y] += 0.6  # the class's colour channel lights up
        self.audio = torch.randn(n, 5, 1, 128, 251, generator=g) + self.y[:, None, None, None, None].float()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        return {"video": self.video[i], "audio": self.audio[i], "label": self.y[i], "id": str(i)}


def tiny(**kw) -> TrainConfig:
    base = dict(size="tiny", modality="fusion", frames=5, img_size=32, epochs=4, batch_size=6, optimizer="adamw",
                lr=3e-3, freeze_vit_epochs=1, threads=1)
    return TrainConfig(**{**base, **kw})


def test_a_tiny_group_model_learns_through_the_engine(tmp_path):
    torch.set_num_threads(1)
    cfg = tiny(epochs=4)
    res = fit(GroupModule(cfg), loader(Cues(24), cfg.batch_size, shuffle=True), loader(Cues(18, seed=1), 9),
              out=tmp_path, epochs=cfg.epochs, hardware=CPU, progress=False)
    h = res.history
    assert h["val_acc"][0] < 0.5 and h["val_acc"][-1] >= 0.9 and h["train_loss"][-1] < h["train_loss"][0] / 4, h
    assert res.best["metric"] == "val_acc" and res.best["value"] == max(h["val_acc"])
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["format"] == FORMAT and best["epoch"] == res.best["epoch"] and "optimizer" not in best
    assert best["extra"] == {"classes": ["Positive", "Neutral", "Negative"],
                             "features": {"n_video": 5, "n_audio": 5, "size": 32, "missing_audio": "error"}}
    model, back = load_model(tmp_path / "best.pt")
    assert back == cfg and model.cfg == cfg.model_config()
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["best.pt", "last.pt", "metrics.csv",
                                                                        "metrics.json"]


def test_the_vit_is_frozen_for_freeze_vit_epochs_then_released(tmp_path):
    torch.set_num_threads(1)
    cfg = tiny(epochs=2, freeze_vit_epochs=1, optimizer="sgd", lr=0.01)
    module = GroupModule(cfg)
    vit0 = {k: v.clone() for k, v in module.model.vit.state_dict().items() if "running" not in k}
    head0 = module.model.head.weight.detach().clone()
    fit(module, loader(Cues(12), 6, shuffle=True), None, out=tmp_path / "a", epochs=1, hardware=CPU, progress=False)
    vit1 = {k: v for k, v in module.model.vit.state_dict().items() if "running" not in k and "num_batches" not in k}
    assert all(torch.equal(vit0[k], v) for k, v in vit1.items())  # frozen: epoch 1 leaves the ViT alone
    assert not torch.equal(head0, module.model.head.weight)
    fit(module, loader(Cues(12), 6, shuffle=True), None, out=tmp_path / "a", epochs=2, hardware=CPU, progress=False)
    assert not all(torch.equal(vit0[k], v) for k, v in module.model.vit.state_dict().items() if k in vit1)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("grpeng") / "real"
    generate_dataset(root, 4, SPEC, seed=0, progress=False)
    return root


def _train(clips, out, **kw):
    torch.set_num_threads(1)
    return train(tiny(batch_size=2, select_on="val", **kw), clips, out, val=clips, cache=clips.parent / "cache", progress=False,
                 log=lambda s: None, hardware=CPU)


def test_resume_ends_with_the_weights_of_an_uninterrupted_run(clips, tmp_path, capsys):
    """Stopped after epoch 2, the same command with 4 epochs continues at 3 (the ViT released at 4)."""
    _train(clips, tmp_path / "whole", epochs=4, freeze_vit_epochs=3)
    _train(clips, tmp_path / "cut", epochs=2, freeze_vit_epochs=3)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 2
    capsys.readouterr()
    r = _train(clips, tmp_path / "cut", epochs=4, freeze_vit_epochs=3)
    assert "resuming after epoch 2" in capsys.readouterr().err
    assert len(r["history"]["train_loss"]) == 4 and (tmp_path / "cut" / "eval" / "eval.json").is_file()
    whole, cut = (load_checkpoint(tmp_path / d / "last.pt") for d in ("whole", "cut"))
    assert cut["epoch"] == whole["epoch"] == 4 and whole["state_dict"].keys() == cut["state_dict"].keys()
    for k, v in whole["state_dict"].items():
        assert torch.equal(v, cut["state_dict"][k]), k
    assert cut["history"]["val_acc"] == whole["history"]["val_acc"]


def test_a_run_folder_made_with_other_settings_is_refused_in_one_line(clips, tmp_path):
    _train(clips, tmp_path, epochs=1)
    with pytest.raises(AffectlensError, match=r"another recipe \(lr: 0.003 there, 0.01 now\)") as e:
        _train(clips, tmp_path, epochs=2, lr=0.01)
    assert "\n" not in str(e.value)
    with pytest.raises(AffectlensError, match=r"another model \(modality"):
        _train(clips, tmp_path, epochs=2, modality="video")
    _train(clips, tmp_path, epochs=2, threads=2)  # threads change nothing the run computes: it continues


def test_ddp_is_told_about_the_frozen_vit():
    ddp = "ddp_find_unused_parameters_true"
    assert _hardware(Hardware(devices="2", strategy="ddp"), tiny()).strategy == ddp
    assert _hardware(Hardware(devices="2"), tiny()).strategy == ddp  # "auto" on 2 devices is DDP
    assert _hardware(Hardware(accelerator="cpu", num_nodes=2), tiny()).strategy == ddp
    assert _hardware(Hardware(devices="2", strategy="ddp"), tiny(freeze_vit_epochs=0)).strategy == "ddp"
    assert _hardware(Hardware(devices="2", strategy="ddp"), tiny(modality="audio")).strategy == "ddp"
    assert _hardware(Hardware(accelerator="cpu"), tiny()).strategy == "auto"  # one process: no DDP at all


def test_old_checkpoints_load_and_other_rooms_are_refused(tmp_path):
    import dataclasses

    from affectlens.training import save_checkpoint

    cfg = tiny()
    module = GroupModule(cfg)
    old = {"state_dict": module.model.state_dict(),
           "config": {"train": dataclasses.asdict(cfg), "model": dataclasses.asdict(cfg.model_config())}}
    torch.save(old, tmp_path / "old.pt")  # the layout written before the engine
    model, back = load_model(tmp_path / "old.pt")
    assert back == cfg and all(torch.equal(v, module.model.state_dict()[k]) for k, v in model.state_dict().items())
    save_checkpoint(tmp_path / "other.pt", torch.nn.Linear(4, 2), {"width": 16})
    with pytest.raises(AffectlensError, match=r"other.pt: not a group checkpoint"):
        load_model(tmp_path / "other.pt")


@pytest.mark.slow
def test_cli_train_on_two_cpu_ranks_writes_one_checkpoint(clips, tmp_path):
    """``--accelerator cpu --devices 2 --strategy ddp``: Lightning re-runs the command as rank 1 (gloo)."""
    (tmp_path / "tiny.yaml").write_text("size: tiny\nframes: 5\nimg_size: 32\nepochs: 1\nbatch_size: 2\n"
                                        "optimizer: adamw\nlr: 0.001\nfreeze_vit_epochs: 1\nthreads: 1\n")
    exe = Path(sys.executable).with_name("affectlens")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([str(exe), "group", "train", str(clips), "--val", str(clips), "--out", str(tmp_path / "run"),
                           "--config", str(tmp_path / "tiny.yaml"),
                           "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1 epochs on 2 process(es)" in done.stdout and done.stdout.count("validation accuracy") == 1
    run = tmp_path / "run"
    assert sorted(p.name for p in run.glob("*.pt")) == ["best.pt", "last.pt"]
    assert json.loads((run / "metrics.json").read_text())["world_size"] == 2
    assert load_checkpoint(run / "last.pt")["epoch"] == 1 and (run / "eval" / "eval.json").is_file()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
def test_one_gpu_step_writes_one_checkpoint(tmp_path):
    cfg = tiny(epochs=1)
    res = fit(GroupModule(cfg), loader(Cues(6), 6, shuffle=True), loader(Cues(3), 3), out=tmp_path, epochs=1,
              hardware=Hardware(accelerator="gpu"), progress=False)
    assert res.epochs == 1 and load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    assert torch.isfinite(torch.tensor(res.history["train_loss"])).all()


def test_sweep_trains_one_run_per_ratio_and_resumes(clips, tmp_path):
    """Table 1 end to end on tiny clips: one run per synthetic ratio, mixed as asked, read back on a re-run."""
    import json

    from affectlens.group.ablation import sweep

    syn = tmp_path / "syn"
    generate_dataset(syn, 4, SPEC, seed=5, progress=False, prefix="syn")
    torch.set_num_threads(1)
    cfg = tiny(modality="video", epochs=1, batch_size=2, select_on="val")
    res = sweep(cfg, clips, clips, syn, tmp_path / "sweep", ratios=(0.2, 0.5), progress=False, log=lambda s: None,
                hardware=CPU)
    assert set(res) == {0.2, 0.5} and all(0 <= v <= 1 for v in res.values())
    table = (tmp_path / "sweep" / "sweep.txt").read_text()
    assert "75.07%" in table and json.loads((tmp_path / "sweep" / "sweep.json").read_text())["modality"] == "video"
    before = (tmp_path / "sweep" / "ratio50" / "best.pt").stat().st_mtime_ns
    again = sweep(cfg, clips, clips, syn, tmp_path / "sweep", ratios=(0.2, 0.5), progress=False, log=lambda s: None,
                  hardware=CPU)
    assert again == res and (tmp_path / "sweep" / "ratio50" / "best.pt").stat().st_mtime_ns == before
