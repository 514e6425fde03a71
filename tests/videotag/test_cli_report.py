"""`videotag eval --report`: a self-contained HTML page; `videotag train` refuses --devices 2 in one line."""
from __future__ import annotations

import re

from typer.testing import CliRunner

from affectlens.cli import app
from affectlens.videotag.synth import synth_video_level

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
    r = runner.invoke(app, ["videotag", "eval", str(tmp_path / "run" / "model.pt"), "--data", str(shards),
                            "--train-shards", "1", "--report", str(report)])
    assert r.exit_code == 0, r.output
    html = report.read_text()
    for title in ("Results", "Training", "gap", "hit_at_one", "perr", "map", "GAP over the top 20"):
        assert title in html, title
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) >= 1  # the loss curve
    assert "http://" not in html and "https://" not in html


def test_train_is_single_process_and_says_so(tmp_path):
    r = runner.invoke(app, ["videotag", "train", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                            "--num-nodes", "2"])
    assert r.exit_code != 0 and "videotag train trains in a single process" in str(r.exception)
