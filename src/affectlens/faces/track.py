"""Face tracks over video frames: detections linked by overlap, gaps filled, boxes smoothed.

A detector misses a face now and then (motion blur, a turned head): an anonymizer that masks only
what the detector saw shows that face for a frame, and the face flickers into view. ``FaceTracker``
links detections into tracks and, for every frame, returns boxes that

* follow each detection (the smoothed box is grown to contain the raw one, never shrunk below it);
* fill a gap of up to ``max_gap`` missed frames by interpolating between the boxes around it,
  grown by ``grow`` per frame of distance to the nearer detection (a face need not move linearly);
* hold (and slowly grow) the last box for ``max_gap`` frames after a track ends, and the first box
  for ``pre_roll`` frames before it starts, in case the detector was late.

It works as a stream with a fixed delay: ``push`` one frame's detections, get back the frames that
are now final (``lag = max_gap`` frames behind). ``track_boxes`` does a whole sequence at once.
Pure numpy; no video needed.
"""
from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from affectlens.faces.detect import Detections

__all__ = ["FaceTracker", "TrackedFrame", "TrackerConfig", "box_iou", "link_ids", "track_boxes"]


@dataclass(frozen=True)
class TrackerConfig:
    max_gap: int = 6  # missed frames bridged inside a track (also the output delay)
    pre_roll: int = 2  # frames masked before a track's first detection
    smooth: int = 2  # half-width of the centred moving average over a track's boxes
    iou: float = 0.2  # minimum overlap to link a detection to a track
    grow: float = 0.05  # held and filled boxes grow by this share of their size per frame from a detection


@dataclass(frozen=True)
class TrackedFrame:
    """The boxes to mask in frame ``index``: ``boxes`` (m, 4) x1,y1,x2,y2; ``track_ids`` (m,);
    ``detected`` (m,) bool, False where the box was filled in rather than seen."""

    index: int
    boxes: np.ndarray
    track_ids: np.ndarray
    detected: np.ndarray


@dataclass
class _Track:
    id: int
    frames: list = field(default_factory=list)  # sorted frame indices with a detection
    boxes: list = field(default_factory=list)  # (4,) float arrays, aligned with frames


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (n, 4) with every box in ``b`` (m, 4) -> (n, m)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)  # (n, m)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _grow(box: np.ndarray, share: float) -> np.ndarray:
    w, h = box[2] - box[0], box[3] - box[1]
    return box + np.array([-w, -h, w, h]) * share / 2


