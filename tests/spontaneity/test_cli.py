"""The commands end to end on a small synthetic set: synth → manifest → cv → train → predict."""
import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from affectlens.cli import app
from tests.conftest import shared_path

runner = CliRunner()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp("spont") / "syn"
    r = runner.invoke(app, ["synth", "spontaneity", str(out), "--subjects", "4", "--per-subject", "4"])
    assert r.exit_code == 0, r.output
    return out


def test_manifest_from_tree_and_cv_prints_table_1(synthetic, tmp_path):
    r = runner.invoke(app, ["spontaneity", "manifest", str(synthetic), "--out", str(tmp_path / "m.csv")])
    assert r.exit_code == 0, r.output
    assert "16 pairs (8 posed, 8 spontaneous) from 4 subjects" in r.output
    r = runner.invoke(app, ["spontaneity", "cv", str(tmp_path / "m.csv"), "--folds", "2", "--seeds", "1",
                            "--epochs", "1", "--size", "tiny", "--out", str(tmp_path / "cv")])
    assert r.exit_code == 0, r.output
    for method in ("DiffCNN", "CompCNN-Sub@3", "CompCNN-Comb-SVM", "2.04 / 5.95", "3.70 / 8.47"):
        assert method in r.output
    res = json.loads((tmp_path / "cv" / "results.json").read_text())
    assert res["folds"] == 2 and len(res["summary"]) == 9
    assert (tmp_path / "cv" / "errors.png").stat().st_size > 1000


def test_train_then_predict_images_and_video(synthetic, tmp_path):
    models = tmp_path / "models"
    r = runner.invoke(app, ["spontaneity", "train", str(synthetic / "manifest.csv"), "--out", str(models),
                            "--size", "tiny", "--epochs", "1"])
    assert r.exit_code == 0, r.output
    assert len(list(models.glob("*.pt"))) == 9 and len(list((models / "runs").glob("*/last.pt"))) == 7
    import torch

    from affectlens.spontaneity.predict import load_model
    from affectlens.training.checkpoint import FORMAT

    svm = torch.load(models / "CompCNN-Sub-SVM.pt", weights_only=True)  # one payload, no pickled objects
    assert svm["format"] == FORMAT and svm["state_dict"] == {} and svm["model"] == {"method": "CompCNN-Sub-SVM"}
    assert load_model(models / "CompCNN-Sub-SVM.pt").members == ("CompCNN-Sub@1", "CompCNN-Sub@2", "CompCNN-Sub@3")
    net = torch.load(models / "DiffCNN.pt", weights_only=True)
    assert net["format"] == FORMAT and net["epoch"] == 1 and "optimizer" not in net and net["train"]["epochs"] == 1
    onset = next(synthetic.rglob("onset.png"))
    apex = onset.with_name("apex.png")
    for extra in ([], ["--method", "CompCNN-Sub@2"]):
        r = runner.invoke(app, ["spontaneity", "predict", str(onset), str(apex), "-c", str(models), "--json", *extra])
        assert r.exit_code == 0, r.output
        out = json.loads(r.output)
        assert out["label"] in ("posed", "spontaneous") and 0.0 <= out["p_spontaneous"] <= 1.0
    r = runner.invoke(app, ["spontaneity", "predict", str(onset), str(apex), "-c", str(models / "DiffCNN.pt")])
    assert r.exit_code == 0 and "DiffCNN" in r.output
    r = runner.invoke(app, ["spontaneity", "predict", str(onset), str(apex), "-c", str(models), "--method", "Nope"])
    assert r.exit_code != 0


def test_predict_on_two_video_frames(synthetic, tmp_path):
    from affectlens.media import write_video
    from affectlens.spontaneity.predict import predict_pair, video_pair
    from affectlens.training import save_checkpoint
    from affectlens.spontaneity.model import SpontaneityNet, spontaneity_tiny

    photo = cv2.cvtColor(cv2.imread(str(shared_path("media", "images", "single_face.jpg"))), cv2.COLOR_BGR2RGB)
    photo = cv2.resize(photo, (320, 320))
    frames = np.stack([photo, photo, np.roll(photo, 6, axis=1)])
    video = write_video(tmp_path / "clip.mp4", frames, fps=10) or tmp_path / "clip.mp4"
    onset, apex = video_pair(tmp_path / "clip.mp4", 0, 2)
    assert onset.shape == apex.shape == (44, 44)
    ckpt = save_checkpoint(tmp_path / "net.pt", SpontaneityNet(spontaneity_tiny()), spontaneity_tiny())
    out = predict_pair(onset, apex, ckpt)
    assert out["method"] == "CompCNN-Sub@1" and 0 <= out["p_spontaneous"] <= 1
    from affectlens.errors import MediaError

    with pytest.raises(MediaError, match="fewer than"):
        video_pair(tmp_path / "clip.mp4", 0, 9)


def test_bad_manifest_is_one_line_error(tmp_path):
    from affectlens.cli import main

    bad = tmp_path / "m.csv"
    bad.write_text("subject,onset,apex,label\nS1,a.png,b.png,maybe\n")
    with pytest.raises(SystemExit) as e:
        main(["spontaneity", "cv", str(bad), "--size", "tiny"])
    assert e.value.code == 1


def test_yaml_config_and_flags(tmp_path):
    from affectlens.errors import DataError
    from affectlens.spontaneity.recipe import load_cv_config

    c = load_cv_config(None, folds=4, size="tiny")
    assert c.folds == 4 and c.train.size == "tiny" and c.seeds == 3
    cfg = tmp_path / "c.yaml"
    cfg.write_text("protocol: loso\nepochs: 3\nsize: tiny\n")
    c = load_cv_config(cfg, epochs=5, lr=None)
    assert c.protocol == "loso" and c.train.epochs == 5 and c.train.size == "tiny" and c.train.lr == 3e-3
    cfg.write_text("epochz: 3\n")
    with pytest.raises(DataError, match="unknown key"):
        load_cv_config(cfg)
