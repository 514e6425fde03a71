"""`expression eval --report`: a self-contained HTML page; `expression train` on the engine, two CPU processes."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from affectlens.cli import app
from affectlens.training.checkpoint import load_checkpoint

runner = CliRunner()


def _fer_csv(path, n=21, seed=0, usages=("PrivateTest",)):
    rng = np.random.default_rng(seed)
    rows = ["emotion,pixels,Usage"]
    for i in range(n):
        pixels = " ".join(map(str, rng.integers(0, 256, 48 * 48)))
        rows.append(f"{i % 7},{pixels},{usages[i % len(usages)]}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_eval_report_has_sections_and_embedded_images(tmp_path):
    data = _fer_csv(tmp_path / "fer2013.csv")
    report = tmp_path / "r" / "expression.html"
    r = runner.invoke(app, ["expression", "eval", "--data", str(data), "--out", str(tmp_path / "ev"), "--label-set", "fer2013",
                            "--tta", "none", "--tta", "flip", "--report", str(report)])
    assert r.exit_code == 0, r.output
    html = report.read_text()
    for title in ("Results", "Test-time augmentation", "confusion matrix", "precision / recall / F1 per class",
                  "happy", "flip"):
        assert title in html, title
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) == 3
    assert "http://" not in html and "https://" not in html


def test_train_takes_the_engine_options():
    r = runner.invoke(app, ["expression", "train", "--help"])
    for flag in ("--accelerator", "--devices", "--num-nodes", "--strategy", "--precision"):
        assert flag in r.output, flag
    assert "Single process only" not in r.output


def test_train_refuses_a_missing_init_checkpoint_before_reading_any_data(tmp_path):
    r = runner.invoke(app, ["expression", "train", "--init", str(tmp_path / "nope.pt"), "--data", str(tmp_path / "none"),
                            "--out", str(tmp_path / "run")])
    said = " ".join(r.output.replace("│", " ").split())  # the usage box may wrap the line
    assert r.exit_code == 2 and "--init" in said and "no such checkpoint" in said
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_train_on_two_cpu_processes_writes_one_run_folder(tmp_path):
    """``--accelerator cpu --devices 2 --strategy ddp``: Lightning re-runs the command as rank 1."""
    data = _fer_csv(tmp_path / "fer2013.csv", n=24, usages=("Training", "Training", "PublicTest"))
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([str(Path(sys.executable).parent / "affectlens"), "expression", "train", "--data", str(data),
                           "--out", str(out), "--size", "tiny", "--variant", "cnn", "--epochs", "1",
                           "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"],
                          env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in out.glob("*.pt")) == ["best.pt", "last.pt"]
    ck = load_checkpoint(out / "last.pt")
    assert ck["epoch"] == 1 and ck["model"]["variant"] == "cnn" and len(ck["history"]["train_loss"]) == 1
    assert "2 device(s)" in done.stderr


def test_eval_of_the_default_ferplus_model_needs_the_votes_beside_the_data(tmp_path):
    data = _fer_csv(tmp_path / "fer2013.csv")
    r = runner.invoke(app, ["expression", "eval", "--data", str(data), "--out", str(tmp_path / "ev")])
    assert r.exit_code != 0 and isinstance(r.exception, Exception)
    assert str(tmp_path / "ferplus.csv") in str(r.exception) and "FER+ votes not found" in str(r.exception)


def test_ensemble_command_counts_the_members_it_wrote(tmp_path):
    import torch

    from affectlens.expression.model import build_model, expression_tiny
    from affectlens.training import save_checkpoint

    cfg = expression_tiny()
    paths = []
    for seed in range(3):
        torch.manual_seed(seed)
        paths.append(str(save_checkpoint(tmp_path / f"n{seed}.pt", build_model(cfg), cfg, epoch=1)))
    r = runner.invoke(app, ["expression", "ensemble", paths[0], paths[1], "--out", str(tmp_path / "pair.pt")])
    assert r.exit_code == 0 and "(2 members)" in r.output, r.output
    r = runner.invoke(app, ["expression", "ensemble", str(tmp_path / "pair.pt"), paths[2], "--out", str(tmp_path / "three.pt")])
    assert r.exit_code == 0 and "(3 members)" in r.output, r.output
    assert load_checkpoint(tmp_path / "three.pt")["extra"]["members"] == 3
