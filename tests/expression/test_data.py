"""FER2013 readers: csv and folder layouts agree, official splits, malformed rows named."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from affectlens.errors import DataError
from affectlens.expression.data import (
    CLASSES,
    folder_entries,
    load_fer,
    read_fer_csv,
    read_fer_folder,
)
from tests.conftest import shared_path


def _write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        w.writerows(rows)


def _random_faces(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 48, 48), dtype=np.uint8)


def test_real_csv_sample_reads_300_rows_with_official_usage():
    path = shared_path("fer2013", "fer2013_csv_sample.csv")
    fer = read_fer_csv(path)
    assert len(fer) == 300 and fer.images.shape == (300, 48, 48) and fer.images.dtype == np.uint8
    assert set(fer.usage) <= {"Training", "PublicTest", "PrivateTest"}
    assert fer.labels[0] == 0 and list(fer.images[0, 0, :4]) == [70, 80, 82, 72]  # the row printed in the paper
    assert sum(fer.counts()["Training"].values()) == (fer.usage == "Training").sum()


def test_real_folder_layout_has_official_split_sizes():
    root = shared_path("fer2013")
    entries = folder_entries(root)
    usage = [e[2] for e in entries]
    assert (usage.count("Training"), usage.count("PublicTest"), usage.count("PrivateTest")) == (28709, 3589, 3589)
    # labels from folders agree with the manifest's emotion column
    with open(root / "manifest.csv") as f:
        manifest = {r["path"]: int(r["emotion"]) for r in csv.DictReader(f)}
    for path, label, _ in entries[::997]:
        assert manifest[str(path.relative_to(root))] == label


def test_csv_and_folder_layouts_give_the_same_samples(tmp_path):
    import cv2

    faces = _random_faces(6)
    labels = [0, 3, 6, 3, 1, 5]
    usages = ["Training", "Training", "PublicTest", "PrivateTest", "Training", "PrivateTest"]
    _write_csv(tmp_path / "fer.csv", [[l, " ".join(map(str, im.ravel())), u] for im, l, u in zip(faces, labels, usages)])
    for i, (im, l, u) in enumerate(zip(faces, labels, usages)):
        d = tmp_path / "folder" / ("train" if u == "Training" else "test") / CLASSES[l]
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / f"{u}_{i}.png"), im)  # PNG: lossless, so pixels must match exactly
    a, b = read_fer_csv(tmp_path / "fer.csv"), read_fer_folder(tmp_path / "folder")
    key_a = sorted((u, int(l), im.tobytes()) for im, l, u in zip(a.images, a.labels, a.usage))
    key_b = sorted((u, int(l), im.tobytes()) for im, l, u in zip(b.images, b.labels, b.usage))
    assert key_a == key_b
    for split in ("Training", "PublicTest", "PrivateTest"):
        assert len(a.split(split)) == len(b.split(split)) == usages.count(split)
    cached = load_fer(tmp_path / "folder", cache_dir=tmp_path / "cache")
    again = load_fer(tmp_path / "folder", cache_dir=tmp_path / "cache")  # second read comes from the .npz
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    np.testing.assert_array_equal(cached.images, again.images)
    s = next(a.samples())
    assert s["image"].shape == (1, 48, 48) and set(s) == {"image", "label", "id", "usage"}


@pytest.mark.parametrize("row, message", [
    (["0", "1 2 3", "Training"], "expected 2304 pixels, got 3"),
    (["9", " ".join(["0"] * 2304), "Training"], "unknown emotion label '9'"),
    (["2", " ".join(["0"] * 2304), "Validation"], "unknown Usage 'Validation'"),
    (["2", " ".join(["300"] * 2304), "Training"], "pixel values must be 0-255"),
])
def test_malformed_csv_row_names_file_and_line(tmp_path, row, message):
    good = ["3", " ".join(["10"] * 2304), "Training"]
    _write_csv(tmp_path / "bad.csv", [good, good, row])
    with pytest.raises(DataError) as e:
        read_fer_csv(tmp_path / "bad.csv")
    assert "bad.csv:4" in str(e.value) and message in str(e.value)


def test_folder_with_unknown_class_or_wrong_size_is_named(tmp_path):
    import cv2

    (tmp_path / "train" / "bored").mkdir(parents=True)
    (tmp_path / "test").mkdir()
    with pytest.raises(DataError, match="bored: unknown class folder"):
        read_fer_folder(tmp_path)
    (tmp_path / "train" / "bored").rmdir()
    (tmp_path / "train" / "happy").mkdir()
    cv2.imwrite(str(tmp_path / "train" / "happy" / "Training_1.png"), np.zeros((40, 40), np.uint8))
    with pytest.raises(DataError, match="Training_1.png: expected a 48x48 image, got 40x40"):
        read_fer_folder(tmp_path)
