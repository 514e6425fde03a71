"""Memory of ``anonymize`` on a long video: peak resident memory and its growth per hour of video.

Makes a clip of ``--minutes`` (default 30) at 640x360 and ``--fps`` (default 5: a long clip made
and anonymized in a few minutes; the growth that matters is per frame, printed too): a photo of a
face (``--face``, ../shared/data/media/images/single_face.jpg; a drawn face-like pattern when it is
absent) drifting over a textured background, so every frame carries a detected box, and an AAC
tone, written by PyAV with x264's ultrafast preset. Then, each in a fresh process, anonymizes it
with the defaults (CenterFace, blur, every 4th frame detected) and, as the baseline, decodes and
re-encodes it alone through the same writer, while a thread reads VmRSS from /proc/self/status
every ``--every`` seconds next to the number of frames done. The slope is a least-squares line
through the samples of the second half of the frames (the first minutes of a run grow the
allocators' arenas, the detector's workspace and the codecs' buffers; on a 10-minute run RSS rose
~6 MB over the first 500 frames and ~1 MB over the 2500 after), up to the last frame (not the
job's teardown), in MB per hour of video and in bytes per frame; the bound is 10 MB per hour of
video. RSS at each tenth of the run is printed too. The baseline's slope is what FFmpeg's MP4
muxer itself adds (it keeps an index entry per video and audio packet in memory until it writes
the file's index at the end); the difference is anonymize's own.

    .venv/bin/python bench/long_video_memory.py
    .venv/bin/python bench/long_video_memory.py --minutes 60 --fps 30   # the issue's 30 fps case
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
FACE = REPO.parent / "shared" / "data" / "media" / "images" / "single_face.jpg"
BOUND_MB_PER_HOUR = 10.0


def rss_mb() -> float:
    """This process's resident memory (VmRSS) in MB, from /proc (no psutil needed)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def face_patch(photo: Path) -> np.ndarray:
    """``photo`` at 96 × 120 px (the face CenterFace finds), or a drawn oval with eyes and mouth."""
    import cv2

    if photo.is_file():
        from affectlens.media.image import read_image

        return np.ascontiguousarray(cv2.resize(read_image(photo), (96, 120), interpolation=cv2.INTER_AREA))
    face = np.full((120, 96, 3), 1, np.uint8)
    cv2.ellipse(face, (48, 60), (40, 56), 0, 0, 360, (205, 160, 130), -1)  # skin-toned oval
    for x in (32, 64):
        cv2.circle(face, (x, 48), 6, (40, 30, 30), -1)  # eyes
    cv2.ellipse(face, (48, 86), (16, 6), 0, 0, 180, (120, 60, 60), -1)  # mouth
    return face


