"""End to end through the CLI on tiny synthetic shards written in the real TFRecord formats."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from affectlens.cli import main
from affectlens.videotag import data as D
from affectlens.videotag.synth import synth_video_level


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("yt8m")
    synth_video_level(root, num_shards=3, videos_per_shard=40, num_classes=8, noise=0.8)
    return root


def _run(argv):
    try:
        main(argv)
    except SystemExit as e:
        return e.code
    return 0


def test_train_eval_predict(shards, tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("model: moe\nnum_experts: 2\nepochs: 3\nbatch_size: 32\nlr: 0.01\nthreads: 1\n")
    run = tmp_path / "run"
    assert _run(["videotag", "train", "--data", str(shards), "--config", str(cfg), "--out", str(run),
                 "--train-shards", "2"]) == 0
    summary = json.loads((run / "metrics.json").read_text())
    metrics = summary["val"]
    assert set(metrics) >= {"gap", "hit_at_one", "perr", "map"} and metrics["videos"] == 40
    assert metrics["gap"] > 0.3 and summary["best_epoch"] == summary["best"]["epoch"]
    assert metrics["gap"] == pytest.approx(summary["best"]["value"])  # best.pt's GAP, streamed, = the selection figure
    assert summary["best"]["metric"] == "val_gap" and len(summary["history"]["val_gap"]) == 3
    capsys.readouterr()
    assert _run(["videotag", "eval", str(run / "best.pt"), "--data", str(shards), "--train-shards", "2"]) == 0
    out = capsys.readouterr().out
    assert "GAP" in out and "Hit@1" in out and "PERR" in out and "mAP" in out
    csv_path = tmp_path / "predictions.csv"
    assert _run(["videotag", "predict", str(run / "best.pt"), "--data", str(shards), "--train-shards", "2",
                 "--out", str(csv_path)]) == 0
    rows = list(csv.reader(csv_path.open()))
    assert rows[0] == ["VideoId", "LabelConfidencePairs"] and len(rows) == 41
    pairs = rows[1][1].split()
    labels, conf = [int(x) for x in pairs[0::2]], [float(x) for x in pairs[1::2]]
    assert len(labels) == 20 and conf == sorted(conf, reverse=True) and all(0 <= l < 3862 for l in labels)


def test_frame_level_synth_and_dbof(shards, tmp_path):
    frames = tmp_path / "frames"
    assert _run(["synth", "yt8m-frames", str(shards), str(frames), "--frames", "6"]) == 0
    videos = list(D.iter_frame_level(D.shard_paths(frames)))
    assert len(videos) == 120 and videos[0].rgb.shape[1] == 1024 and 3 <= len(videos[0].rgb) <= 6
    ref = D.read_video_level(D.shard_paths(shards)[:1])
    assert np.abs(videos[0].rgb.mean(0) - ref.rgb[0]).mean() < 0.05  # frames average to the video feature
    assert json.loads((frames / "SYNTHETIC.json").read_text())["synthetic"] is True
    cfg = tmp_path / "dbof.yaml"
    cfg.write_text("model: dbof\nprojection: 32\nhidden: 16\nsamples: 4\nepochs: 2\nbatch_size: 32\nthreads: 1\n")
    assert _run(["videotag", "train", "--data", str(frames), "--config", str(cfg), "--out", str(tmp_path / "r"),
                 "--train-shards", "2"]) == 0
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["val"]["videos"] == 40
    assert _run(["videotag", "eval", str(tmp_path / "r" / "best.pt"), "--data", str(frames), "--train-shards", "2"]) == 0


def test_synth_videotext_is_keyed_and_labelled(shards, tmp_path):
    out = tmp_path / "text.jsonl"
    assert _run(["synth", "videotext", str(shards), str(out), "--leak", "1.0", "--coverage", "1.0"]) == 0
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    ids = D.read_video_level(D.shard_paths(shards)).ids
    assert [r["id"] for r in rows] == ids and all(r["synthetic"] for r in rows)
    assert json.loads(out.with_suffix(".SYNTHETIC.json").read_text())["leak"] == 1.0


def test_bad_input_exits_nonzero_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.tfrecord"
    bad.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00garbage")
    assert _run(["videotag", "train", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--train-shards", "1"]) == 1
    err = capsys.readouterr().err
    assert "bad.tfrecord" in err and "byte offset 0" in err


def test_ablation_end_to_end_on_synthetic_text(shards, tmp_path):
    from affectlens.videotag.synth import synth_videotext
    from affectlens.videotag.ablation import run_ablation

    paths = D.shard_paths(shards)
    text = synth_videotext(paths, tmp_path / "t.jsonl", leak=0.5, coverage=1.0)
    res = run_ablation(paths[:2], paths[2:], text, tmp_path / "abl", epochs=2, vector_dim=8, min_class_count=1,
                       log=lambda s: None)
    assert res["synthetic_text"] is True
    assert list(res["table5"]) == ["visual + audio", "visual", "audio", "visual + audio + keywords",
                                   "visual + audio + keywords + titles", "keywords + titles"]
    overlap = res["label_overlap"]  # leak 0.5: about half the keyword lists carry a label word
    assert overlap["videos_with_keywords"] > 0 and 0.2 < overlap["share_with_a_label_word"] < 0.95
    assert set(res["table6"]) == {"TextCNN (titles)", "Keywords (histogram)", "Unigram (titles)"}
    # leaked label names make text informative: the unigram model must beat chance clearly
    assert res["table6"]["Unigram (titles)"]["hit_at_one"] > 0.5
    assert (tmp_path / "abl" / "ablation.json").is_file()


def test_val_and_test_lists_per_class_ap_and_named_predictions(shards, tmp_path, capsys):
    """--data/--val/--test as files and globs; eval --per-class against the metric; predict --vocabulary."""
    from affectlens.metrics.multilabel import average_precision_per_class
    from affectlens.videotag import recipe

    files = D.shard_paths(shards)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("model: logistic\nepochs: 2\nbatch_size: 32\nnum_workers: 0\nthreads: 1\n")
    run = tmp_path / "run"
    assert _run(["videotag", "train", "--data", str(files[0]), "--val", str(files[1]), "--test",
                 str(shards / "*2.tfrecord"), "--config", str(cfg), "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "logistic — validation" in out and "logistic — test" in out and "best.pt = epoch" in out
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["val"]["videos"] == summary["test"]["videos"] == 40 and summary["train_videos"] == 40

    ap_csv = tmp_path / "ap.csv"
    assert _run(["videotag", "eval", str(run / "best.pt"), "--data", str(files[2]), "--per-class", str(ap_csv)]) == 0
    rows = list(csv.DictReader(ap_csv.open()))
    model, classes, tc = recipe.load_model(run / "best.pt")
    split = recipe.load_split([files[2]], tc.modalities)
    want = average_precision_per_class(recipe.predict_scores(model, split, classes), split.y)
    assert len(rows) == int(np.isfinite(want).sum()) and [float(r["ap"]) for r in rows] == sorted(
        (float(r["ap"]) for r in rows), reverse=True)
    for r in rows:
        assert float(r["ap"]) == pytest.approx(want[int(r["class"])], abs=1e-6)
        assert int(r["positives"]) == int(split.y[:, int(r["class"])].sum())

    vocab = tmp_path / "vocabulary.csv"
    vocab.write_text("Index,Name\n" + "".join(f"{i},name{i}\n" for i in range(3862)))
    pred = tmp_path / "p.csv"
    assert _run(["videotag", "predict", str(run / "best.pt"), "--data", str(files[2]), "--out", str(pred),
                 "--vocabulary", str(vocab), "--top-k", "3"]) == 0
    table = list(csv.reader(pred.open()))
    assert table[0] == ["VideoId", "LabelConfidencePairs", "Labels"] and len(table) == 41
    ids = [int(x) for x in table[1][1].split()[0::2]]
    assert table[1][2] == "; ".join(f"name{i}" for i in ids) and len(ids) == 3
