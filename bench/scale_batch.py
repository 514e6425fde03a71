"""Batch feature extraction over real video files: local (1 process) vs Ray with 2 workers.

Each item decodes a synthetic H.264+AAC clip, samples 15 frames at t_i = (i + 0.5)·D/n and the
5 aligned 1-s log-mel windows, and writes them to an .npz (atomically) — the group room's cache
step. Prints the median wall time of several runs for each backend (Ray's start-up excluded:
one session is reused) and the speed-up against the ideal bound of 2× for 2 workers.

    .venv/bin/python bench/scale_batch.py [--clips 8] [--runs 3]
"""
from __future__ import annotations

import argparse
import functools
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from affectlens.media import audio_windows, frame_times, load_audio, log_mel, probe, sample_frames, write_video
from affectlens.scale import run_batch
from affectlens.files import atomic_path


def make_clips(folder: Path, n: int, seconds: float = 5.0, fps: int = 25) -> list[Path]:
    rng = np.random.default_rng(0)
    clips = []
    for k in range(n):
        frames = rng.integers(0, 256, (int(seconds * fps), 144, 256, 3), dtype=np.uint8)
        audio = (0.1 * rng.standard_normal(int(seconds * 16_000))).astype(np.float32)
        clips.append(write_video(folder / f"clip{k:02d}.mp4", frames, fps, audio=audio))
    return clips


def out_of(clip: Path, out_dir: Path) -> Path:
    return out_dir / f"{Path(clip).stem}.npz"


def features(clip: Path, out_dir: Path) -> Path:
    info = probe(clip)
    frames = sample_frames(clip, 15, size=112)
    mels = log_mel(audio_windows(load_audio(clip), frame_times(info.duration, 5)))
    out = out_of(clip, out_dir)
    with atomic_path(out) as tmp:
        np.savez(tmp, frames=frames, mels=mels)
    return out


def timed(clips: list[Path], out_dir: Path, backend: str) -> float:
    shutil.rmtree(out_dir, ignore_errors=True)
    t0 = time.perf_counter()
    res = run_batch(clips, functools.partial(features, out_dir=out_dir), functools.partial(out_of, out_dir=out_dir),
                    backend=backend, progress=False)
    seconds = time.perf_counter() - t0
    assert res.ok and len(res.done) == len(clips), res.failed
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    import ray

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        clips = make_clips(d / "in", args.clips)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            timed(clips, d / "warm", "ray")  # first tasks import torch/av/librosa in the workers
            local = statistics.median(timed(clips, d / "local", "local") for _ in range(args.runs))
            remote = statistics.median(timed(clips, d / "ray", "ray") for _ in range(args.runs))
        finally:
            ray.shutdown()
    speedup = local / remote
    print(f"{args.clips} clips, median of {args.runs}: local {local:.2f} s, ray×2 {remote:.2f} s")
    print(f"speed-up {speedup:.2f}× = {speedup / 2:.0%} of the ideal 2× for 2 workers")


if __name__ == "__main__":
    main()
