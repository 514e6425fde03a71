"""media/: probe, time-exact sampling, aligned audio, log-mel and the writer, on real files written here."""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from affectlens.errors import MediaError
from affectlens.media import (
    VideoWriter,
    audio_windows,
    decoded_frames,
    frame_times,
    iter_frames,
    load_audio,
    log_mel,
    probe,
    sample_frames,
    writable_planes,
)
from tests.conftest import shared_path
from tests.media.clips import H, W, index_frame, make_clip, read_index, tone


def shown_index(t: float, pts_seconds: np.ndarray) -> int:
    """The frame a player shows at ``t``: the last one whose presentation time is <= t."""
    return int(np.searchsorted(pts_seconds, t + 1e-9, side="right") - 1)


@pytest.mark.parametrize("fps", [15, 25, 30])
def test_probe_and_frames_at_contract_times(tmp_path, fps):
    n_frames = 3 * fps  # 3 s
    clip = make_clip(tmp_path / f"c{fps}.mp4", n_frames, fps=fps, audio=tone(3.0, 44_100))
    info = probe(clip)
    assert info.frame_count == n_frames
    assert info.fps == pytest.approx(fps)
    assert info.duration == pytest.approx(3.0)
    assert not info.variable_fps
    assert (info.width, info.height) == (W, H)
    assert info.audio is not None and info.audio.sample_rate == 44_100 and info.audio.channels == 1
    pts = np.arange(n_frames) / fps
    for n in (5, 7, 75):
        times = frame_times(info.duration, n)
        expected = [shown_index(t, pts) for t in times]
        for method in ("seek", "scan"):
            frames = sample_frames(clip, n, method=method)
            assert frames.shape == (n, 3, H, W) and frames.dtype == np.uint8
            got = [read_index(f.transpose(1, 2, 0)) for f in frames]
            assert got == expected, (method, n)