class FaceTracker:
    """Streaming tracker with a delay of ``config.max_gap`` frames (see the module docstring)."""

    def __init__(self, config: TrackerConfig = TrackerConfig()):
        self.config = config
        self.lag = max(config.max_gap, config.pre_roll, config.smooth)
        self._tracks: list[_Track] = []
        self._next_id = 0
        self._pushed = 0  # frames pushed so far
        self._emitted = 0  # frames returned so far

    def push(self, detections: Detections | np.ndarray) -> list[TrackedFrame]:
        """Add the next frame's detections; return the frames that are now final (possibly none)."""
        boxes = detections.boxes if isinstance(detections, Detections) else np.asarray(detections, np.float32)
        self._link(self._pushed, boxes.reshape(-1, 4).astype(np.float64))
        self._pushed += 1
        out = []
        while self._emitted <= self._pushed - 1 - self.lag:
            out.append(self._frame(self._emitted))
            self._emitted += 1
        self._forget()
        return out

    def flush(self) -> list[TrackedFrame]:
        """Return every frame not yet returned (call once after the last ``push``)."""
        out = [self._frame(i) for i in range(self._emitted, self._pushed)]
        self._emitted = self._pushed
        return out

    def _link(self, index: int, boxes: np.ndarray) -> np.ndarray:
        """Greedy matching by IoU between live tracks' last boxes and this frame's detections;
        returns the track id of each detection."""
        live = [t for t in self._tracks if index - t.frames[-1] <= self.config.max_gap + 1]
        free = set(range(len(boxes)))
        ids = np.full(len(boxes), -1, np.int64)
        if live and len(boxes):
            last = np.stack([t.boxes[-1] for t in live])
            iou = box_iou(last, boxes)  # (tracks, detections)
            for flat in np.argsort(-iou, axis=None):
                ti, di = np.unravel_index(flat, iou.shape)
                if iou[ti, di] < self.config.iou:
                    break
                if di in free and live[ti].frames[-1] != index:
                    live[ti].frames.append(index)
                    live[ti].boxes.append(boxes[di])
                    free.discard(di)
                    ids[di] = live[ti].id
        for di in sorted(free):
            self._tracks.append(_Track(self._next_id, [index], [boxes[di]]))
            ids[di] = self._next_id
            self._next_id += 1
        return ids

    def _forget(self) -> None:
        """Drop tracks that can no longer affect a frame still to be returned, and the old history
        of those that go on: a face seen for an hour would otherwise keep every box it had (about
        170 bytes a frame). Entries before ``horizon`` are never read again except the latest of them
        (the detection before a gap), which is kept, so trimming changes no returned box."""
        horizon = self._emitted - self.config.max_gap - self.config.smooth - 1
        self._tracks = [t for t in self._tracks if t.frames[-1] >= horizon]
        for t in self._tracks:
            k = bisect.bisect_left(t.frames, horizon) - 1
            if k >= 32:  # trim in steps, not every frame
                del t.frames[:k], t.boxes[:k]

    def _box_at(self, t: _Track, index: int) -> tuple[np.ndarray | None, bool]:
        cfg = self.config
        k = bisect.bisect_left(t.frames, index)
        if k < len(t.frames) and t.frames[k] == index:
            lo, hi = bisect.bisect_left(t.frames, index - cfg.smooth), bisect.bisect_right(t.frames, index + cfg.smooth)
            mean = np.mean(t.boxes[lo:hi], axis=0)
            raw = t.boxes[k]
            return np.concatenate([np.minimum(mean[:2], raw[:2]), np.maximum(mean[2:], raw[2:])]), True
        before = t.frames[k - 1] if k > 0 else None
        after = t.frames[k] if k < len(t.frames) else None
        if before is not None and after is not None and after - before - 1 <= cfg.max_gap:
            w = (index - before) / (after - before)
            box = (1 - w) * t.boxes[k - 1] + w * t.boxes[k]
            return _grow(box, cfg.grow * min(index - before, after - index)), False  # less sure away from a detection
        if before is not None and index - before <= cfg.max_gap:
            return _grow(t.boxes[k - 1], cfg.grow * (index - before)), False
        if after is not None and before is None and after - index <= cfg.pre_roll:
            return _grow(t.boxes[k], cfg.grow * (after - index)), False
        return None, False

    def _frame(self, index: int) -> TrackedFrame:
        boxes, ids, seen = [], [], []
        for t in self._tracks:
            box, detected = self._box_at(t, index)
            if box is not None:
                boxes.append(box)
                ids.append(t.id)
                seen.append(detected)
        return TrackedFrame(index, np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(ids, np.int64),
                            np.asarray(seen, bool))


def track_boxes(detections: Sequence[Detections | np.ndarray],
                config: TrackerConfig = TrackerConfig()) -> list[TrackedFrame]:
    """Track a whole sequence of per-frame detections; one ``TrackedFrame`` per input frame."""
    tracker = FaceTracker(config)
    out: list[TrackedFrame] = []
    for d in detections:
        out.extend(tracker.push(d))
    out.extend(tracker.flush())
    return out


def link_ids(boxes_per_frame: Sequence[np.ndarray], config: TrackerConfig = TrackerConfig()) -> list[np.ndarray]:
    """The track id of every detection, frame by frame: ``FaceTracker``'s linking alone, for callers
    that use the detected boxes themselves (``expression predict`` classifies each detected face and
    reads a track's crops as one sequence). A face missed in up to ``config.max_gap`` frames keeps
    its id."""
    tracker = FaceTracker(config)
    return [tracker._link(i, np.asarray(b, np.float64).reshape(-1, 4)) for i, b in enumerate(boxes_per_frame)]
