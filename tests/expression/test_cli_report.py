"""`expression eval --report`: a self-contained HTML page; `expression train` refuses --devices 2 in one line."""
from __future__ import annotations

import re

import numpy as np
from typer.testing import CliRunner

from affectlens.cli import app

runner = CliRunner()


def _fer_csv(path, n=21, seed=0):
    rng = np.random.default_rng(seed)
    rows = ["emotion,pixels,Usage"]
    for i in range(n):
        pixels = " ".join(map(str, rng.integers(0, 256, 48 * 48)))
        rows.append(f"{i % 7},{pixels},PrivateTest")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_eval_report_has_sections_and_embedded_images(tmp_path):
    data = _fer_csv(tmp_path / "fer2013.csv")
    report = tmp_path / "r" / "expression.html"
    r = runner.invoke(app, ["expression", "eval", "--data", str(data), "--out", str(tmp_path / "ev"),
                            "--tta", "none", "--tta", "flip", "--report", str(report)])
    assert r.exit_code == 0, r.output
    html = report.read_text()
    for title in ("Results", "Test-time augmentation", "confusion matrix", "precision / recall / F1 per class",
                  "happy", "flip"):
        assert title in html, title
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) == 3
    assert "http://" not in html and "https://" not in html


def test_train_is_single_process_and_says_so(tmp_path):
    r = runner.invoke(app, ["expression", "train", "--out", str(tmp_path), "--devices", "2"])
    assert r.exit_code != 0
    assert "expression train trains in a single process" in str(r.exception)
    r = runner.invoke(app, ["expression", "train", "--help"])
    assert "--num-nodes" in r.output and "Single process only" in r.output
