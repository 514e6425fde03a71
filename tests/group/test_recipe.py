"""Recipe: train (checkpoints + resume), eval (JSON + PNG), predict (clip / timeline, JSON + CSV), CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from affectlens.group.ablation import PAPER_TABLE2, format_table2
from affectlens.group.recipe import (TrainConfig, evaluate, load_config, mix_synthetic,
                                     predict, train, window_starts)
from affectlens.group.synth import SynthSpec, generate_dataset, write_long_video
from tests.conftest import shared_path

SPEC = SynthSpec(width=48, height=48, fps=5, seconds=2.0, min_faces=3, max_faces=4)


def tiny_cfg(**kw) -> TrainConfig:
    base = dict(size="tiny", modality="fusion", frames=5, img_size=32, epochs=2, batch_size=3, optimizer="adamw",
                lr=1e-3, freeze_vit_epochs=1, threads=1)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("grp")
    generate_dataset(root / "real", 6, SPEC, seed=0, progress=False)
    generate_dataset(root / "syn", 4, SPEC, seed=5, prefix="s", progress=False)
    r = train(tiny_cfg(epochs=1, synthetic_ratio=0.25), root / "real", root / "run", val=root / "real",
              synthetic=root / "syn", progress=False, log=lambda s: None)
    return root, r


def test_train_writes_checkpoints_eval_and_mixes_synthetic(run):
    root, r = run
    # best.pt is chosen on 3 real clips held out (one per label); 3 real + round(0.25/0.75·3) = 1 synthetic train
    assert r["n_train"] == 4 and r["selected_on"] == "3 training clips held out (10%)"
    assert r["eval"]["selected_on"] == r["selected_on"]
    assert (root / "run" / "best.pt").exists() and (root / "run" / "last.pt").exists()
    ev = json.loads((root / "run" / "eval" / "eval.json").read_text())
    assert set(ev["per_class"]) == {"Positive", "Neutral", "Negative"} and np.array(ev["confusion_matrix"]).sum() == 6
    assert (root / "run" / "eval" / "confusion.png").stat().st_size > 1000
    assert (root / "run" / "curves.png").exists()
    assert (root / "run" / "metrics.csv").exists() and json.loads((root / "run" / "metrics.json").read_text())["epochs"] == 1
    assert r["is_global_zero"] and r["best_epoch"]["metric"] == "val_acc"


def test_resume_continues_from_last_epoch(run, capsys):
    root, _ = run
    r = train(tiny_cfg(epochs=2, synthetic_ratio=0.25), root / "real", root / "run", val=root / "real",
              synthetic=root / "syn", progress=False, log=lambda s: None)
    err = capsys.readouterr().err
    assert "resuming after epoch 1" in err and "epoch 1/2" not in err and err.count("epoch 2/2") == 1
    assert len(r["history"]["train_loss"]) == 2


def test_eval_matches_sklearn(run, tmp_path):
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    root, _ = run
    rep = evaluate(root / "run" / "last.pt", root / "real", tmp_path / "ev", progress=False, log=lambda s: None)
    preds = json.loads((tmp_path / "ev" / "eval.json").read_text())
    cm = np.array(preds["confusion_matrix"])
    y_true = np.repeat(np.arange(3), cm.sum(1))
    y_pred = np.concatenate([np.repeat(np.arange(3), row) for row in cm])
    assert rep["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    f1 = f1_score(y_true, y_pred, average=None, labels=[0, 1, 2], zero_division=0)
    assert [rep["per_class"][c]["f1"] for c in ("Positive", "Neutral", "Negative")] == pytest.approx(f1)
    assert (cm == confusion_matrix(y_true, y_pred, labels=[0, 1, 2])).all()


def test_predict_clip_and_timeline(run, tmp_path):
    root, _ = run
    long = write_long_video(tmp_path / "long.mp4", [0, 1, 2], SPEC, seed=1)  # 6 s
    clip = root / "real" / "clips" / "synt_00000.mp4"
    out = predict(root / "run" / "best.pt", [clip, long, tmp_path / "missing.mp4"], tmp_path / "pred",
                  window=2.0, hop=1.0, log=lambda s: None)
    assert out["checkpoint"].endswith("best.pt") and len(out["failed"]) == 1
    single, timeline = out["results"]
    assert single["mode"] == "clip" and len(single["windows"]) == 1
    assert sum(single["probs"].values()) == pytest.approx(1, abs=1e-5)
    assert timeline["mode"] == "timeline" and [w["start"] for w in timeline["windows"]] == [0, 1, 2, 3, 4]
    rows = (tmp_path / "pred" / "predictions.csv").read_text().splitlines()
    assert rows[0].startswith("video,start,end,p_Positive") and len(rows) == 1 + 6
    assert (tmp_path / "pred" / "long_timeline.png").exists()


def test_window_starts_cover_the_video():
    assert window_starts(4.0, 5.0, 2.5).tolist() == [0.0]
    assert window_starts(12.0, 5.0, 2.5).tolist() == [0.0, 2.5, 5.0, 7.0]


def test_mix_ratio_matches_the_paper():
    real, syn = list(range(2661)), list(range(10_000, 12_661))
    assert len(mix_synthetic(real, syn, 0.3, 0)) - 2661 == 1140  # Table 1: 1140 synthetic of 3801


def test_config_files_load():
    from pathlib import Path

    configs = Path(__file__).resolve().parents[2] / "configs"
    paper = load_config(configs / "group_paper.yaml")
    assert (paper.optimizer, paper.lr, paper.momentum, paper.batch_size, paper.freeze_vit_epochs,
            paper.synthetic_ratio, paper.size) == ("sgd", 1e-5, 0.9, 4, 10, 0.3, "paper")
    for name in ("group_paper_75.yaml", "group_tiny.yaml"):
        load_config(configs / name)


@pytest.mark.parametrize("text, says", [
    ("epochs: ten\n", "epochs: expected int, got 'ten'"),
    ("lr: 0.1\nwat: 3\n", "unknown key 'wat' for TrainConfig"),
    ("epochs: [3\n", "not valid YAML (line 2"),
    ("optimizer: adam\n", "optimizer: expected 'sgd' | 'adamw', got 'adam'"),
    ("size: paper\nvit_stem: conv\n", "vit_stem is a tiny-size option"),
    ("lr: !!python/object:os.system ls\n", "not valid YAML"),
])
def test_a_bad_config_is_one_line_naming_the_file_and_key(tmp_path, text, says):
    from affectlens.errors import DataError

    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(DataError) as e:
        load_config(bad)
    assert str(e.value).startswith(f"{bad}: ") and says in str(e.value) and "\n" not in str(e.value)
    assert load_config(None, epochs=3).epochs == 3


def test_table2_layout():
    text = format_table2({"video": {5: 0.5}}, (5, 75))
    assert "73.62%" in text and "50.00%" in text and len(text.splitlines()) == 2 + len(PAPER_TABLE2)


def test_cli_predict_on_real_clip_gives_a_timeline(run, tmp_path):
    """Issue item 8: `affectlens group predict` end to end on real footage (10-s clip → timeline)."""
    from typer.testing import CliRunner

    from affectlens.cli import app

    clip = shared_path("media", "clips", "short_hamilton_clip.mp4")
    root, _ = run
    res = CliRunner().invoke(app, ["group", "predict", str(root / "run" / "best.pt"), str(clip), "--out",
                                   str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "p" / "predictions.json").read_text())
    assert out["results"][0]["mode"] == "timeline" and len(out["results"][0]["windows"]) >= 3


def test_cli_features_reports_bad_rows_and_exits_nonzero(run, tmp_path):
    from typer.testing import CliRunner

    from affectlens.cli import app

    root, _ = run
    lab = tmp_path / "labels.txt"
    lab.write_text("Vid_name Label\nsynt_00000.mp4 1\nghost.mp4 2\n")
    res = CliRunner().invoke(app, ["group", "features", str(lab), "--clips", str(root / "real" / "clips"),
                                   "--size", "32", "--cache", str(tmp_path / "c")])
    assert res.exit_code == 1 and "ghost.mp4" in res.output and ":3:" in res.output
    assert len(list((tmp_path / "c").rglob("*.npz"))) == 1


def test_tiny_vit_stem_option():
    assert TrainConfig(size="tiny").model_config().vit_stem == "convpool"  # the hybrid ViT is the default
    old = TrainConfig(size="tiny", vit_stem="patch").model_config()
    assert (old.vit_stem, old.vit_patch, old.vit_pool) == ("patch", 8, "avg")
    with pytest.raises(ValueError, match="tiny"):
        TrainConfig(size="paper", vit_stem="conv").model_config()  # the paper size keeps ViT-L/14's patches


def test_hold_out_is_stratified_seeded_and_disjoint():
    from pathlib import Path

    from affectlens.group.data import VgafItem
    from affectlens.group.recipe import hold_out

    items = [VgafItem(f"c{i}", Path(f"c{i}.mp4"), label, i) for i, label in enumerate([0] * 30 + [1] * 10 + [2] * 1)]
    kept, held = hold_out(items, 0.1, seed=0)
    names = [it.name for it in kept], [it.name for it in held]
    assert sorted(names[0] + names[1]) == sorted(it.name for it in items) and not set(names[0]) & set(names[1])
    assert [sum(it.label == k for it in held) for k in range(3)] == [3, 1, 0]  # a lone clip is never held out
    assert hold_out(items, 0.1, seed=0) == (kept, held) and hold_out(items, 0.1, seed=1)[1] != held


def test_select_on_val_selects_and_reports_on_val(run, tmp_path):
    root, _ = run
    r = train(tiny_cfg(epochs=1, select_on="val"), root / "real", tmp_path / "v", val=root / "real",
              progress=False, log=lambda s: None)
    assert r["n_train"] == 6 and r["selected_on"] == "val" and r["eval"]["selected_on"] == "val"


def test_table1_layout_and_the_sweep_cli_refuses_bad_ratios():
    from affectlens.group.ablation import PAPER_TABLE1, format_table1
    from tests.reliability.conftest import invoke

    text = format_table1({0.3: 0.7321, 0.25: 0.7})
    lines = text.splitlines()
    assert len(lines) == 2 + len(PAPER_TABLE1) + 1 and "73.21%" in text and "75.07%" in text
    assert [line.split()[0] for line in lines[2:]] == ["10%", "20%", "25%", "30%", "40%", "50%"]
    assert lines[4].split()[1:] == ["70.00%", "—"]  # a ratio the paper did not run
    r = invoke(["group", "sweep", "a", "--val", "b", "--synthetic", "c", "--ratios", "0.3,1.5"])
    assert r.code == 2 and len(r.err_lines) == 1 and "--ratios" in r.err_lines[0]

