"""Prediction on real photos, a real video and in-memory faces; CLI outputs, annotation, bad files."""
from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from affectlens.expression.data import CLASSES
from affectlens.expression.model import build_model, expression_tiny
from affectlens.expression.predict import (
    DEFAULT_WEIGHTS,
    FaceResult,
    link_tracks,
    predict_images,
)
from affectlens.training import save_checkpoint
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A tiny untrained checkpoint: these tests check the plumbing, not accuracy."""
    torch.manual_seed(0)
    cfg = expression_tiny(image_size=40)
    path = tmp_path_factory.mktemp("w") / "tiny.pt"
    save_checkpoint(path, build_model(cfg), cfg)
    return path


def test_link_tracks_follows_moving_faces():
    def face(x):
        return FaceResult(np.array([x, 10, x + 50, 60], np.float32), 0.9, np.ones(7) / 7, np.zeros((48, 48), np.uint8))
    frames = [[face(0), face(200)], [face(210), face(10)], [], [face(20)]]
    link_tracks(frames)
    assert [f.track for f in frames[0]] == [0, 1]
    assert [f.track for f in frames[1]] == [1, 0] and frames[3][0].track == 0


def test_predict_images_on_face_arrays(weights):
    faces = [np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8) for i in range(3)]
    out = predict_images(faces + [np.zeros((48, 48), np.float32)], weights=weights)
    assert len(out) == 4 and all(o["label"] in CLASSES for o in out)
    assert abs(sum(out[0]["probs"].values()) - 1) < 1e-3


def test_cli_predict_image_folder_video_and_bad_file(tmp_path, weights):
    from affectlens.cli import app

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(shared_path("media", "images", "multi_face.jpg"), folder)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    video = shared_path("media", "clips", "single_face.mp4")
    out = tmp_path / "out" / "expr"
    res = CliRunner().invoke(app, ["expression", "predict", str(folder), str(video), "--out", str(out),
                                   "--weights", str(weights), "--frames", "3", "--annotate", "--tta", "none"])
    assert res.exit_code == 1, res.output                     # the broken file is reported, the rest done
    assert "broken.jpg" in res.output
    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    photo = [r for r in rows if r["file"].endswith("multi_face.jpg")]
    clip = [r for r in rows if r["file"].endswith("single_face.mp4")]
    assert len(photo) >= 2 and {r["frame"] for r in clip} == {"0", "1", "2"}
    assert all(r["label"] in CLASSES for r in rows)
    data = json.loads(out.with_suffix(".json").read_text())
    vid = [r for r in data["results"] if r["kind"] == "video"][0]
    assert vid["tracks"] and vid["tracks"][0]["frames"] >= 2
    annotated = out.parent / "expr_annotated"
    assert (annotated / "multi_face_expression.jpg").is_file()
    from affectlens.media import probe

    src, dst = probe(video), probe(annotated / "single_face_expression.mp4")
    assert dst.frame_count == src.frame_count and (dst.audio is None) == (src.audio is None)


@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="shipped weights not built yet")
def test_shipped_weights_read_real_fer_faces():
    import cv2

    root = shared_path("fer2013", "test")
    faces, labels = [], []
    for k, cls in enumerate(CLASSES):
        for f in sorted((root / cls).glob("PrivateTest_*"))[:10]:
            faces.append(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE))
            labels.append(k)
    out = predict_images(faces)
    acc = np.mean([CLASSES.index(o["label"]) == y for o, y in zip(out, labels)])
    assert acc > 0.45 and DEFAULT_WEIGHTS.stat().st_size < 20e6


def test_crops_take_each_file_as_one_face_including_tiff(tmp_path, weights):
    """--crops: a 48x48 crop in which no detector finds a face is still classified, TIFF included."""
    import json
    from pathlib import Path

    from affectlens.media.image import write_image
    from tests.reliability.conftest import invoke

    rng = np.random.default_rng(0)
    files = [write_image(tmp_path / "in" / f"face{i}{ext}", rng.integers(0, 255, (48, 48, 3), dtype=np.uint8))
             for i, ext in enumerate((".png", ".tif", ".tiff"))]
    write_image(tmp_path / "in" / "big.jpg", rng.integers(0, 255, (120, 90), dtype=np.uint8))  # grey, any size
    r = invoke(["expression", "predict", tmp_path / "in", "--crops", "--weights", weights, "--out", tmp_path / "p",
                "--tta", "none"])
    assert r.code == 0, r.err
    rows = json.loads((tmp_path / "p.json").read_text())["results"]
    assert sorted(Path(x["file"]).name for x in rows) == ["big.jpg", "face0.png", "face1.tif", "face2.tiff"]
    assert all(len(x["rows"]) == 1 and x["rows"][0]["det_score"] == 1.0 for x in rows)
    found = invoke(["expression", "predict", files[0], "--weights", weights, "--out", tmp_path / "q"])
    assert found.code == 0 and json.loads((tmp_path / "q.json").read_text())["results"][0]["rows"] == []
