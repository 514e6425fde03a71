"""Tracking: missed detections inside a track are filled, boxes never shrink below the detection."""
from __future__ import annotations

import numpy as np

from affectlens.faces.detect import Detections
from affectlens.faces.track import FaceTracker, TrackerConfig, box_iou, track_boxes


def _moving(n: int, x0: float = 10.0, vx: float = 4.0, y: float = 20.0, size: float = 30.0) -> np.ndarray:
    xs = x0 + vx * np.arange(n)
    return np.stack([xs, np.full(n, y), xs + size, np.full(n, y + size)], 1).astype(np.float32)  # (n, 4)


def _covers(outer: np.ndarray, inner: np.ndarray, tol: float = 1e-3) -> bool:
    return bool((outer[:2] <= inner[:2] + tol).all() and (outer[2:] >= inner[2:] - tol).all())


def test_box_iou_hand_computed():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(box_iou(a, b), [[50 / 150, 0.0]])


def test_missed_frames_inside_a_track_are_interpolated():
    truth = _moving(20)
    dets = [truth[i:i + 1] if i not in (7, 8) else np.zeros((0, 4)) for i in range(20)]
    out = track_boxes(dets, TrackerConfig(max_gap=3, smooth=0, grow=0.0))
    assert [f.index for f in out] == list(range(20))
    for i in (7, 8):
        assert len(out[i].boxes) == 1 and not out[i].detected[0]
        np.testing.assert_allclose(out[i].boxes[0], truth[i], atol=1e-4)  # linear motion: exact
    assert len({int(f.track_ids[0]) for f in out}) == 1


def test_filled_boxes_grow_with_the_distance_to_a_detection():
    truth = _moving(20)
    dets = [truth[i:i + 1] if i not in (6, 7, 8) else np.zeros((0, 4)) for i in range(20)]
    out = track_boxes(dets, TrackerConfig(max_gap=3, smooth=0, grow=0.05))
    size = truth[0, 2] - truth[0, 0]
    for i, d in ((6, 1), (7, 2), (8, 1)):  # frames from the nearer detection
        box = out[i].boxes[0]
        assert _covers(box, truth[i])
        np.testing.assert_allclose(box[2] - box[0], size * (1 + 0.05 * d), rtol=1e-5)


def test_smoothed_box_always_contains_the_detection():
    rng = np.random.default_rng(0)
    truth = _moving(30) + rng.normal(0, 2, (30, 4)).astype(np.float32)
    out = track_boxes([t[None] for t in truth], TrackerConfig(smooth=2))
    for f, t in zip(out, truth):
        assert len(f.boxes) == 1 and _covers(f.boxes[0], t)


def test_track_end_is_held_then_dropped_and_start_has_pre_roll():
    truth = _moving(10)
    dets = [np.zeros((0, 4))] * 5 + [t[None] for t in truth] + [np.zeros((0, 4))] * 10
    cfg = TrackerConfig(max_gap=4, pre_roll=2, smooth=0)
    out = track_boxes(dets, cfg)
    counts = [len(f.boxes) for f in out]
    assert counts == [0, 0, 0, 1, 1] + [1] * 10 + [1] * 4 + [0] * 6
    held = out[15].boxes[0]
    assert _covers(held, truth[-1])  # the held box grows around the last detection


def test_two_faces_keep_their_own_tracks():
    a, b = _moving(12, x0=0), _moving(12, x0=200, vx=-3)
    dets = [np.stack([a[i], b[i]]) if i != 5 else a[i:i + 1] for i in range(12)]
    out = track_boxes(dets, TrackerConfig(smooth=0, grow=0.0))
    assert all(len(f.boxes) == 2 for f in out)
    assert set(out[5].track_ids.tolist()) == {0, 1}
    filled = out[5].boxes[~out[5].detected][0]
    np.testing.assert_allclose(filled, b[5], atol=1e-4)


def test_streaming_has_fixed_delay_and_matches_batch():
    truth = _moving(15)
    dets = [Detections(t[None], np.ones(1, np.float32), np.zeros((1, 5, 2), np.float32)) for t in truth]
    tracker = FaceTracker(TrackerConfig(max_gap=3))
    got = []
    for i, d in enumerate(dets):
        new = tracker.push(d)
        assert [f.index for f in new] == ([i - tracker.lag] if i >= tracker.lag else [])
        got.extend(new)
    got.extend(tracker.flush())
    ref = track_boxes(dets, TrackerConfig(max_gap=3))
    assert len(got) == len(ref) == 15
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g.boxes, r.boxes)


def test_link_ids_is_the_trackers_linking_and_survives_a_missed_frame():
    from affectlens.faces.track import TrackerConfig, link_ids

    a, b = np.array([[0, 0, 50, 50]], float), np.array([[200, 0, 250, 50]], float)
    frames = [np.concatenate([a, b]), np.concatenate([b + 5, a + 5]), b + 10, np.concatenate([a + 12, b + 15])]
    ids = link_ids(frames, TrackerConfig(max_gap=2))
    assert [list(i) for i in ids] == [[0, 1], [1, 0], [1], [0, 1]]   # face a missed in frame 2 keeps id 0
    assert [list(i) for i in link_ids(frames, TrackerConfig(max_gap=0))][3] == [2, 1]  # a gap too long: a new track


def test_a_face_seen_for_thousands_of_frames_keeps_a_short_history_and_the_same_boxes():
    """Memory on long videos: a track's old boxes are dropped as the stream moves on, and the
    returned boxes are exactly those of a tracker that keeps everything."""

    class KeepAll(FaceTracker):
        def _forget(self):
            pass

    rng = np.random.default_rng(0)
    frames = []
    for i in range(3000):  # one face drifting, missed now and then (gaps of 1-4 frames); a second one comes and goes
        boxes = [[100 + i * 0.05, 80, 160 + i * 0.05, 150]] if rng.random() > 0.2 else []
        if (i // 300) % 2:
            boxes.append([300, 40 + (i % 300) * 0.1, 360, 110 + (i % 300) * 0.1])
        frames.append(np.asarray(boxes, np.float32).reshape(-1, 4))
    trimmed, full = FaceTracker(), KeepAll()
    got, want, longest = [], [], 0
    for d in frames:
        got += trimmed.push(d)
        want += full.push(d)
        longest = max(longest, max((len(t.frames) for t in trimmed._tracks), default=0))
    got += trimmed.flush()
    want += full.flush()
    assert longest < 64 and max(len(t.frames) for t in full._tracks) > 2000
    assert len(got) == len(want) == len(frames)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.track_ids, b.track_ids)
        np.testing.assert_array_equal(a.detected, b.detected)
