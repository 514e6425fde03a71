"""dlib 68 landmarks on real photos, the ellipse face mask and the landmark heat-maps."""
from __future__ import annotations

import numpy as np
import pytest

from affectlens.errors import ShapeError
from affectlens.faces import landmarks as L
from tests.conftest import shared_path


def _read(path):
    from affectlens.media.image import read_image

    return read_image(path)


def _synthetic_face(cx=50.0, cy=60.0, s=20.0, tilt=0.0) -> np.ndarray:
    """A plausible 68-point layout: jaw arc, brows, nose line, eyes, mouth ring (rotated by tilt)."""
    t = np.linspace(np.pi * 0.05, np.pi * 0.95, 17)
    jaw = np.c_[-np.cos(t) * s, np.sin(t) * s * 1.1]
    brows = np.c_[np.linspace(-0.8 * s, 0.8 * s, 10), np.full(10, -0.6 * s)]
    nose = np.c_[np.zeros(9), np.linspace(-0.45 * s, 0.25 * s, 9)]
    eyes = np.c_[np.r_[np.linspace(-0.6, -0.2, 6), np.linspace(0.2, 0.6, 6)] * s, np.full(12, -0.35 * s)]
    a = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    mouth = np.c_[np.cos(a) * 0.35 * s, 0.55 * s + np.sin(a) * 0.12 * s]
    pts = np.concatenate([jaw, brows, nose, eyes, mouth])
    r = np.array([[np.cos(tilt), -np.sin(tilt)], [np.sin(tilt), np.cos(tilt)]])
    return (pts @ r.T + [cx, cy]).astype(np.float32)


@pytest.mark.parametrize("tilt", [0.0, 0.3, -0.5])
def test_ellipse_mask_covers_every_landmark(tilt):
    pts = _synthetic_face(tilt=tilt)
    assert pts.shape == (68, 2)
    mask = L.ellipse_mask((120, 100), pts)
    xs, ys = np.round(pts[:, 0]).astype(int), np.round(pts[:, 1]).astype(int)
    assert mask[ys, xs].all()
    assert 0.1 < mask.mean() < 0.6  # an ellipse over the face, not the whole image


def test_ellipse_axis_follows_the_face_tilt():
    e0, e1 = L.face_ellipse(_synthetic_face(tilt=0.0)), L.face_ellipse(_synthetic_face(tilt=0.3))
    assert abs((e1.angle - e0.angle) - np.degrees(0.3)) < 1.0
    assert e0.b > e0.a  # taller than wide: forehead to chin


def test_heatmaps_peak_at_the_points():
    import torch

    from affectlens.privacy.reconstruct import heatmaps_torch

    pts = np.stack([np.arange(68) % 60 + 2, np.arange(68) // 2 + 3], axis=1).astype(np.float32)
    maps = heatmaps_torch(torch.from_numpy(pts)[None], (40, 64), sigma=1.5)[0].numpy()
    assert maps.shape == (68, 40, 64) and maps.dtype == np.float32
    peaks = np.stack(np.unravel_index(maps.reshape(68, -1).argmax(1), (40, 64)), axis=1)  # (68, (y, x))
    assert np.array_equal(peaks[:, ::-1], pts.astype(int))
    assert np.isclose(maps.max(), 1.0)


def test_bad_image_is_a_shape_error():
    with pytest.raises(ShapeError):
        L.landmarks(np.zeros((10, 10), np.uint8))


@pytest.mark.shared_data
def test_dlib_landmarks_on_real_celeba_crops():
    root = shared_path("celeba", "img_align_celeba_89x109")
    found = 0
    for name in ("000001.jpg", "000002.jpg", "000006.jpg"):
        rgb = _read(root / name)
        pts = L.landmarks(rgb)
        if not len(pts):
            continue
        found += 1
        p = pts[0]
        h, w = rgb.shape[:2]
        assert p.shape == (68, 2)
        assert (p[:, 0] > -5).all() and (p[:, 0] < w + 5).all() and (p[:, 1] > -5).all() and (p[:, 1] < h + 5).all()
        assert p[L.CHIN, 1] > p[27, 1] > p[19, 1]  # chin below the nose bridge below the brows
        mask = L.ellipse_mask(rgb.shape[:2], p, 1.08)
        inside = np.clip(np.round(p).astype(int), 0, [w - 1, h - 1])
        assert mask[inside[:, 1], inside[:, 0]].all() and 0.2 < mask.mean() < 0.9
    assert found >= 2


@pytest.mark.shared_data
def test_landmarks_from_a_given_box_match_the_detector():
    rgb = _read(shared_path("media", "identities", "obama.jpg"))
    boxes = L.detect_boxes(rgb)
    assert len(boxes) == 1
    a = L.landmarks(rgb)[0]
    b = L.landmarks(rgb, boxes)[0]
    assert np.allclose(a, b)