def test_resize_keeps_content(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", 20, fps=10)
    frames = sample_frames(clip, 4, size=(32, 64))
    assert frames.shape == (4, 3, 32, 64)
    assert [read_index(f.transpose(1, 2, 0)) for f in frames] == [2, 7, 12, 17]
    assert sample_frames(clip, 2, size=24).shape == (2, 3, 24, 24)


def test_variable_frame_rate(tmp_path):
    rng = np.random.default_rng(0)
    steps = rng.choice([20, 40, 90], size=60)  # ms between frames: irregular
    pts = np.concatenate([[0], np.cumsum(steps)[:-1]]).astype(int)
    clip = make_clip(tmp_path / "vfr.mp4", 60, fps=25, pts=list(pts), time_base=Fraction(1, 1000))
    info = probe(clip)
    assert info.variable_fps
    assert info.frame_count == 60
    pts_s = pts / 1000.0
    times = frame_times(info.duration, 23)
    expected = [shown_index(t, pts_s) for t in times]
    for method in ("seek", "scan"):
        got = [read_index(f.transpose(1, 2, 0)) for f in sample_frames(clip, 23, method=method)]
        assert got == expected, method


def test_video_starting_late_uses_the_clip_clock(tmp_path):
    # the first frame at 0.852 s: times are measured from it, as a viewer of the clip sees them
    tb = Fraction(1, 12800)
    start = int(0.852 / tb)
    pts = [start + i * 512 for i in range(50)]  # 25 fps
    clip = make_clip(tmp_path / "late.mp4", 50, fps=25, pts=pts, time_base=tb)
    info = probe(clip)
    assert info.start_time == pytest.approx(0.852, abs=1e-3)
    assert info.duration == pytest.approx(2.0)
    got = [read_index(f.transpose(1, 2, 0)) for f in sample_frames(clip, 5)]
    assert got == [5, 15, 25, 35, 45]


def test_rotation_is_applied(tmp_path):
    clip = make_clip(tmp_path / "rot.mp4", 10, fps=10, rotation=90)
    info = probe(clip)
    assert info.rotation in (90, 270)
    assert (info.width, info.height) == (H, W)  # displayed portrait
    frame = sample_frames(clip, 1)[0].transpose(1, 2, 0)
    assert frame.shape == (W, H, 3)
    # the display matrix says "rotate 90° counter-clockwise": undo it and the bands read the index
    k = 1 if info.rotation == 90 else -1
    assert read_index(np.rot90(frame, k=k)) == 5


def test_one_frame_clip(tmp_path):
    clip = make_clip(tmp_path / "one.mp4", 1, fps=25)
    info = probe(clip)
    assert info.frame_count == 1 and info.duration == pytest.approx(0.04)
    frames = sample_frames(clip, 5)
    assert [read_index(f.transpose(1, 2, 0)) for f in frames] == [0] * 5


def test_iter_frames_yields_every_frame_in_order(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", 30, fps=30)
    seen = [(t, read_index(rgb)) for t, _, rgb in iter_frames(clip)]
    assert [i for _, i in seen] == list(range(30))
    assert seen[10][0] == pytest.approx(10 / 30)


def test_writable_planes_change_a_frame_without_disturbing_later_ones(tmp_path):
    """The frames of a slow pan are predicted from the ones before: changing a decoded frame through
    its planes must not change what the decoder makes of the next frames (writing into the buffer
    the decoder keeps as a reference would)."""
    import cv2

    texture = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (H, W + 40, 3), np.uint8), (0, 0), 3)
    clip = tmp_path / "pan.mp4"
    with VideoWriter(clip, Fraction(25), W, H) as writer:
        for i in range(30):
            writer.write(np.ascontiguousarray(texture[:, i:i + W]))

    def pictures(change: bool) -> list[bytes]:
        out = []
        for frame in decoded_frames(clip):
            out.append(frame.to_ndarray().tobytes())
            if change:
                y, u, v = writable_planes(frame)
                assert y.shape == (H, W) and u.shape == v.shape == (H // 2, W // 2)
                y[:] = 0
                assert (frame.to_ndarray()[:H] == 0).all()  # the views are the frame's own buffer
        return out

    assert pictures(change=True) == pictures(change=False)


def test_audio_length_and_tone_burst_alignment(tmp_path):
    sr_src = 44_100
    clip = make_clip(tmp_path / "burst.mp4", 125, fps=25, audio=tone(5.0, sr_src, burst=(1.2, 1.4)), sr=sr_src)
    audio = load_audio(clip)
    assert audio.dtype == np.float32 and audio.shape == (5 * 16_000,)
    env = np.abs(audio) > 0.1
    onset = np.argmax(env) / 16_000
    offset = (len(env) - np.argmax(env[::-1])) / 16_000
    assert onset == pytest.approx(1.2, abs=0.005) and offset == pytest.approx(1.4, abs=0.005)
    # 5 frames: the 1-s windows are [0,1), [1,2), ...: the burst lands in window 1 only
    w5 = audio_windows(audio, frame_times(5.0, 5))
    energy = (w5**2).sum(axis=1)
    assert w5.shape == (5, 16_000) and np.argmax(energy) == 1 and energy[[0, 2, 3, 4]].max() < 1e-3 * energy[1]
    # 75 frames (67 ms hop): windows whose centre is within 0.5 s of the burst hear it
    times = frame_times(5.0, 75)
    e75 = (audio_windows(audio, times) ** 2).sum(axis=1)
    hears = e75 > 0.01 * e75.max()
    expected = (times + 0.5 > 1.2) & (times - 0.5 < 1.4)
    assert (hears == expected).mean() > 0.97


def test_audio_windows_zero_pad_at_edges():
    audio = np.ones(16_000 * 2, dtype=np.float32)
    w = audio_windows(audio, [0.0, 1.0, 2.0])
    assert w.shape == (3, 16_000)
    assert w[0, :8000].sum() == 0 and w[0, 8000:].min() == 1
    assert w[1].min() == 1
    assert w[2, 8000:].sum() == 0


def test_log_mel_shape_and_values():
    sr = 16_000
    t = np.arange(sr) / sr
    low = np.sin(2 * np.pi * 200 * t).astype(np.float32)
    high = np.sin(2 * np.pi * 4000 * t).astype(np.float32)
    mel = log_mel(np.stack([low, high, np.zeros(sr, np.float32)]))
    assert mel.shape == (3, 1, 128, 251) and mel.dtype == np.float32
    assert np.argmax(mel[0, 0].mean(axis=1)) < np.argmax(mel[1, 0].mean(axis=1))
    assert np.all(mel[2] == -80.0)


def test_log_mel_matches_librosa_reference():
    import librosa

    rng = np.random.default_rng(1)
    windows = (0.1 * rng.standard_normal((3, 16_000))).astype(np.float32)
    ref = librosa.power_to_db(librosa.feature.melspectrogram(y=windows, sr=16_000, n_fft=1024, hop_length=64,
                                                             n_mels=128, center=True), ref=1.0, amin=1e-10, top_db=None)
    np.testing.assert_allclose(log_mel(windows)[:, 0], np.maximum(ref, -80), atol=1e-3)


def test_missing_audio_errors_or_gives_silence(tmp_path):
    clip = make_clip(tmp_path / "silent.mp4", 20, fps=10)
    with pytest.raises(MediaError, match="no audio track"):
        load_audio(clip)
    with pytest.warns(UserWarning, match="no audio track"):
        audio = load_audio(clip, missing="silence")
    assert audio.shape == (32_000,) and not audio.any()


def test_audio_only_file(tmp_path):
    import soundfile as sf

    path = tmp_path / "speech.flac"
    sf.write(path, tone(2.0, 22_050), 22_050)
    audio = load_audio(path)
    assert audio.shape == (32_000,)
    assert np.abs(audio).max() == pytest.approx(0.5, abs=0.02)


def test_bad_inputs_raise_one_line_media_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("not a video at all\n" * 20)
    (tmp_path / "empty.mp4").write_bytes(b"")
    good = make_clip(tmp_path / "good.mp4", 50, fps=25, audio=tone(2.0, 44_100))
    data = good.read_bytes()
    (tmp_path / "trunc.mp4").write_bytes(data[: len(data) // 2])
    cases = {"missing.mp4": "not found", "notes.txt": "not a media file", "empty.mp4": "empty file",
             "trunc.mp4": "corrupt or truncated"}
    for name, reason in cases.items():
        with pytest.raises(MediaError) as err:
            sample_frames(tmp_path / name, 3)
        msg = str(err.value)
        assert name in msg and reason in msg and "\n" not in msg


def test_zero_length_clip(tmp_path):
    path = tmp_path / "zero.mkv"  # Matroska keeps a track with no frames; MP4 drops it
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        out.start_encoding()  # header and trailer, but not one frame
    assert path.stat().st_size > 0
    with pytest.raises(MediaError, match="zero-length|no frames|not a media"):
        probe(path)


def _audio_packets(path):
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        return [(bytes(p), p.pts) for p in c.demux(s) if p.size]


@pytest.mark.parametrize("rate", [Fraction(24000, 1001), Fraction(25)])
def test_writer_keeps_rate_timebase_timestamps_and_audio_bits(tmp_path, rate):
    tb = Fraction(1, 24000) if rate.denominator == 1001 else Fraction(1, 12800)
    step = int(round(1 / (rate * tb)))
    start = int(0.852 / tb)
    src = make_clip(tmp_path / "src.mp4", 48, fps=rate, pts=[start + i * step for i in range(48)], time_base=tb,
                    audio=tone(2.0, 48_000, burst=(0.5, 1.0)), sr=48_000, audio_start=0.852)
    dst = tmp_path / "out" / "dst.mp4"
    with VideoWriter.like(src, dst) as w:
        for _, frame, rgb in iter_frames(src):
            w.write(255 - rgb, pts=frame.pts)
    a, b = probe(src), probe(dst)
    assert b.rate == a.rate == rate
    assert b.frame_count == a.frame_count == 48
    assert (b.width, b.height) == (a.width, a.height)
    assert b.start_time == pytest.approx(a.start_time, abs=1e-4)
    assert b.duration == pytest.approx(a.duration, abs=1e-4)
    assert _audio_packets(dst) == _audio_packets(src)  # copied, not re-encoded
    got = [read_index(255 - f.transpose(1, 2, 0)) for f in sample_frames(dst, 6)]
    assert got == [read_index(f.transpose(1, 2, 0)) for f in sample_frames(src, 6)]
    assert not list(dst.parent.glob(".*"))  # no temporary file left behind


def test_writer_never_leaves_half_written_output(tmp_path):
    dst = tmp_path / "x.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(dst, 25, W, H) as w:
            w.write(index_frame(0))
            raise RuntimeError("interrupted")
    assert not dst.exists() and not list(tmp_path.iterdir())


def test_writer_refuses_to_overwrite_its_input(tmp_path):
    src = make_clip(tmp_path / "src.mp4", 5, fps=5, audio=tone(1.0, 44_100))
    with pytest.raises(MediaError, match="overwrite"):
        VideoWriter.like(src, src)


@pytest.mark.shared_data
def test_real_clips():
    clips = sorted(p for p in shared_path("media", "clips").iterdir() if p.suffix in (".mp4", ".mov"))
    assert clips
    for clip in clips:
        info = probe(clip)
        assert info.duration > 0 and info.frame_count > 0 and info.width > 0
        frames = sample_frames(clip, 5, size=112)
        assert frames.shape == (5, 3, 112, 112) and frames.std() > 1  # real pictures, not blank
        if info.audio:
            audio = load_audio(clip)
            assert len(audio) == int(round(info.duration * 16_000))
            mel = log_mel(audio_windows(audio, frame_times(info.duration, 5)))
            assert mel.shape == (5, 1, 128, 251) and np.isfinite(mel).all()
    hamilton = shared_path("media", "clips", "short_hamilton_clip.mp4")
    # seek and scan agree on a real H.264 clip with B-frames
    np.testing.assert_array_equal(sample_frames(hamilton, 5, size=64, method="seek"),
                                  sample_frames(hamilton, 5, size=64, method="scan"))


def test_transform_video_keeps_timing_and_audio_and_never_leaves_half_an_output(tmp_path):
    import av

    from affectlens.media import probe, transform_video, write_video

    frames = np.zeros((12, 48, 64, 3), np.uint8)
    frames[:, :, :32] = 200
    audio = (0.2 * np.sin(np.arange(16_000) / 8)).astype(np.float32)
    src = write_video(tmp_path / "in.mp4", frames, 12, audio=audio)
    seen = []

    def invert(rgb, t):
        seen.append(t)
        return 255 - rgb

    out = transform_video(src, tmp_path / "out.mp4", invert)
    a, b = probe(src), probe(out)
    assert (b.frame_count, b.width, b.height, b.rate, b.audio is not None) == (a.frame_count, 64, 48, a.rate, True)
    with av.open(str(src)) as x, av.open(str(out)) as y:
        assert [f.pts for f in x.decode(video=0)] == [f.pts for f in y.decode(video=0)]
    first = sample_frames(out, 1)[0].transpose(1, 2, 0)
    assert first[:, :28].mean() < 70 and first[:, 36:].mean() > 185           # left dark, right light now
    assert seen == sorted(seen) and abs(seen[1] - seen[0] - 1 / 12) < 1e-6

    def broken(rgb, t):
        if t > 0.3:
            raise RuntimeError("boom")
        return rgb

    with pytest.raises(RuntimeError, match="boom"):
        transform_video(src, tmp_path / "half.mp4", broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mp4"]  # nothing half-written left


def test_video_jobs_keep_large_buffers_out_of_the_arenas(tmp_path, monkeypatch):
    import platform

    from affectlens.media import pipeline, transform_video, write_video
    from affectlens.privacy import video as anonymizer

    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert pipeline.steady_heap() is True                      # glibc took the fixed threshold
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert pipeline.steady_heap() is False                         # the user's own choice stands
    calls, job = [], ["transform"]
    monkeypatch.setattr(pipeline, "steady_heap", lambda: calls.append(job[0]))  # the stages every video job shares
    src = write_video(tmp_path / "in.mp4", np.zeros((3, 32, 32, 3), np.uint8), 10)
    transform_video(src, tmp_path / "out.mp4", lambda rgb, t: rgb)
    job[0] = "anonymize"
    anonymizer.anonymize_video(src, tmp_path / "anon.mp4", detector=lambda img: anonymizer.Detections.empty())
    assert calls == ["transform", "anonymize"]


def test_to_rgb_reuses_one_scaler_per_thread_across_sizes_and_formats():
    import threading

    import av

    from affectlens.media.video import _reformatter, to_rgb

    rng = np.random.default_rng(0)
    frames = [av.VideoFrame.from_ndarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), format="rgb24").reformat(format=f)
              for h, w, f in [(48, 64, "yuv420p"), (32, 32, "yuv444p"), (48, 64, "yuv420p"), (36, 20, "rgb24")]]
    for frame, hw in zip(frames, [(48, 64), (16, 16), (24, 32), (36, 20)]):
        got = to_rgb(frame, hw, 0, interpolation="AREA")
        want = frame.to_ndarray(format="rgb24", width=hw[1], height=hw[0], interpolation="AREA")
        np.testing.assert_array_equal(got, want)                      # the same pixels as a fresh scaler
    other = []
    t = threading.Thread(target=lambda: other.append(_reformatter()))
    t.start(), t.join()
    assert other[0] is not _reformatter() and _reformatter() is _reformatter()
