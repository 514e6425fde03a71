"""faces.align: the box framing (expression) and the eye framing (spontaneity), and to_grey."""
import cv2
import numpy as np
import pytest

from affectlens.faces.align import EYE_DIST, EYE_Y, align_box, align_eyes, eye_transform, to_grey


def test_align_box_levels_the_eyes_and_crops_48():
    img = np.zeros((200, 200), np.uint8)
    img[80:90, 60:140] = 255                                   # a bright bar through the "eyes"
    box = (50, 50, 150, 150)
    level = align_box(img, box)
    assert level.shape == (48, 48) and level.dtype == np.uint8
    # Tilt the image by 20°: with eye landmarks on the tilted bar the crop is rotated back level.
    m = cv2.getRotationMatrix2D((100, 100), 20, 1.0)
    tilted = cv2.warpAffine(img, m, (200, 200))
    eyes = cv2.transform(np.array([[[70, 85], [130, 85]]], np.float32), m)[0]
    lms = np.concatenate([eyes, np.full((3, 2), np.nan, np.float32)])
    back = align_box(tilted, box, lms)
    rows = back.mean(axis=1)
    assert rows.max() > 150 and (rows > 100).sum() <= 6        # the bar is horizontal again


def test_eye_transform_puts_eyes_on_canonical_line():
    left, right = (120.0, 90.0), (200.0, 130.0)  # tilted eye line
    m = eye_transform(right, left, 44)  # order does not matter
    pts = np.array([left, right, (1.0, 1.0)])[:2]
    mapped = pts @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(mapped, [[44 * (0.5 - EYE_DIST / 2), 44 * EYE_Y], [44 * (0.5 + EYE_DIST / 2), 44 * EYE_Y]],
                               atol=1e-6)


def test_align_eyes_undoes_a_rotation():
    img = np.zeros((200, 200), np.uint8)
    cv2.circle(img, (70, 100), 6, 255, -1)
    cv2.circle(img, (130, 100), 6, 255, -1)
    rot = cv2.getRotationMatrix2D((100, 100), 25, 1.0)
    tilted = cv2.warpAffine(img, rot, (200, 200))
    eyes = np.array([[70, 100], [130, 100]], float) @ rot[:, :2].T + rot[:, 2]
    crop = align_eyes(tilted, eyes[0], eyes[1], 44)
    assert crop.shape == (44, 44)
    ys, xs = np.nonzero(crop > 100)
    assert abs(ys.mean() - 44 * EYE_Y) < 1.0  # both blobs sit on the same horizontal line
    left = xs < 22
    assert abs(ys[left].mean() - ys[~left].mean()) < 1.0


def test_to_grey_accepts_every_layout_and_rejects_others():
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 255
    grey = to_grey(rgb)
    assert grey.shape == (4, 5) and grey.dtype == np.uint8
    assert int(grey[0, 0]) == int(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[0, 0]) == 76  # BT.601 red weight
    np.testing.assert_array_equal(to_grey(np.dstack([rgb, np.zeros((4, 5), np.uint8)])), grey)  # RGBA
    np.testing.assert_array_equal(to_grey(rgb.astype(np.float32) / 255), grey)                  # float [0, 1]
    np.testing.assert_array_equal(to_grey(grey[..., None]), grey)
    with pytest.raises(ValueError, match="grey or RGB"):
        to_grey(np.zeros((2, 2, 2, 2), np.uint8))