def make_clip(path: Path, minutes: float, fps: int, face: np.ndarray, width: int = 640, height: int = 360) -> int:
    """Write the test clip; returns its frame count."""
    import av
    import cv2

    n = int(round(minutes * 60 * fps))
    rng = np.random.default_rng(0)
    background = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (0, 0), 4)
    inside = face.any(axis=2)
    sr = 16_000
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "28"})
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        a = out.add_stream("aac", rate=sr, layout="mono")
        for i in range(n):
            img = background.copy()
            x = int((width - 96) * (0.5 + 0.45 * np.sin(i / (7 * fps))))  # drifts across and back
            y = int((height - 120) * (0.5 + 0.4 * np.cos(i / (11 * fps))))
            img[y:y + 120, x:x + 96][inside] = face[inside]
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(v.encode(frame))
            if i % fps == 0:  # one second of a quiet tone
                t = np.arange(sr) / sr
                af = av.AudioFrame.from_ndarray((0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None],
                                                format="fltp", layout="mono")
                af.sample_rate, af.pts, af.time_base = sr, (i // fps) * sr, Fraction(1, sr)
                out.mux(a.encode(af))
        out.mux(v.encode(None))
        out.mux(a.encode(None))
    return n


def measure(job: str, src: Path, dst: Path, every: float) -> dict:
    """Run ``job`` on ``src`` in this (fresh) process, sampling VmRSS every ``every`` seconds next to
    the frames done: ``anonymize`` (the defaults) or ``baseline`` (decode and re-encode alone, into
    the very writer ``anonymize`` uses, same crf, audio copied, same allocator setting)."""
    from affectlens.media import VideoWriter, decoded_frames
    from affectlens.media.pipeline import encode_frame, steady_heap
    from affectlens.privacy.anonymize import AnonymizeConfig, anonymize_video

    done, samples, stop = [0], [], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append((done[0], rss_mb()))
            stop.wait(every)

    def on_frame(k: int) -> None:
        done[0] += k

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    faces = 0
    if job == "anonymize":
        faces = anonymize_video(src, dst, AnonymizeConfig(), on_frame=on_frame).faces
    else:
        steady_heap()  # the allocator setting every video job makes, so the difference is anonymize's own
        with VideoWriter.like(src, dst, crf=AnonymizeConfig().crf) as writer:
            for frame in decoded_frames(src):
                encode_frame(writer, frame)
                on_frame(1)
    seconds = time.perf_counter() - t0
    stop.set()
    sampler.join()
    samples.append((done[0], rss_mb()))
    return {"samples": samples, "seconds": seconds, "faces": faces}


def slope(samples: list, n: int) -> float:
    """MB per frame: a least-squares line through the samples of the second half of the frames, up
    to the last frame (samples after it see the job tear down and free its buffers, which would
    flatter the slope)."""
    frames = np.array([f for f, _ in samples], np.float64)
    mb = np.array([m for _, m in samples])
    late = (frames >= 0.5 * n) & (frames < n)
    return float(np.polyfit(frames[late], mb[late], 1)[0])


def tenths(samples: list, n: int) -> str:
    """RSS (MB) when each tenth of the frames was done."""
    frames = np.array([f for f, _ in samples])
    return " ".join(f"{samples[int(np.searchsorted(frames, k * n / 10))][1]:.0f}" if frames[-1] >= k * n / 10 else "-"
                    for k in range(1, 11))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--fps", type=int, default=5)
    ap.add_argument("--every", type=float, default=0.5, help="seconds between RSS samples")
    ap.add_argument("--face", type=Path, default=FACE, help="a photo of one face to move over the clip")
    ap.add_argument("--job", choices=("anonymize", "baseline"), help=argparse.SUPPRESS)  # the child's side
    ap.add_argument("--src", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.job:  # a child: one job, its samples as JSON on stdout
        print(json.dumps(measure(args.job, args.src, args.src.with_name(f"{args.job}.mp4"), args.every)))
        return

    with tempfile.TemporaryDirectory(prefix="bench_long_video_") as tmp:
        src = Path(tmp) / "long.mp4"
        t0 = time.perf_counter()
        n = make_clip(src, args.minutes, args.fps, face_patch(args.face))
        print(f"clip: {n} frames, {args.minutes:g} min at {args.fps} fps, 640x360, made in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
        runs = {}
        for job in ("anonymize", "baseline"):  # each in a fresh process: freed memory of one cannot hide the other's growth
            out = subprocess.run([sys.executable, __file__, "--job", job, "--src", str(src), "--every", str(args.every)],
                                 capture_output=True, text=True, check=True)
            runs[job] = json.loads(out.stdout.strip().splitlines()[-1])
    for job, r in runs.items():
        mb = [m for _, m in r["samples"]]
        per_frame = slope(r["samples"], n)
        r["per_hour"] = per_frame * args.fps * 3600
        print(f"{job:>9}: {n / r['seconds']:.0f} fps, RSS first {mb[0]:.0f} MB, peak {max(mb):.0f} MB; growth "
              f"{r['per_hour']:+.2f} MB per hour of video at {args.fps} fps ({per_frame * 2**20:+.0f} bytes a frame)"
              + (f", {r['faces']} face boxes" if job == "anonymize" else ""))
        print(f"{'':>9}  RSS MB at each tenth of the frames: {tenths(r['samples'], n)}")
    own = runs["anonymize"]["per_hour"] - runs["baseline"]["per_hour"]
    total = runs["anonymize"]["per_hour"]
    print(f"anonymize's own growth (its slope less the baseline's, FFmpeg's MP4 index): {own:+.2f} MB/h")
    print(f"slope {total:+.2f} MB/h, bound {BOUND_MB_PER_HOUR:g} MB/h: {'PASS' if total < BOUND_MB_PER_HOUR else 'FAIL'}")


if __name__ == "__main__":
    main()
