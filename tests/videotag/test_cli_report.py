"""`videotag eval --report`: a self-contained HTML page; `videotag train` on the engine, exact resume, checked configs."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from affectlens.cli import app
from affectlens.videotag.synth import synth_video_level

REPO = Path(__file__).resolve().parents[2]

runner = CliRunner()


def test_eval_report_has_metrics_and_curves(tmp_path):
    shards = tmp_path / "yt8m"
    synth_video_level(shards, num_shards=2, videos_per_shard=30, num_classes=6, noise=0.8)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("model: logistic\nepochs: 2\nbatch_size: 16\nlr: 0.01\nthreads: 1\n")
    r = runner.invoke(app, ["videotag", "train", "--data", str(shards), "--config", str(cfg), "--out",
                            str(tmp_path / "run"), "--train-shards", "1"])
    assert r.exit_code == 0, r.output
    report = tmp_path / "videotag.html"
    r = runner.invoke(app, ["videotag", "eval", str(tmp_path / "run" / "best.pt"), "--data", str(shards),
                            "--train-shards", "1", "--report", str(report)])
    assert r.exit_code == 0, r.output
    html = report.read_text()
    for title in ("Results", "Training", "gap", "hit_at_one", "perr", "map", "GAP over the top 20"):
        assert title in html, title
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) >= 2  # the loss curve, the PR curves
    assert "Most frequent classes" in html and (tmp_path / "videotag_pr.png").stat().st_size > 1000
    assert "http://" not in html and "https://" not in html


def test_train_takes_the_engine_options_and_resumes_exactly(tmp_path):
    r = runner.invoke(app, ["videotag", "train", "--help"])
    assert all(f in r.output for f in ("--accelerator", "--devices", "--num-nodes", "--strategy", "--precision"))
    from affectlens.training.checkpoint import load_checkpoint
    from affectlens.videotag import recipe
    from tests.training.tiny import StopAfter

    shards = synth_video_level(tmp_path / "yt8m", num_shards=2, videos_per_shard=30, num_classes=6, noise=0.8)
    cfg = recipe.TrainConfig(model={"kind": "moe", "num_experts": 2}, epochs=4, batch_size=16, lr=0.01, threads=1)
    recipe.train(cfg, shards[:1], tmp_path / "cut", shards[1:], log=lambda s: None, callbacks=[StopAfter(2)])
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 2
    recipe.train(cfg, shards[:1], tmp_path / "cut", shards[1:], log=lambda s: None)
    recipe.train(cfg, shards[:1], tmp_path / "whole", shards[1:], log=lambda s: None)
    a, b = (load_checkpoint(tmp_path / d / "last.pt") for d in ("cut", "whole"))
    assert a["epoch"] == b["epoch"] == 4 and all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    r = runner.invoke(app, ["videotag", "train", "--data", str(tmp_path / "yt8m"), "--out", str(tmp_path / "cut"),
                            "--train-shards", "1", "--lr", "0.5"])
    assert r.exit_code != 0 and "made with another recipe (batch_size: 16 there, 1024 now)" in str(r.exception)


def test_config_keys_are_checked(tmp_path):
    from affectlens.errors import DataError
    from affectlens.videotag import recipe

    for text, match in (("model: moe\nnum_expert: 8\n", "unknown key 'num_expert'"),
                        ("model: moe\nepochs: ten\n", "epochs: expected int"),
                        ("model: moee\n", "model: expected one of"), ("epochs: [\n", "not valid YAML")):
        (tmp_path / "c.yaml").write_text(text)
        with pytest.raises(DataError, match=match):
            recipe.load_config(tmp_path / "c.yaml")
    (tmp_path / "c.yaml").write_text("model: moe\nnum_experts: 8\nlr: 1e-3\n")
    cfg = recipe.load_config(tmp_path / "c.yaml")
    assert cfg.model == {"kind": "moe", "num_experts": 8} and cfg.lr == 1e-3


def test_configs_name_a_size_and_override_its_numbers(tmp_path):
    from affectlens.videotag import models as M
    from affectlens.videotag import recipe

    (tmp_path / "c.yaml").write_text("model: dbof_a\nsamples: 12\n")
    cfg = recipe.load_config(tmp_path / "c.yaml")
    built = M.config_from_dict({**cfg.model, "input_dim": 5, "num_classes": 3})
    assert built == dataclasses.replace(M.dbof_a(input_dim=5, num_classes=3), samples=12)
    assert recipe.load_config(REPO / "configs" / "videotag_moe_a.yaml").model == {"kind": "moe", "num_experts": 8}
    (tmp_path / "c.yaml").write_text("model: dbof_a\nnum_expert: 3\n")
    with pytest.raises(Exception, match="unknown key 'num_expert'"):
        recipe.load_config(tmp_path / "c.yaml")
