"""Ingest benchmark: frames + log-mels for a 5-s 1280×720 30 fps clip with audio.

Ours (PyAV sampling at t_i = (i+0.5)·D/n, seek or one pass, + aligned log-mels) against the usual
peer recipe: decode every frame with OpenCV and pick the ones needed (same audio path for both,
so the ratio isolates the video side). Prints medians of several runs and the ratio.

    .venv/bin/python bench/ingest.py [--runs 5]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from affectlens.media import audio_windows, frame_times, load_audio, log_mel, probe, sample_frames, write_video


def make_clip(path: Path) -> Path:
    rng = np.random.default_rng(0)
    h, w, fps, secs = 720, 1280, 30, 5
    yy, xx = np.mgrid[0:h, 0:w]
    frames = np.empty((fps * secs, h, w, 3), np.uint8)
    base = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    for i in range(len(frames)):  # moving texture: real motion for the encoder
        frames[i] = np.roll(base, 4 * i, axis=1) // 2 + ((xx + yy + 8 * i) % 256 // 2)[..., None].astype(np.uint8)
    t = np.arange(secs * 16_000) / 16_000
    audio = (0.3 * np.sin(2 * np.pi * 300 * t) * (1 + np.sin(2 * np.pi * 0.5 * t))).astype(np.float32)
    # 2-s GOPs, as in typical phone / web footage
    return write_video(path, frames, fps, audio=audio, options={"g": "60"})


def ours(path: Path, n: int, method: str = "auto"):
    info = probe(path)
    frames = sample_frames(path, n, size=224, method=method)
    mels = log_mel(audio_windows(load_audio(path), frame_times(info.duration, n)))
    return frames, mels


def opencv_all_frames(path: Path, n: int):
    cap = cv2.VideoCapture(str(path))
    decoded = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        decoded.append(frame)
    cap.release()
    fps = 30.0
    duration = len(decoded) / fps
    idx = np.minimum((frame_times(duration, n) * fps).astype(int), len(decoded) - 1)
    frames = np.stack([cv2.resize(cv2.cvtColor(decoded[i], cv2.COLOR_BGR2RGB), (224, 224)) for i in idx])
    mels = log_mel(audio_windows(load_audio(path), frame_times(duration, n)))
    return frames.transpose(0, 3, 1, 2), mels


def median_time(fn, runs: int) -> float:
    fn()  # warm-up (imports, caches)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        clip = make_clip(Path(d) / "bench720p.mp4")
        info = probe(clip)
        print(f"clip: {info.width}x{info.height} {info.fps:.0f} fps {info.duration:.1f} s, {info.frame_count} frames, "
              f"2-s GOP, AAC audio; medians of {args.runs} runs")
        print(f"{'n':>4} {'ours auto s':>12} {'seek s':>8} {'scan s':>8} {'OpenCV all s':>13} {'speed-up':>9}")
        for n in (5, 75):
            t_auto = median_time(lambda: ours(clip, n), args.runs)
            t_seek = median_time(lambda: ours(clip, n, "seek"), args.runs)
            t_scan = median_time(lambda: ours(clip, n, "scan"), args.runs)
            t_cv = median_time(lambda: opencv_all_frames(clip, n), args.runs)
            print(f"{n:>4} {t_auto:>12.3f} {t_seek:>8.3f} {t_scan:>8.3f} {t_cv:>13.3f} {t_cv / t_auto:>8.2f}x")


if __name__ == "__main__":
    main()
