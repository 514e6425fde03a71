"""Stage 1: the CelebA reader, the identity-disjoint split and the 40-attribute classifier."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from affectlens.errors import DataError
from affectlens.media.image import read_image
from affectlens.privacy import attributes as A
from affectlens.privacy import celeba as C
from affectlens.privacy import model as PM
from tests.conftest import shared_path

NAMES = "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair " \
        "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup " \
        "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose " \
        "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat " \
        "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"


def _write_celeba(root, n=6, bad_row=None, partition=False):
    import cv2

    (root / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(0)
    attrs = rng.integers(0, 2, (n, 40))
    rows = [f"{i + 1:06d}.jpg " + " ".join("1" if v else "-1" for v in a) for i, a in enumerate(attrs)]
    if bad_row is not None:
        rows[bad_row] = rows[bad_row].rsplit(" ", 1)[0] + " 0"
    (root / "list_attr_celeba.txt").write_text(f"{n}\n{NAMES} \n" + "\n".join(rows) + "\n")
    (root / "identity_CelebA.txt").write_text("".join(f"{i + 1:06d}.jpg {i // 2 + 1}\n" for i in range(n)))
    if partition:
        (root / "list_eval_partition.txt").write_text("".join(f"{i + 1:06d}.jpg {i % 3}\n" for i in range(n)))
    for i in range(n):
        cv2.imwrite(str(root / "img_align_celeba" / f"{i + 1:06d}.jpg"), np.full((20, 16, 3), i * 20 % 256, np.uint8))
    return attrs


def test_reader_parses_the_official_format(tmp_path):
    attrs = _write_celeba(tmp_path)
    ds = C.load_celeba(tmp_path)
    assert ds.attr_names == NAMES.split() and ds.files[0] == "000001.jpg"
    assert np.array_equal(ds.attributes, attrs)
    assert list(ds.identities) == [1, 1, 2, 2, 3, 3]
    assert read_image(ds.path(5)).shape == (20, 16, 3)


def test_partition_file_is_used_when_present(tmp_path):
    _write_celeba(tmp_path, partition=True)
    assert list(C.load_celeba(tmp_path).split) == [0, 1, 2, 0, 1, 2]


def test_bad_attribute_row_names_file_and_line(tmp_path):
    _write_celeba(tmp_path, bad_row=3)
    with pytest.raises(DataError, match=r"list_attr_celeba.txt:6: bad attribute row"):
        C.load_celeba(tmp_path)


def test_missing_identity_is_reported(tmp_path):
    _write_celeba(tmp_path)
    (tmp_path / "identity_CelebA.txt").write_text("000001.jpg 1\n")
    with pytest.raises(DataError, match="have no identity"):
        C.load_celeba(tmp_path)


def test_identity_split_is_disjoint_and_seeded():
    ids = np.repeat(np.arange(300), 3)
    split = C.identity_split(ids, seed=1)
    for s in range(3):
        for t in range(s + 1, 3):
            assert not set(ids[split == s]) & set(ids[split == t])
    assert abs((split == 0).mean() - 0.8) < 0.02
    assert np.array_equal(split, C.identity_split(ids, seed=1))


def test_mean_accuracy_matches_sklearn_and_majority_by_hand():
    from sklearn.metrics import accuracy_score

    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 2, (50, 40)), rng.random((50, 40))
    acc, per = A.mean_accuracy(p, y)
    ref = [accuracy_score(y[:, j], p[:, j] >= 0.5) for j in range(40)]
    assert np.allclose(per, ref) and np.isclose(acc, np.mean(ref))
    train = np.array([[1, 0], [1, 0], [0, 1]])
    test = np.array([[1, 1], [0, 0], [1, 0], [1, 0]])
    base, base_per = A.majority_baseline(train, test)  # majority = [1, 0]
    assert np.allclose(base_per, [0.75, 0.75]) and np.isclose(base, 0.75)


def test_bce_is_summed_over_attributes():
    logits, y = torch.zeros(4, 40), torch.ones(4, 40)
    assert np.isclose(float(A.bce_sum(logits, y)), 40 * np.log(2), rtol=1e-5)


@pytest.mark.parametrize("build,hw,params", [(PM.attributes_tiny, (109, 89), None),
                                             (PM.attributes_small, (109, 89), None),
                                             (PM.attributes_paper, (64, 64), (23.5e6, 23.6e6))])
def test_shapes(build, hw, params):
    model = build().eval()
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        assert model(x).shape == (2, 40)
        p = model.predict_proba(x)
    assert torch.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()
    if params:  # the paper's raw ResNet-50 with a 40-unit head
        n = sum(q.numel() for q in model.parameters())
        assert params[0] < n < params[1]


def test_tiny_model_learns_a_tiny_task_through_the_engine(tmp_path):
    """Attribute j is 'the image is bright in band j'; a tiny CNN learns it in a few epochs."""
    from affectlens.training.engine import fit, loader
    from affectlens.training.hardware import Hardware

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (64, 40))
    x = np.zeros((64, 40, 24, 3), np.uint8)
    x[np.repeat(y[:, :, None], 24, axis=2).astype(bool)] = 255  # row j bright ⇔ attribute j
    cfg = A.AttributeTrainConfig(out=str(tmp_path), widths=(16, 32), image_hw=(40, 24), epochs=12, batch_size=16,
                                 lr=1e-2)
    data = C.Arrays(image=x, target=y)
    module = A.AttributeModule(cfg)
    res = fit(module, loader(data, 16, shuffle=True, collate_fn=C.as_batch), loader(data, 64, collate_fn=C.as_batch),
              out=tmp_path, epochs=cfg.epochs, hardware=Hardware(accelerator="cpu"), progress=False)
    loss, acc = res.history["train_loss"], res.history["val_mean_acc"]
    assert loss[-1] < 0.85 * loss[0] and acc[-1] > 0.7 and acc[-1] > acc[0] + 0.15
    acc, _ = A.mean_accuracy(A.predict(A.load_attribute_model(res.best_path), x), y)
    assert acc == pytest.approx(max(res.history["val_mean_acc"]), abs=1e-6)  # best.pt is the best epoch


@pytest.mark.shared_data
def test_training_recipe_on_real_celeba_resumes(tmp_path):
    from affectlens.training import load_checkpoint

    data = shared_path("celeba")
    cfg = A.AttributeTrainConfig(data=str(data), out=str(tmp_path / "run"), widths=(4, 8), epochs=1, limit=48,
                                 batch_size=24)
    m1 = A.train_attributes(cfg, progress=False)
    assert m1["n_test"] == 48 and 0 <= m1["test_mean_accuracy"] <= 1 and 0.6 < m1["majority_baseline"] < 1
    m2 = A.train_attributes(A.AttributeTrainConfig(**{**cfg.__dict__, "epochs": 2}), progress=False)
    assert len(m2["history"]["val_mean_acc"]) == 2 and load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 2
    model = A.load_attribute_model(tmp_path / "run" / "best.pt")
    assert model.config.widths == (4, 8)
    assert (tmp_path / "run" / "per_attribute.png").is_file() and (tmp_path / "run" / "metrics.csv").is_file()


def test_fraction_is_the_first_part_of_each_split_as_in_the_paper():
    idx = np.arange(200, 100, -1)
    assert np.array_equal(C.subsample(idx, 0.3), idx[:30])
    assert C.subsample(idx, 1.0) is idx and len(C.subsample(idx[:2], 0.01)) == 1
    with pytest.raises(ValueError, match="fraction"):
        C.subsample(idx, 0.0)
