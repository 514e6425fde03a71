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
    SHIPPED,
    ExpressionPredictor,
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


@pytest.mark.skipif(not SHIPPED["fer2013"].is_file(), reason="shipped FER2013 weights not built yet")
def test_shipped_fer2013_weights_read_real_fer_faces():
    import cv2

    root = shared_path("fer2013", "test")
    faces, labels = [], []
    for k, cls in enumerate(CLASSES):
        for f in sorted((root / cls).glob("PrivateTest_*"))[:10]:
            faces.append(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE))
            labels.append(k)
    out = predict_images(faces, label_set="fer2013")
    acc = np.mean([CLASSES.index(o["label"]) == y for o, y in zip(out, labels)])
    assert acc > 0.45 and SHIPPED["fer2013"].stat().st_size < 20e6


@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="shipped FER+ weights not built yet")
def test_default_model_is_the_ferplus_one_and_reads_real_faces():
    """The default predicts FER+'s 8 classes and agrees with the ten annotators' majority on FER+ Test."""
    from affectlens.expression.data import FERPLUS_CLASSES, ferplus_split, load_fer, read_ferplus

    root = shared_path("fer2013")
    pred = ExpressionPredictor(detector="none")
    assert pred.label_set == "ferplus" and pred.classes == FERPLUS_CLASSES and "ferplus" in pred.model_name
    part, _ = ferplus_split(load_fer(root), read_ferplus(root / "ferplus.csv"), "PrivateTest", "ferplus-majority")
    pick = np.random.default_rng(0).choice(len(part), 400, replace=False)  # the split is ordered by class
    out = predict_images(list(part.images[pick]))
    acc = np.mean([FERPLUS_CLASSES.index(o["label"]) == y for o, y in zip(out, part.labels[pick])])
    assert acc > 0.78 and set(out[0]["probs"]) == set(FERPLUS_CLASSES)
    assert DEFAULT_WEIGHTS.stat().st_size < 20e6


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


@pytest.mark.skipif(not (DEFAULT_WEIGHTS.is_file() and SHIPPED["fer2013"].is_file()), reason="shipped weights not built yet")
def test_label_set_picks_the_shipped_model_and_every_row_names_it(tmp_path):
    """Default: the 8-class FER+ model; --label-set fer2013: the 7-class one. Rows, columns and the
    JSON say which model and label set produced them; --weights wins over --label-set."""
    from affectlens.expression.data import FERPLUS_CLASSES
    from affectlens.media.image import write_image
    from tests.reliability.conftest import invoke

    face = write_image(tmp_path / "face.png", np.random.default_rng(1).integers(0, 255, (48, 48), dtype=np.uint8))
    for label_set, classes in (("ferplus", FERPLUS_CLASSES), ("fer2013", CLASSES)):
        r = invoke(["expression", "predict", face, "--crops", "--label-set", label_set, "--out", tmp_path / label_set])
        assert r.code == 0, r.err
        with (tmp_path / f"{label_set}.csv").open() as fh:
            row = next(csv.DictReader(fh))
        assert row["label_set"] == label_set and row["model"] == f"{SHIPPED[label_set].name} (shipped)"
        assert row["label"] in classes and [c for c in row if c.startswith("p_")] == [f"p_{c}" for c in classes]
        meta = json.loads((tmp_path / f"{label_set}.json").read_text())
        assert meta["label_set"] == label_set and meta["classes"] == list(classes)
    bad = invoke(["expression", "predict", face, "--crops", "--label-set", "affectnet", "--out", tmp_path / "x"])
    assert bad.code != 0 and "label-set" in bad.err and "Traceback" not in bad.err


def test_a_checkpoint_of_another_class_count_is_one_clear_error(tmp_path):
    from affectlens.errors import DataError
    from affectlens.expression.predict import load_model

    cfg = expression_tiny(num_classes=5)
    path = save_checkpoint(tmp_path / "five.pt", build_model(cfg), cfg)
    with pytest.raises(DataError, match="predicts 5 classes"):
        load_model(path)
