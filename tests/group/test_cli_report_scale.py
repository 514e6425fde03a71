"""CLI wiring: `group eval --report`, `group features --backend ray`, `group train --devices` checked
(DDP itself: tests/group/test_engine.py)."""
from __future__ import annotations

import re

import numpy as np
import pytest
from typer.testing import CliRunner

from affectlens.cli import app
from affectlens.group.data import FeatureSpec, cache_path
from affectlens.group.recipe import TrainConfig, train
from affectlens.group.synth import SynthSpec, generate_dataset

runner = CliRunner()
SPEC = SynthSpec(width=48, height=48, fps=5, seconds=2.0, min_faces=3, max_faces=4)
FEATS = ["--frames", "5", "--size", "32"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("grpcli") / "real"
    generate_dataset(root, 3, SPEC, seed=0, progress=False)
    return root


def _arrays(cache, names) -> dict:
    spec = FeatureSpec(5, 5, 32)
    out = {}
    for name in names:
        with np.load(cache_path(cache, spec, name)) as z:
            out[name] = {k: z[k] for k in z.files}
    return out


def _names(root):
    return sorted(p.stem for p in (root / "clips").glob("*.mp4"))


def test_eval_writes_html_report(clips, tmp_path):
    cfg = TrainConfig(size="tiny", frames=5, img_size=32, epochs=2, batch_size=3, optimizer="adamw", lr=1e-3,
                      freeze_vit_epochs=1, threads=1)
    train(cfg, clips, tmp_path / "run", val=clips, cache=tmp_path / "cache", progress=False, log=lambda s: None)
    report = tmp_path / "report.html"
    r = runner.invoke(app, ["group", "eval", str(tmp_path / "run" / "best.pt"), str(clips), "--out",
                            str(tmp_path / "ev"), "--report", str(report)])
    assert r.exit_code == 0, r.output
    html = report.read_text()
    for title in ("Results", "Training", "confusion matrix", "precision / recall / F1 per class", "Positive"):
        assert title in html
    assert len(re.findall(r'src="data:image/png;base64,', html)) >= 4  # 2 confusion, P/R/F1, curves
    assert "http://" not in html and "https://" not in html


def test_features_ray_matches_local_and_reports_failures(clips, tmp_path):
    pytest.importorskip("ray", reason="ray is not installed (pip install 'affectlens[scale]')")
    local, far = tmp_path / "local", tmp_path / "ray"
    r = runner.invoke(app, ["group", "features", str(clips), "--cache", str(local), *FEATS])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["group", "features", str(clips), "--cache", str(far), *FEATS,
                            "--backend", "ray", "--workers", "2"])
    if r.exit_code != 0 and "cannot start Ray" in str(r.exception or r.output):
        pytest.skip(f"ray cannot start here: {r.exception or r.output}")
    assert r.exit_code == 0, r.output
    assert "3 cached" in r.output
    a, b = _arrays(local, _names(clips)), _arrays(far, _names(clips))
    for name in a:
        for key in ("video", "audio", "duration", "label"):
            np.testing.assert_array_equal(a[name][key], b[name][key])

    # resume: nothing to redo; a corrupt clip fails by name, exit 1, and leaves no cache entry behind
    bad = clips.parent / "bad"
    (bad / "clips").mkdir(parents=True)
    for p in (clips / "clips").glob("*.mp4"):
        (bad / "clips" / p.name).write_bytes(p.read_bytes())
    (bad / "clips" / "broken.mp4").write_bytes(b"not a video")
    (bad / "labels.txt").write_text((clips / "labels.txt").read_text() + "broken.mp4 2\n")
    far_bad = tmp_path / "ray_bad"
    for sub in (far / "v5_a5_s32").iterdir():  # the good clips were already cached: resume skips them
        (far_bad / "v5_a5_s32").mkdir(parents=True, exist_ok=True)
        (far_bad / "v5_a5_s32" / sub.name).write_bytes(sub.read_bytes())
    r = runner.invoke(app, ["group", "features", str(bad), "--cache", str(far_bad), *FEATS,
                            "--backend", "ray", "--workers", "2"])
    assert r.exit_code == 1
    assert "0 cached, 3 already cached, 1 failed" in r.output.replace("\n", " ")
    assert "broken.mp4" in r.output
    assert not cache_path(far_bad, FeatureSpec(5, 5, 32), "broken").exists()
    assert not [p for p in (far_bad / "v5_a5_s32").iterdir() if p.name.startswith(".")]  # no temp files


def test_train_rejects_bad_devices_with_one_line(tmp_path):
    r = runner.invoke(app, ["group", "train", "--synthetic", str(tmp_path), "--out", str(tmp_path / "o"),
                            "--devices", "two"])
    assert r.exit_code != 0 and "--devices 'two'" in str(r.exception)
