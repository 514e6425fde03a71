"""Face detectors: CenterFace decoding checked by hand, and every face in the real photos found."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from affectlens.errors import ShapeError
from affectlens.faces.detect import (
    CenterFace,
    Detections,
    HaarDetector,
    detect_faces,
    nms,
)
from tests.conftest import shared_path

# Faces a person sees in each photo (counted by hand; partial faces cut by the frame are not counted).
FACE_COUNTS = {
    ("images", "multi_face.jpg"): 5,
    ("images", "single_face.jpg"): 1,
    ("identities", "two_people.jpg"): 2,
    ("identities", "knn_examples", "test", "alex_lacamoire1.jpg"): 1,
    ("identities", "knn_examples", "test", "johnsnow_test1.jpg"): 1,
    ("identities", "knn_examples", "test", "kit_with_rose.jpg"): 2,
    ("identities", "knn_examples", "test", "obama1.jpg"): 1,
    ("identities", "knn_examples", "test", "obama_and_biden.jpg"): 3,
    ("identities", "knn_examples", "train", "alex_lacamoire", "img1.jpg"): 1,
    ("identities", "knn_examples", "train", "biden", "biden.jpg"): 1,
    ("identities", "knn_examples", "train", "biden", "biden2.jpg"): 1,
    ("identities", "knn_examples", "train", "kit_harington", "john1.jpeg"): 1,
    ("identities", "knn_examples", "train", "kit_harington", "john2.jpeg"): 1,
    ("identities", "knn_examples", "train", "obama", "obama.jpg"): 1,
    ("identities", "knn_examples", "train", "obama", "obama2.jpg"): 1,
    ("identities", "knn_examples", "train", "rose_leslie", "img1.jpg"): 1,
    ("identities", "knn_examples", "train", "rose_leslie", "img2.jpg"): 1,
}


def _rgb(*parts: str) -> np.ndarray:
    path = shared_path("media", *parts)
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_decode_matches_hand_computed_box():
    """One heatmap peak with known scale/offset/landmarks decodes to the box computed by hand."""
    cf = CenterFace(threshold=0.5)
    h, w = 16, 16
    heat = np.zeros((h, w), np.float32)
    heat[5, 7] = 0.9
    scale = np.zeros((2, h, w), np.float32)
    scale[:, 5, 7] = [np.log(40 / 4), np.log(20 / 4)]  # box 40 tall, 20 wide
    offset = np.zeros((2, h, w), np.float32)
    offset[:, 5, 7] = [0.25, -0.5]
    lms = np.zeros((10, h, w), np.float32)
    lms[:, 5, 7] = [0.25, 0.5] * 5  # (y, x) = quarter height, half width for all five points
    boxes, scores, land = cf._decode(heat, scale, offset, lms, fx=2.0, fy=2.0)
    cy, cx = (5 + 0.25 + 0.5) * 4, (7 - 0.5 + 0.5) * 4  # 23, 28 at network resolution
    expect = np.array([cx - 10, cy - 20, cx + 10, cy + 20]) * 2
    np.testing.assert_allclose(boxes[0], expect, atol=1e-4)
    np.testing.assert_allclose(scores, [0.9])
    np.testing.assert_allclose(land[0, :, 0], (cx - 10 + 0.5 * 20) * 2, atol=1e-4)
    np.testing.assert_allclose(land[0, :, 1], (cy - 20 + 0.25 * 40) * 2, atol=1e-4)


def test_nms_keeps_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], np.float32)
    keep = nms(boxes, np.array([0.8, 0.9, 0.5], np.float32), iou=0.3)
    assert keep.tolist() == [1, 2]


def test_centerface_rejects_bad_input():
    cf = CenterFace()
    with pytest.raises(ShapeError):
        cf(np.zeros((32, 32), np.uint8))
    with pytest.raises(ShapeError):
        cf(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(ValueError):
        CenterFace(threshold=1.5)


def test_blank_image_has_no_faces():
    d = CenterFace()(np.full((120, 200, 3), 128, np.uint8))
    assert isinstance(d, Detections) and len(d) == 0
    assert d.boxes.shape == (0, 4) and d.landmarks.shape == (0, 5, 2)


@pytest.mark.shared_data
@pytest.mark.parametrize("parts", list(FACE_COUNTS), ids=lambda p: p[-1])
def test_every_face_found(parts):
    rgb = _rgb(*parts)
    d = detect_faces(rgb)
    assert len(d) == FACE_COUNTS[parts], (parts, d.scores)
    assert d.boxes.dtype == np.float32 and d.boxes.shape == (len(d), 4)
    assert d.scores.shape == (len(d),) and d.landmarks.shape == (len(d), 5, 2)
    assert (d.boxes[:, 2] > d.boxes[:, 0]).all() and (d.boxes[:, 3] > d.boxes[:, 1]).all()
    # landmarks are inside their own box: left eye left of right eye, eyes above the mouth
    lm = d.landmarks
    assert (lm[:, 0, 0] < lm[:, 1, 0]).all() and (lm[:, :2, 1].max(1) < lm[:, 3:, 1].min(1)).all()
    inside = ((lm[..., 0] >= d.boxes[:, None, 0] - 5) & (lm[..., 0] <= d.boxes[:, None, 2] + 5)
              & (lm[..., 1] >= d.boxes[:, None, 1] - 5) & (lm[..., 1] <= d.boxes[:, None, 3] + 5))
    assert inside.all()


@pytest.mark.shared_data
@pytest.mark.parametrize("parts", [("images", "multi_face.jpg")], ids=lambda p: p[-1])
def test_centerface_boxes_agree_with_dlib(parts):
    """An independent detector (dlib's HOG) finds no face that CenterFace misses."""
    dlib = pytest.importorskip("dlib")
    rgb = _rgb(*parts)
    s = 800 / max(rgb.shape[:2])
    ref = dlib.get_frontal_face_detector()(cv2.resize(rgb, None, fx=s, fy=s), 1)
    ours = detect_faces(rgb).boxes
    assert len(ref) >= 2
    for r in ref:
        rb = np.array([r.left(), r.top(), r.right(), r.bottom()], np.float32) / s
        assert max(_iou(rb, b) for b in ours) > 0.3


def test_centerface_scale_and_batch_agree():
    rgb = _rgb("images", "multi_face.jpg")
    cf = CenterFace(threshold=0.5, scale=0.5)
    one = cf(rgb)
    batch = cf.detect_batch([rgb, rgb[:, ::-1].copy()])
    np.testing.assert_allclose(batch[0].boxes, one.boxes, atol=1e-3)
    assert len(batch[1]) == len(one) == 5


def test_haar_finds_frontal_faces():
    rgb = _rgb("images", "multi_face.jpg")
    haar = HaarDetector()(rgb)
    ours = CenterFace()(rgb).boxes
    assert np.isnan(haar.landmarks).all() and haar.boxes.shape[1] == 4
    matched = [max(_iou(h, b) for b in ours) > 0.3 for h in haar.boxes]
    assert sum(matched) >= 4  # one face wears sunglasses: the frontal cascade misses it
    assert len(detect_faces(_rgb("identities", "two_people.jpg"), detector="haar")) == 2


def test_detector_input_fits_the_network_stride_without_much_stretch():
    from affectlens.faces.detect import MAX_STRETCH, CenterFace, _fit_side

    assert [_fit_side(n) for n in (480, 270, 256.4, 60, 80, 300, 23)] == [480, 256, 256, 64, 80, 288, 23]
    assert CenterFace.input_size(720, 1280, 0.375, MAX_STRETCH) == (256, 480, 256, 480)  # 720p: stretched
    assert CenterFace.input_size(23, 300, 1.0, MAX_STRETCH) == (23, 288, 32, 288)  # too far from 32: padded
    assert CenterFace.input_size(720, 1280, 0.375) == (270, 480, 288, 480)  # photos: padded, never stretched
