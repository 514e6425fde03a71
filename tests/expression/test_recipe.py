"""Recipe: augmentation, TTA views, LR schedule, a tiny train → resume → eval round trip."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from affectlens.errors import AffectlensError, DataError
from affectlens.expression.data import FerSet
from affectlens.expression.model import expression_compact
from affectlens.expression.recipe import (
    TrainConfig,
    augment,
    evaluate,
    load_train_config,
    lr_at,
    train,
    tta_views,
)
from affectlens.training.checkpoint import load_checkpoint
from tests.training.tiny import StopAfter


def _toy_fer(n_per_split=(96, 32, 32), seed=0) -> FerSet:
    """Two separable 'expressions': a bright mouth-like band low or high in the face."""
    rng = np.random.default_rng(seed)
    images, labels, usage = [], [], []
    for split, n in zip(("Training", "PublicTest", "PrivateTest"), n_per_split):
        y = rng.integers(0, 2, n) * 3                      # classes 0 (angry) and 3 (happy)
        x = rng.integers(60, 120, size=(n, 48, 48))
        x[y == 0, 8:16] += 120
        x[y == 3, 32:40] += 120
        images.append(x.clip(0, 255).astype(np.uint8))
        labels.append(y)
        usage += [split] * n
    ids = np.array([f"toy{i}" for i in range(len(usage))])
    return FerSet(np.concatenate(images), np.concatenate(labels).astype(np.int64), np.array(usage), ids)


def test_augment_is_seeded_and_shaped():
    cfg, mcfg = TrainConfig(), expression_compact()
    x = torch.randint(0, 256, (8, 1, 48, 48), dtype=torch.uint8)
    a = augment(x, cfg, mcfg, torch.Generator().manual_seed(1))
    b = augment(x, cfg, mcfg, torch.Generator().manual_seed(1))
    assert a.shape == (8, 1, 40, 40) and a.dtype == torch.float32 and torch.equal(a, b)


def test_tta_views():
    x = torch.arange(48 * 48, dtype=torch.float32).reshape(1, 1, 48, 48)
    assert len(tta_views(x, 40, "none")) == 1
    flip = tta_views(x, 40, "flip")
    assert torch.equal(flip[1], flip[0].flip(-1))
    ten = tta_views(x, 40, "tencrop")
    assert len(ten) == 10 and all(v.shape == (1, 1, 40, 40) for v in ten)
    assert torch.equal(ten[0], x[..., :40, :40]) and torch.equal(ten[3], x[..., 8:, 8:])
    with pytest.raises(ValueError):
        tta_views(x, 40, "twentycrop")


def test_lr_schedule_warmup_constant_decay():
    cfg = TrainConfig(lr=1.0, warmup_epochs=1, decay_frac=0.5)
    lrs = [lr_at(s, 100, 10, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(v == 1.0 for v in lrs[10:50])
    assert lrs[50] == pytest.approx(1.0) and lrs[-1] < 0.02 and all(np.diff(lrs[50:]) <= 0)


def test_config_file_and_unknown_keys(tmp_path):
    (tmp_path / "c.yaml").write_text("epochs: 3\nvariant: cnn\n")
    cfg = load_train_config(tmp_path / "c.yaml", out="x", epochs=None)
    assert cfg.epochs == 3 and cfg.variant == "cnn" and cfg.out == "x"
    for text, match in (("epochz: 3\n", "unknown key 'epochz'"), ("epochs: ten\n", "epochs: expected int"),
                        ("lr: 1e-3x\n", "lr: expected float"), ("size: huge\n", "size must be one of"),
                        ("epochs: [3\n", "not valid YAML"), ("lr: !!python/object:os.system x\n", "not valid YAML")):
        (tmp_path / "bad.yaml").write_text(text)
        with pytest.raises(DataError, match=match) as e:
            load_train_config(tmp_path / "bad.yaml")
        assert str(e.value).startswith(str(tmp_path / "bad.yaml")) and "\n" not in str(e.value)
    (tmp_path / "ok.yaml").write_text("lr: 1e-3\n")  # YAML reads 1e-3 as text; it still is a number
    assert load_train_config(tmp_path / "ok.yaml").lr == 1e-3


def test_train_resume_and_evaluate(tmp_path):
    fer = _toy_fer()
    # CNN-only learns this toy in a few dozen steps (the BiLSTM variants' learning is tested in test_model)
    cfg = TrainConfig(out=str(tmp_path / "run"), size="tiny", variant="cnn", epochs=2, batch_size=16, lr=5e-3,
                      erase_p=0.0, warmup_epochs=0.2, eval_tta="flip")
    cfg = TrainConfig(**{**cfg.__dict__, "epochs": 4})
    first = train(cfg, fer=fer, progress=False, callbacks=[StopAfter(2)])  # interrupted after epoch 2
    assert first.epochs == 2 and (tmp_path / "run" / "best.pt").is_file()
    more = train(cfg, fer=fer, progress=False)  # the same command again: resumes at epoch 3
    assert more.epochs == 4 and len(more.history["val_acc"]) == 4
    assert more.best["value"] > 0.9
    whole = train(TrainConfig(**{**cfg.__dict__, "epochs": 4, "out": str(tmp_path / "whole")}), fer=fer, progress=False)
    a, b = (load_checkpoint(tmp_path / d / "last.pt")["state_dict"] for d in ("run", "whole"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # resume is exact: the same weights as one 4-epoch run
    with pytest.raises(AffectlensError, match="another recipe"):
        train(TrainConfig(**{**cfg.__dict__, "epochs": 4, "lr": 1e-3}), fer=fer, progress=False)
    res = evaluate(tmp_path / "run" / "last.pt", "unused", tmp_path / "eval", fer=fer, tta=("none", "tencrop"))
    rep = res["reports"]["tencrop"]
    assert rep["accuracy"] > 0.9 and np.asarray(rep["confusion_matrix"]).sum() == 32
    assert (tmp_path / "eval" / "confusion_matrix.png").stat().st_size > 1000
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["split"] == "PrivateTest"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
def test_one_gpu_step_writes_one_checkpoint(tmp_path):
    from affectlens.training.hardware import Hardware

    cfg = TrainConfig(out=str(tmp_path / "gpu"), size="tiny", variant="cnn_bilstm", epochs=1, batch_size=16,
                      erase_p=0.0, limit_train=32)
    res = train(cfg, fer=_toy_fer(), progress=False, hardware=Hardware(accelerator="gpu"))
    assert res.epochs == 1 and load_checkpoint(tmp_path / "gpu" / "last.pt")["epoch"] == 1


def test_warm_start_copies_the_net_and_maps_the_classifier_by_emotion(tmp_path):
    from affectlens.expression.data import CLASSES, FERPLUS_CLASSES
    from affectlens.expression.model import ExpressionEnsemble, build_model, expression_tiny
    from affectlens.expression.recipe import warm_start
    from affectlens.training import save_checkpoint

    torch.manual_seed(0)
    kw = dict(pool="attention", feature_map=16)
    src = build_model(expression_tiny(num_classes=8, **kw)).eval()
    save_checkpoint(tmp_path / "ferplus.pt", src, src.cfg)
    net = build_model(expression_tiny(num_classes=7, **kw)).eval()
    assert warm_start(net, tmp_path / "ferplus.pt") == []            # FER+ has every FER2013 emotion
    x = torch.randn(5, 1, 24, 24)
    with torch.no_grad():
        cols = [FERPLUS_CLASSES.index({"angry": "anger", "happy": "happiness", "sad": "sadness"}.get(c, c))
                for c in CLASSES]
        assert torch.allclose(net(x), src(x)[:, cols], atol=1e-6)  # the same net, FER2013's columns
    # the other way round contempt has no FER2013 row and starts fresh
    save_checkpoint(tmp_path / "fer2013.pt", net, net.cfg)
    back = build_model(expression_tiny(num_classes=8, **kw))
    assert warm_start(back, tmp_path / "fer2013.pt") == [f"head.{len(back.head) - 1} row contempt"]
    # another architecture, or an ensemble, is one clear error naming the file
    with pytest.raises(DataError, match="fer2013.pt.*another architecture"):
        warm_start(build_model(expression_tiny(num_classes=8, pool="mean")), tmp_path / "fer2013.pt")
    ens = ExpressionEnsemble([src.cfg, src.cfg])
    save_checkpoint(tmp_path / "ens.pt", ens, src.cfg, members=2)
    with pytest.raises(DataError, match="ens.pt.*ensemble"):
        warm_start(build_model(src.cfg), tmp_path / "ens.pt")


def test_a_fine_tuned_run_starts_from_its_source(tmp_path):
    fer = _toy_fer()
    base = dict(size="tiny", variant="cnn", batch_size=16, erase_p=0.0, warmup_epochs=0.2, eval_tta="none")
    src = train(TrainConfig(out=str(tmp_path / "src"), epochs=4, lr=5e-3, **base), fer=fer, progress=False)
    assert src.best["value"] > 0.9
    scratch = train(TrainConfig(out=str(tmp_path / "scratch"), epochs=1, lr=1e-7, **base), fer=fer, progress=False)
    tuned = train(TrainConfig(out=str(tmp_path / "tuned"), epochs=1, lr=1e-7, init=str(src.best_path), **base),
                  fer=fer, progress=False)
    # with a learning rate too small to move anything, the first epoch scores what the source scored
    assert tuned.history["val_acc"][0] == pytest.approx(src.best["value"])
    assert scratch.history["val_acc"][0] < 0.9
