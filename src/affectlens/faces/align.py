"""Face alignment: the one home for turning a detected face into a fixed-size grey crop.

Two framings, because the two papers that crop faces frame them differently:

* ``align_box`` — the FER2013 framing used by the expression room (paper 002): a square of
  ``margin × max(w, h)`` around the detector's box, rotated so the eyes are level when landmarks
  are given. The face fills the crop as it does in FER2013's 48 × 48 images.
* ``align_eyes`` — the canonical eye framing used by the spontaneity room (paper 001): a
  similarity that puts the two eyes on a horizontal line at fixed positions (``EYE_Y``,
  ``EYE_DIST``), so onset and apex crops of one sample line up pixel for pixel.

Both work on grey or RGB ``uint8`` images and return grey ``uint8`` crops.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

# Where ``align_eyes`` puts the eyes (fractions of the side): eye line at 40 % of the height, eyes
# 36 % of the width apart, centred. The spontaneity synthetic renderer draws faces the same way.
EYE_Y = 0.40
EYE_DIST = 0.36


def to_grey(image: np.ndarray) -> np.ndarray:
    """``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA, uint8 or float in [0, 1] → uint8 grey."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = np.clip(a * (255.0 if a.max() <= 1.0 else 1.0), 0, 255).round().astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 3 and a.shape[2] in (3, 4):
        a = cv2.cvtColor(np.ascontiguousarray(a[..., :3]), cv2.COLOR_RGB2GRAY)
    if a.ndim != 2:
        raise ValueError(f"expected a grey or RGB image, got shape {np.asarray(image).shape}")
    return a


def align_box(image: np.ndarray, box: Sequence[float], landmarks: np.ndarray | None = None,
              margin: float = 1.15, side: int = 48) -> np.ndarray:
    """Crop one face to ``(side, side)`` grey uint8: a square of ``margin × max(w, h)`` around the box
    centre, rotated so the eyes are level when ``landmarks`` (5, 2) (left eye, right eye, …) are given."""
    grey = to_grey(image)
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    size = max(x2 - x1, y2 - y1, 1.0) * margin
    angle = 0.0
    if landmarks is not None and np.isfinite(landmarks[:2]).all():
        (lx, ly), (rx, ry) = landmarks[0], landmarks[1]
        angle = math.degrees(math.atan2(ry - ly, rx - lx))
    mat = cv2.getRotationMatrix2D((cx, cy), angle, side / size)
    mat[:, 2] += (side / 2 - cx, side / 2 - cy)                 # move the face centre to the crop centre
    return cv2.warpAffine(grey, mat, (side, side), flags=cv2.INTER_AREA if size > side else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def eye_transform(left_eye, right_eye, size: int, eye_y: float = EYE_Y, eye_dist: float = EYE_DIST) -> np.ndarray:
    """2 × 3 similarity that puts the two eyes on a horizontal line at the canonical crop positions.

    The eye points are sorted by x, so the detector's left/right convention does not matter.
    """
    (lx, ly), (rx, ry) = sorted([tuple(map(float, left_eye)), tuple(map(float, right_eye))])
    dist = float(np.hypot(rx - lx, ry - ly))
    if dist < 1e-3:
        raise ValueError("the two eye points coincide")
    angle = np.arctan2(ry - ly, rx - lx)
    scale = eye_dist * size / dist
    c, s = np.cos(-angle) * scale, np.sin(-angle) * scale
    m = np.array([[c, -s, 0.0], [s, c, 0.0]])
    mid = np.array([(lx + rx) / 2, (ly + ry) / 2])
    m[:, 2] = np.array([size / 2, eye_y * size]) - m[:, :2] @ mid
    return m


def align_eyes(image: np.ndarray, left_eye, right_eye, size: int) -> np.ndarray:
    """Warp an RGB or grey image to a ``size`` × ``size`` grey crop with the eyes at ``EYE_Y``/``EYE_DIST``."""
    grey = to_grey(image)
    m = eye_transform(left_eye, right_eye, size)
    scale = float(np.hypot(m[0, 0], m[0, 1]))
    if scale < 0.5:  # area-average first when shrinking a lot, so the crop is not aliased
        f = 1.0 / (2 * scale)
        grey = cv2.resize(grey, None, fx=1 / f, fy=1 / f, interpolation=cv2.INTER_AREA)
        m = m.copy()
        m[:, :2] *= f
    return cv2.warpAffine(grey, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
