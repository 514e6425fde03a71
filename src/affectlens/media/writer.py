"""Video writing with PyAV: H.264 video, the source's exact frame rate and time base, and its
audio packets copied unchanged (no re-encode), or new audio encoded as AAC for synthetic clips.

The file is written to a temporary path beside the target and renamed only when ``close`` succeeds,
so an interrupted job never leaves a half-written video behind.
"""
from __future__ import annotations

import os
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Optional

import av
import numpy as np

from affectlens.errors import MediaError
from affectlens.utils import _umask
from affectlens.media.video import open_media, probe


class VideoWriter:
    """Write RGB frames ``(H, W, 3)`` uint8 to an H.264 file.

    ``pts`` passed to ``write`` are in ``time_base`` units (default ``1/fps``, i.e. frame indices).
    ``audio_from``: a media file whose first audio stream is copied packet for packet.
    ``audio_sample_rate``: declare an AAC stream to be filled with ``write_audio``.
    """

    def __init__(self, path: str | Path, fps, width: int, height: int, *, time_base: Optional[Fraction] = None,
                 audio_from: str | Path | None = None, audio_sample_rate: Optional[int] = None,
                 crf: int = 20, preset: str = "veryfast", codec: str = "libx264",
                 options: Optional[dict] = None):
        self.path = Path(path)
        if audio_from is not None and Path(audio_from).resolve() == self.path.resolve():
            raise MediaError(self.path, "output path is the input path; refusing to overwrite the input")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=self.path.suffix or ".mp4", dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        os.chmod(self._tmp, 0o666 & ~_umask())
        self._src = None
        self._out = av.open(str(self._tmp), mode="w")
        rate = Fraction(fps).limit_denominator(1_000_000)
        self.time_base = Fraction(time_base) if time_base is not None else 1 / rate
        opts = {"crf": str(crf), "preset": preset, **(options or {})}  # e.g. {"g": "30"} for 1-s GOPs
        v = self._out.add_stream(codec, rate=rate, options=opts)
        if codec == "libx264" and (width % 2 or height % 2):
            self.abort()
            raise MediaError(self.path, f"H.264 in yuv420p needs even width and height, got {width}×{height}")
        v.width, v.height = int(width), int(height)
        v.pix_fmt = "yuv420p"
        v.time_base = self.time_base
        v.codec_context.time_base = self.time_base
        self._v = v
        self._n = 0
        self._src = self._a_in = self._a_out = self._packets = None
        self._pending = None
        if audio_from is not None:
            self._open_audio_source(Path(audio_from))
        self._a_enc = None
        if audio_sample_rate is not None:
            self._a_enc = self._out.add_stream("aac", rate=int(audio_sample_rate), layout="mono")
            self._a_samples = 0

    @classmethod
    def like(cls, src: str | Path, dst: str | Path, **kwargs) -> "VideoWriter":
        """A writer with ``src``'s frame rate, time base and displayed size that copies its audio."""
        info = probe(src)
        kwargs.setdefault("audio_from", src if info.audio else None)
        return cls(dst, info.rate, info.width, info.height, time_base=info.time_base, **kwargs)

    def _open_audio_source(self, src: Path) -> None:
        self._src = open_media(src)
        if not self._src.streams.audio:
            return
        self._a_in = self._src.streams.audio[0]
        self._a_out = self._out.add_stream_from_template(self._a_in)
        self._packets = self._audio_packets()

    def _audio_packets(self) -> Iterator[av.Packet]:
        for packet in self._src.demux(self._a_in):
            if packet.dts is not None and packet.size > 0:
                yield packet

    def _mux_audio_until(self, t: Optional[float]) -> None:
        """Copy source audio packets whose decode time is <= ``t`` seconds (all when ``t`` is None)."""
        if self._packets is None:
            return
        while True:
            if self._pending is None:
                self._pending = next(self._packets, None)
                if self._pending is None:
                    self._packets = None
                    return
            p = self._pending
            if t is not None and float(p.dts * p.time_base) > t:
                return
            p.stream = self._a_out
            self._out.mux(p)
            self._pending = None

    def _mux_video(self, packets) -> None:
        for packet in packets:
            if packet.dts is not None:
                self._mux_audio_until(float(packet.dts * packet.time_base))
            self._out.mux(packet)

    def write(self, rgb: np.ndarray, pts: Optional[int] = None) -> None:
        """Encode one RGB frame; ``pts`` in ``time_base`` units (default: the next frame index)."""
        rgb = np.ascontiguousarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[:2] != (self._v.height, self._v.width):
            raise MediaError(self.path, f"frame shape {rgb.shape} does not match {self._v.height}×{self._v.width}×3")
        frame = av.VideoFrame.from_ndarray(rgb.astype(np.uint8, copy=False), format="rgb24")
        self.write_frame(frame, self._n if pts is None else int(pts))

    def write_frame(self, frame: av.VideoFrame, pts: Optional[int] = None) -> None:
        """Encode a ready ``av.VideoFrame`` (e.g. a decoded yuv420p frame, no RGB round trip); ``pts``
        in ``time_base`` units (default: the frame's own). PyAV converts another pixel format."""
        if pts is not None:
            frame.pts = int(pts)
        frame.time_base = self.time_base
        self._n += 1
        self._mux_video(self._v.encode(frame))

    def write_audio(self, samples: np.ndarray, sample_rate: int) -> None:
        """Encode mono float samples in [-1, 1] to the declared AAC stream."""
        if self._a_enc is None or sample_rate != self._a_enc.codec_context.sample_rate:
            raise MediaError(self.path, f"no AAC stream declared at {sample_rate} Hz (pass audio_sample_rate)")
        data = np.clip(np.asarray(samples, dtype=np.float32).reshape(1, -1), -1, 1)
        frame = av.AudioFrame.from_ndarray(data, format="fltp", layout="mono")
        frame.sample_rate = sample_rate
        frame.pts = self._a_samples
        frame.time_base = Fraction(1, sample_rate)
        self._a_samples += data.shape[1]
        for packet in self._a_enc.encode(frame):
            self._out.mux(packet)

    def close(self) -> Path:
        """Flush encoders, copy the rest of the audio, and move the file into place."""
        self._mux_video(self._v.encode(None))
        self._mux_audio_until(None)
        if self._a_enc is not None:
            for packet in self._a_enc.encode(None):
                self._out.mux(packet)
        self._out.close()
        if self._src is not None:
            self._src.close()
        if self._n == 0:
            self._tmp.unlink(missing_ok=True)
            raise MediaError(self.path, "no frames were written")
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Discard the partial output."""
        for c in (self._out, self._src):
            try:
                if c is not None:
                    c.close()
            except Exception:  # closing a broken container must not hide the original error
                pass
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(path: str | Path, frames, fps, audio: Optional[np.ndarray] = None, sample_rate: int = 16_000,
                **kwargs) -> Path:
    """Write ``(T, H, W, 3)`` uint8 frames (and optional mono audio) as H.264 + AAC in one call."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise MediaError(path, f"frames must be a non-empty (T, H, W, 3) array, got {frames.shape}")
    _, h, w, _ = frames.shape
    with VideoWriter(path, fps, w, h, audio_sample_rate=sample_rate if audio is not None else None, **kwargs) as wr:
        if audio is not None:
            wr.write_audio(audio, sample_rate)
        for f in frames:
            wr.write(f)
    return Path(path)
