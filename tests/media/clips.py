"""Real media written at test time with PyAV: H.264 + AAC clips whose pixels carry the frame index."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

BITS = 8
BLOCK = 16
H, W = 48, BITS * BLOCK  # 48 × 128


def index_frame(i: int) -> np.ndarray:
    """An RGB frame whose 8 vertical bands spell ``i`` in binary (white = 1): survives H.264."""
    img = np.zeros((H, W, 3), dtype=np.uint8)
    for b in range(BITS):
        if (i >> b) & 1:
            img[:, b * BLOCK:(b + 1) * BLOCK] = 255
    return img


def read_index(rgb_hwc: np.ndarray) -> int:
    """Inverse of ``index_frame`` on a decoded (possibly resized) frame."""
    h, w, _ = rgb_hwc.shape
    band = w / BITS
    return sum(1 << b for b in range(BITS)
               if rgb_hwc[h // 4: 3 * h // 4, int(b * band + band / 4): int((b + 1) * band - band / 4)].mean() > 127)


def tone(duration: float, sr: int, burst: tuple[float, float] | None = None, freq: float = 440.0) -> np.ndarray:
    """Silence with an optional sine burst between ``burst[0]`` and ``burst[1]`` seconds; else a full tone."""
    t = np.arange(int(round(duration * sr))) / sr
    y = 0.5 * np.sin(2 * np.pi * freq * t)
    if burst is not None:
        y = np.where((t >= burst[0]) & (t < burst[1]), y, 0.0)
    return y.astype(np.float32)


def make_clip(path: Path, n_frames: int, fps=25, audio: np.ndarray | None = None, sr: int = 44_100,
              pts: list[int] | None = None, time_base: Fraction | None = None, rotation: int = 0,
              audio_start: float = 0.0) -> Path:
    """Write frames ``0..n_frames-1`` (index in the pixels) with explicit ``pts`` when given (VFR)."""
    rate = Fraction(fps)
    tb = time_base or 1 / rate
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=rate, options={"crf": "18", "preset": "ultrafast"})
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        v.time_base = v.codec_context.time_base = tb
        if rotation:
            v.set_display_rotation(rotation)
        a = out.add_stream("aac", rate=sr, layout="mono") if audio is not None else None
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(index_frame(i), format="rgb24")
            frame.pts = pts[i] if pts is not None else i
            frame.time_base = tb
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
        if a is not None:
            af = av.AudioFrame.from_ndarray(audio.reshape(1, -1).astype(np.float32), format="fltp", layout="mono")
            af.sample_rate = sr
            af.time_base = Fraction(1, sr)
            af.pts = int(round(audio_start * sr))
            out.mux(a.encode(af))
            out.mux(a.encode(None))
    return path


# the codecs each container usually carries (what a user's file of that type holds), B-frames included
NATIVE = {".mp4": ("libx264", "aac"), ".mov": ("libx264", "aac"), ".m4v": ("libx264", "aac"),
          ".mkv": ("libx264", "aac"), ".ts": ("libx264", "aac"), ".webm": ("libvpx-vp9", "libopus"),
          ".avi": ("mpeg4", "mp3"), ".mpg": ("mpeg2video", "mp2"), ".mpeg": ("mpeg1video", "mp2")}


def make_native_clip(path: Path, n_frames: int = 20, fps: int = 25, sr: int = 48_000) -> Path:
    """Frames ``0..n_frames-1`` (index in the pixels) and a tone, in the codecs ``path``'s container
    usually holds (``NATIVE``), written by FFmpeg's own muxer defaults (MPEG-PS starts at 0.5 s)."""
    vcodec, acodec = NATIVE[path.suffix]
    opts = {"libx264": {"preset": "veryfast"}, "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8"}}.get(vcodec, {})
    with av.open(str(path), "w") as out:
        v = out.add_stream(vcodec, rate=fps, options=opts)
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        if vcodec.startswith("mpeg"):
            v.codec_context.max_b_frames = 2
        a = out.add_stream(acodec, rate=sr, layout="mono")
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(index_frame(i), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
        af = av.AudioFrame.from_ndarray(tone(n_frames / fps, sr).reshape(1, -1), format="fltp", layout="mono")
        af.sample_rate, af.pts, af.time_base = sr, 0, Fraction(1, sr)
        out.mux(a.encode(af))
        out.mux(a.encode(None))
    return path
