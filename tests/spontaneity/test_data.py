"""Manifest reader/writer, the USTC-NVIE-style tree reader, alignment geometry, bad input."""
import cv2
import numpy as np
import pytest

from affectlens.errors import DataError, MediaError
from affectlens.spontaneity.data import load_pairs, read_crop, read_manifest, scan_ustc_nvie, write_manifest


def _img(path, value=100, size=44):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((size, size), value, np.uint8))
    return path


def test_manifest_round_trip_and_bad_rows(tmp_path):
    _img(tmp_path / "a_on.png"), _img(tmp_path / "a_ap.png", 120)
    m = tmp_path / "m.csv"
    m.write_text("subject,onset,apex,label\nS1,a_on.png,a_ap.png,posed\nS2,a_on.png,a_ap.png,Spontaneous\n")
    rows = read_manifest(m)
    assert [r.label for r in rows] == [0, 1] and rows[0].onset == tmp_path / "a_on.png"
    write_manifest(tmp_path / "sub" / "m2.csv", rows)
    again = read_manifest(tmp_path / "sub" / "m2.csv")
    assert [(r.subject, r.onset.resolve(), r.label) for r in again] == [(r.subject, r.onset.resolve(), r.label) for r in rows]
    o, a, y, s = load_pairs(again)
    assert o.shape == (2, 44, 44) and a[0, 0, 0] == 120 and list(y) == [0, 1] and list(s) == ["S1", "S2"]
    m.write_text("subject,onset,apex,label\nS1,a_on.png,a_ap.png,fake\n")
    with pytest.raises(DataError, match=r"m.csv:2: label 'fake'"):
        read_manifest(m)
    m.write_text("subject,onset,label\nS1,a,posed\n")
    with pytest.raises(DataError, match="missing column"):
        read_manifest(m)


def test_raw_frame_and_missing_file_are_refused(tmp_path):
    with pytest.raises(DataError, match="run `affectlens spontaneity preprocess`"):
        read_crop(_img(tmp_path / "big.png", size=100))
    with pytest.raises(MediaError, match="not found"):
        read_crop(tmp_path / "nope.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(MediaError, match="not a readable image"):
        read_crop(tmp_path / "bad.png")


def test_scan_ustc_nvie_layouts(tmp_path):
    root = tmp_path / "nvie"
    # (a) files named onset/apex, with an illumination level in between; infrared is skipped
    _img(root / "Posed_Database" / "S001" / "front" / "happy" / "001_onset.jpg")
    _img(root / "Posed_Database" / "S001" / "front" / "happy" / "001_apex.jpg")
    _img(root / "Posed_Database" / "S001" / "infrared" / "happy" / "onset.png")
    _img(root / "Posed_Database" / "S001" / "infrared" / "happy" / "apex.png")
    # (b) a frame sequence with onset_apex.txt
    seq = root / "spontaneous" / "S002" / "left" / "clip3"
    for i in range(5):
        _img(seq / f"{i:04d}.bmp", 10 * i)
    (seq / "onset_apex.txt").write_text("onset 0001.bmp\napex 0004.bmp\n")
    (root / "README").mkdir(parents=True)
    _img(root / "Posed_Database" / "S003" / "sad" / "onset.png")  # no apex: discarded, not fatal
    samples, discarded = scan_ustc_nvie(root)
    assert [(s.subject, s.label, s.onset.name, s.apex.name) for s in samples] == [
        ("S001", 0, "001_onset.jpg", "001_apex.jpg"), ("S002", 1, "0001.bmp", "0004.bmp")]
    assert len(discarded) == 1 and "S003" in discarded[0] and "no apex image" in discarded[0]
    subset, gone = scan_ustc_nvie(root, ["spontaneous/S002/left/clip3", "posed/S009/x"])
    assert [s.subject for s in subset] == ["S002"] and "posed/S009/x: listed in the subset" in gone[-1]
    (seq / "onset_apex.txt").write_text("onset 0001.bmp\n")
    samples, discarded = scan_ustc_nvie(root)
    assert [s.subject for s in samples] == ["S001"] and any("has no apex line" in d for d in discarded)
    (seq / "onset_apex.txt").write_text("onset 0001.bmp\nvertex 0003.bmp\n")
    with pytest.raises(DataError, match="onset_apex.txt:2"):  # malformed: still an error naming its line
        scan_ustc_nvie(root)
    with pytest.raises(DataError, match="no onset/apex pairs"):
        scan_ustc_nvie(tmp_path / "nvie" / "README")
