"""Anonymize one video: decoding, detection, tracking + masking and encoding in overlapping threads.

Frames stay in the decoder's yuv420p: the detector gets a small RGB copy made by the scaler in one
pass, a frame without faces goes to the encoder as decoded, and a frame with faces is changed in
place, only inside the faces' regions, in its own Y, U and V planes (``masking.anonymize_planes``).
Detections pass through the one ``FaceTracker`` so a face the detector misses for a few frames
stays covered. The stages and queues are ``affectlens.media.pipeline``'s.
"""
from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from affectlens.errors import MediaError
from affectlens.faces.detect import MAX_STRETCH, CenterFace, Detections
from affectlens.faces.track import FaceTracker, TrackedFrame, TrackerConfig
from affectlens.media import VideoWriter, probe, writable_planes
from affectlens.media.pipeline import (
    END,
    FRAME_QUEUE,
    Background,
    Stage,
    decode_stage,
    encode_stage,
    halt,
    opencv_single_threaded,
    put,
    stage_items,
)
from affectlens.media.video import reformat, target_hw, to_rgb
from affectlens.media.writer import container_for
from affectlens.privacy.masking import anonymize_frame, anonymize_planes, get_method
from affectlens.privacy.options import (
    AnonymizeConfig,
    FileResult,
    FrameLog,
    detector_for,
    sidecar_head,
    sidecar_path,
)

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
        if width is None:
            return to_rgb(frame, (frame.height, frame.width), self.rotation)
        return to_rgb(frame, (height, width), self.rotation, interpolation="AREA")

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
        return _FrameDetector(detector_for(cfg, 1.0), info.rotation)
    scale = _video_scale(cfg, info.width, info.height)
    return _FrameDetector(detector_for(cfg, 1.0), info.rotation, scale)


def _tracker_config(cfg: AnonymizeConfig) -> TrackerConfig:
    """``cfg.tracker``, stretched so the frames skipped by ``detect_every`` are always bridged: a gap
    of ``detect_every - 1`` frames is filled and a new face is masked that many frames early."""
    skip = cfg.detect_every - 1
    t = cfg.tracker
    return replace(t, max_gap=max(t.max_gap, skip), pre_roll=max(t.pre_roll, skip))


def _detect_track(items: Iterable, detector: _FrameDetector, cfg: AnonymizeConfig, pending: deque, emit,
                  in_order: bool) -> None:
    """Detect on every ``cfg.detect_every``-th frame in the background (``Background``; results
    consumed in frame order), feed the tracker, and ``emit`` each frame the tracker has settled.
    Up to ``DETECT_AHEAD`` detections per worker are in flight. ``in_order`` (a caller's detector,
    which may keep state): one worker at normal priority, always awaited."""
    workers = 1 if in_order else cfg.detect_workers
    tracker = FaceTracker(_tracker_config(cfg))
    inflight: deque = deque()  # (frame, job or None), oldest first
    bg = Background(detector.detect, workers, 0 if in_order else cfg.detect_nice,
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
    """Anonymize one video: decoding, detection (``Background``), tracking+masking and encoding
    overlap in their own threads (``affectlens.media.pipeline``).

    Frames stay in the decoder's pixel format: one without a face goes to the encoder as decoded;
    one with faces is made writable (FFmpeg copies it only if the decoder still refers to it) and
    masked in place, only inside the faces' regions (``anonymize_planes``). A rotated source (the
    output is stored upright) or one of odd width or height (4:2:0 planes need even sizes) is masked
    on RGB frames instead. An output is kept only if every frame the input has was decoded.
    """
    t0 = time.perf_counter()
    info = probe(src)
    custom = detector is not None  # a caller's detector may keep state: call it in frame order
    frame_detector = _frame_detector(cfg, detector, info)  # slow (loads the network): before any output exists
    method = get_method(cfg.method)
    writer = _video_writer(src, dst, info, cfg)  # from here on, any exit aborts it (no temporary file left)
    stop = threading.Event()
    q_in: queue.Queue = queue.Queue(maxsize=FRAME_QUEUE)
    q_out: queue.Queue = queue.Queue(maxsize=FRAME_QUEUE)
    try:
        stages = [Stage(decode_stage(src, q_in, stop), "decode"), Stage(encode_stage(writer, q_out, stop), "encode")]
        log = FrameLog(sidecar_path(dst))
    except BaseException:
        writer.abort()
        raise
    pending: deque = deque()  # decoded frames waiting for the tracker's verdict, oldest first
    hw = target_hw(None, info.rotation, info.width, info.height)
    in_rgb = bool(info.rotation or info.width % 2 or info.height % 2)

    def emit(tf: TrackedFrame) -> None:
        frame = pending.popleft()
        if in_rgb:
            out = (anonymize_frame(to_rgb(frame, hw, info.rotation), tf.boxes, method, cfg.mask, cfg.margin), frame.pts)
        else:
            out = frame if frame.format.name == "yuv420p" else reformat(frame, format="yuv420p")
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
        halt(stages, stop)
        writer.abort()
        log.discard()
        raise
    finally:
        halt(stages, stop)
    extra = {"kind": "video", "width": info.width, "height": info.height, "fps": info.fps, "rate": str(info.rate),
             "time_base": str(info.time_base), "frame_count": len(log.faces), "detect_every": cfg.detect_every,
             "det_size": cfg.det_size, "tracker": asdict(_tracker_config(cfg))}
    log.finish(sidecar_path(dst), sidecar_head(cfg, src, dst, frame_detector, extra))
    return FileResult(str(src), str(dst), "done", "video", len(log.faces), sum(log.faces), time.perf_counter() - t0)
