"""dlib's 68-point face landmarks, the ellipse face mask drawn from them, and landmark heat-maps.

The 68-point model (Kazemi & Sullivan 2014) ships in ``face-recognition-models``; face boxes come
from dlib's HOG frontal detector (good on aligned crops such as CelebA) or from any detector that
gives ``(k, 4)`` x1, y1, x2, y2 boxes (e.g. ``affectlens.faces.detect.CenterFace``).

Point indices (iBUG 300-W): jaw 0-16, eyebrows 17-26, nose 27-35, eyes 36-47, mouth 48-67.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from affectlens.errors import AffectlensError, ShapeError

N_LANDMARKS = 68
JAW = slice(0, 17)
BROWS = slice(17, 27)
NOSE = slice(27, 36)
CHIN = 8


@lru_cache(maxsize=None)
def _model_paths() -> tuple[str, str]:
    # Locate the files without importing face_recognition_models: its __init__ imports
    # pkg_resources, which newer setuptools no longer ship.

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise AffectlensError("face-recognition-models is not installed (pip install face-recognition-models)")
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    return (str(models / "shape_predictor_68_face_landmarks.dat"),
            str(models / "dlib_face_recognition_resnet_model_v1.dat"))


@lru_cache(maxsize=None)
def _dlib_models():
    import dlib

    pose, _ = _model_paths()
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(pose)


def dlib_model_paths() -> dict:
    """Paths of the dlib model files bundled with ``face-recognition-models``."""
    pose, rec = _model_paths()
    five = str(Path(pose).with_name("shape_predictor_5_face_landmarks.dat"))
    return {"shape_predictor_68": pose, "shape_predictor_5": five, "face_recognition_resnet": rec}


def as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ShapeError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    return np.ascontiguousarray(image)


def detect_boxes(rgb: np.ndarray, upsample: int = 1) -> np.ndarray:
    """dlib HOG frontal faces → ``(k, 4)`` float32 x1, y1, x2, y2 (largest first)."""
    detector, _ = _dlib_models()
    rects = detector(as_rgb(rgb), upsample)
    boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], np.float32).reshape(-1, 4)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return boxes[np.argsort(-areas)]


def shape_from_box(rgb: np.ndarray, box) -> "object":
    """dlib ``full_object_detection`` (68 parts) for one x1, y1, x2, y2 box."""
    import dlib

    _, predictor = _dlib_models()
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    return predictor(as_rgb(rgb), dlib.rectangle(x1, y1, x2, y2))


def landmarks(rgb: np.ndarray, boxes: np.ndarray | None = None, upsample: int = 1) -> np.ndarray:
    """68 (x, y) points per face → ``(k, 68, 2)`` float32; boxes default to dlib's HOG detector."""
    rgb = as_rgb(rgb)
    boxes = detect_boxes(rgb, upsample) if boxes is None else np.asarray(boxes, np.float32).reshape(-1, 4)
    out = np.zeros((len(boxes), N_LANDMARKS, 2), np.float32)
    for i, box in enumerate(boxes):
        shape = shape_from_box(rgb, box)
        out[i] = [(p.x, p.y) for p in shape.parts()]
    return out


@dataclass(frozen=True)
class Ellipse:
    """An OpenCV ellipse: centre (x, y), half-axes (a along the face's width, b along its height), angle°."""

    cx: float
    cy: float
    a: float
    b: float
    angle: float


def face_ellipse(points: np.ndarray, margin: float = 1.08) -> Ellipse:
    """The ellipse over the face from its 68 points (§2.2.2: forehead, chin, cheeks, nose).

    The vertical axis runs from the chin (8) through the nose bridge (27); the forehead top is
    estimated one third of the chin-to-brow distance above the eyebrows; the width is the
    cheek-to-cheek jaw span (0 ↔ 16). The half-axes are then grown, if needed, until every
    landmark lies inside, and multiplied by ``margin``.
    """
    p = np.asarray(points, np.float64).reshape(N_LANDMARKS, 2)
    chin, bridge = p[CHIN], p[27]
    up = bridge - chin
    up /= max(np.linalg.norm(up), 1e-6)
    right = np.array([-up[1], up[0]])
    brow = p[BROWS].mean(axis=0)
    forehead = brow + up * (np.dot(brow - chin, up) / 3.0)
    centre = (chin + forehead) / 2.0
    b = np.dot(forehead - chin, up) / 2.0
    a = np.linalg.norm(p[16] - p[0]) / 2.0
    rel = p - centre  # (68, 2) in image axes → face axes
    u, v = rel @ right, rel @ up
    reach = np.sqrt((u / max(a, 1e-6)) ** 2 + (v / max(b, 1e-6)) ** 2).max()
    grow = max(1.0, reach) * margin
    angle = float(np.degrees(np.arctan2(right[1], right[0])))
    return Ellipse(float(centre[0]), float(centre[1]), float(a * grow), float(b * grow), angle)


def ellipse_mask(hw: tuple[int, int], points: np.ndarray, margin: float = 1.08) -> np.ndarray:
    """``(H, W)`` uint8 mask, 1 inside the face ellipse drawn from the landmarks, else 0."""
    e = face_ellipse(points, margin)
    mask = np.zeros(hw, np.uint8)
    cv2.ellipse(mask, (int(round(e.cx)), int(round(e.cy))), (max(1, int(np.ceil(e.a))), max(1, int(np.ceil(e.b)))),
                e.angle, 0, 360, 1, thickness=-1)
    return mask
