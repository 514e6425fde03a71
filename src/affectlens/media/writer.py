"""Video writing with PyAV: the source's exact frame rate, time base and frame timestamps, and its
audio packets copied unchanged (no re-encode) where the container takes them, or new audio encoded
as AAC for synthetic clips.

Each accepted output extension has one ``Container`` entry (``CONTAINERS``): the video encoder it
takes (H.264; VP9 for WebM, MPEG-4 Part 2 for AVI, MPEG-2 for .mpg), whether B-frames may be
used, and the audio codecs it stores as they are; source audio of any other codec is re-encoded
to that container's audio codec.

The file is written to a temporary path beside the target and renamed only when ``close`` succeeds,
so an interrupted job never leaves a half-written video behind.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Optional

import av
import numpy as np

from affectlens.errors import MediaError
from affectlens.media.video import open_media, probe
from affectlens.files import temp_beside


@dataclass(frozen=True)
class Container:
    """How ``VideoWriter`` fills one kind of file: the video ``codec`` (with ``b_frames`` or not),
    the audio codecs it stores as they are (``audio_copy``; any other is re-encoded to
    ``audio_codec``), the muxer's ``options``, and whether it can hold a ``variable_rate``.

    The choices keep every frame where it was: MPEG-TS would start the picture as late as the
    B-frames' decode delay, so it gets none. AVI stores no presentation times (``starts_at_zero``:
    every stream starts at 0): B-frames come back in decode order, and FFmpeg reads every H.264
    frame in AVI one frame late, so AVI gets MPEG-4 Part 2 without B-frames. MPEG-PS (.mpg) gets
    MPEG-2 in low-delay mode with no preload, which otherwise start it one frame and 0.5 s late;
    MPEG-2 takes only its own set of constant frame rates. Both encoders count time in frames
    (``frame_slots``), so neither can hold a ``variable_rate``.
    ``avoid_negative_ts=disabled`` keeps the audio encoder's priming (AAC's first packet starts
    before 0) from shifting every timestamp of Matroska and MPEG-TS files.
    """

    codec: str
    audio_copy: frozenset[str]
    audio_codec: str
    b_frames: bool = True
    frame_slots: bool = False
    starts_at_zero: bool = False
    variable_rate: bool = True
    options: tuple[tuple[str, str], ...] = ()


_MP4_AUDIO = frozenset({"aac", "mp3", "ac3", "eac3", "alac", "flac", "opus"})
_MPEG_AUDIO = frozenset({"mp2", "mp3", "ac3"})
_KEEP_NEGATIVE = (("avoid_negative_ts", "disabled"),)
_MPEG_PS = Container("mpeg2video", _MPEG_AUDIO, "mp2", b_frames=False, frame_slots=True, variable_rate=False,
                     options=(("preload", "0"),))
CONTAINERS: dict[str, Container] = {
    ".mp4": Container("libx264", _MP4_AUDIO, "aac"),
    ".mov": Container("libx264", _MP4_AUDIO | {"pcm_s16le", "pcm_s16be", "pcm_s24le"}, "aac"),
    ".m4v": Container("libx264", frozenset({"aac", "ac3", "alac"}), "aac"),
    ".mkv": Container("libx264", _MP4_AUDIO | _MPEG_AUDIO | {"vorbis", "pcm_s16le"}, "aac", options=_KEEP_NEGATIVE),
    ".webm": Container("libvpx-vp9", frozenset({"opus", "vorbis"}), "libopus", options=_KEEP_NEGATIVE),
    ".avi": Container("mpeg4", _MPEG_AUDIO | {"pcm_s16le"}, "mp3", b_frames=False, frame_slots=True,
                      starts_at_zero=True, variable_rate=False, options=_KEEP_NEGATIVE),
    ".mpg": _MPEG_PS,
    ".mpeg": _MPEG_PS,
    ".ts": Container("libx264", _MPEG_AUDIO | {"aac", "eac3", "opus"}, "aac", b_frames=False, options=_KEEP_NEGATIVE),
}


@functools.cache
def writable_video_exts() -> tuple[str, ...]:
    """The output extensions ``VideoWriter`` can write with this build of FFmpeg (PyAV's)."""
    def can_encode(codec: str) -> bool:
        try:
            return av.Codec(codec, "w") is not None
        except (av.error.FFmpegError, ValueError):  # an FFmpeg built without it
            return False

    return tuple(sorted(ext for ext, c in CONTAINERS.items() if can_encode(c.codec) and can_encode(c.audio_codec)))


def container_for(path: str | Path) -> Container:
    """``path``'s ``Container``, or a ``MediaError`` naming it and the extensions that can be written."""
    path = Path(path)
    ext = path.suffix.lower() or ".mp4"
    if ext not in writable_video_exts():
        raise MediaError(path, f"cannot write a video as {path.suffix or 'a file without extension'!r}: "
                               f"choose one of {', '.join(writable_video_exts())}")
    return CONTAINERS[ext]


def _encoder_options(c: Container, crf: int, preset: str) -> dict:
    """Constant-quality options for x264's ``crf``. VP9 takes the same number on its own 0-63
    scale; MPEG-4 Part 2 and MPEG-2 a fixed quantiser, ``crf / 6`` (18 -> 3). On a blurred-noise
    pan at crf 18 the mean error is 1.75 grey levels for H.264, 1.74 for VP9, 1.96 for MPEG-4 Part 2
    and 1.86 for MPEG-2 (files 1.2, 2.7 and 3 times the H.264 one)."""
    if c.codec == "libvpx-vp9":
        return {"crf": str(crf), "b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"}
    if c.codec in ("mpeg4", "mpeg2video"):
        q = max(2, min(31, round(crf / 6))) * 118  # a quantiser in FFmpeg's lambda units (FF_QP2LAMBDA)
        return {"flags": "+qscale+low_delay" if c.codec == "mpeg2video" else "+qscale", "global_quality": str(q), "bf": "0"}
    return {"crf": str(crf), "preset": preset, **({} if c.b_frames else {"bf": "0"})}


class VideoWriter:
    """Write RGB frames ``(H, W, 3)`` uint8 (or decoded ``av.VideoFrame``s) to a video file whose
    extension picks the ``Container`` (``container_for``; unknown ones are refused before anything
    is written).

    ``pts`` passed to ``write`` are in ``time_base`` units (default ``1/fps``, i.e. frame indices).
    ``audio_from``: a media file whose first audio stream is copied packet for packet (re-encoded
    where the container does not take its codec). ``audio_sample_rate``: declare an audio stream
    (the container's ``audio_codec``: AAC in MP4) to be filled with ``write_audio``. An odd width
    or height is kept: H.264 is then written in yuv444p (its 4:2:0 needs even sizes). Encoder
    settings the container cannot take (e.g. a frame rate MPEG-2 lacks) fail here, before any frame.
    """

    def __init__(self, path: str | Path, fps, width: int, height: int, *, time_base: Optional[Fraction] = None,
                 audio_from: str | Path | None = None, audio_sample_rate: Optional[int] = None,
                 crf: int = 20, preset: str = "veryfast", options: Optional[dict] = None):
        self.path = Path(path)
        if audio_from is not None and Path(audio_from).resolve() == self.path.resolve():
            raise MediaError(self.path, "output path is the input path; refusing to overwrite the input")
        self.container = container_for(self.path)
        rate = Fraction(fps).limit_denominator(1_000_000)
        self.time_base = Fraction(time_base) if time_base is not None else 1 / rate
        self._tmp = temp_beside(self.path, self.path.suffix or ".mp4")
        self._src = self._a_in = self._a_out = self._packets = self._pending = self._a_enc = None
        self._reencode = False  # source audio decoded and encoded again (the container refuses its codec)
        self._out = None
        self._n = 0
        self._first = self._shift = None  # frame-counting encoders: the first frame's pts, its packets' offset
        try:
            self._out = av.open(str(self._tmp), mode="w", container_options=dict(self.container.options))
            self._v = self._add_video(rate, int(width), int(height), crf, preset, options)
            if audio_from is not None:
                self._open_audio_source(Path(audio_from))
            if audio_sample_rate is not None:
                self._a_enc = self._out.add_stream(self.container.audio_codec, rate=int(audio_sample_rate), layout="mono")
                self._a_samples = 0
            self._out.start_encoding()
        except av.error.FFmpegError as e:
            self.abort()
            raise MediaError(self.path, f"{self.container.codec} in {self.path.suffix or '.mp4'} cannot take this "
                                        f"video ({width}×{height} at {float(rate):.3f} fps): {e}") from None
        except BaseException:
            self.abort()
            raise

    def _add_video(self, rate: Fraction, width: int, height: int, crf: int, preset: str, options: Optional[dict]):
        c = self.container
        v = self._out.add_stream(c.codec, rate=rate, options={**_encoder_options(c, crf, preset), **(options or {})})
        v.width, v.height = width, height
        v.pix_fmt = "yuv444p" if c.codec == "libx264" and (width % 2 or height % 2) else "yuv420p"
        # MPEG-4 Part 2 and MPEG-2 count time in frames (and AVI would pad a finer time base with
        # empty frames): one tick per frame at the stream's rate
        v.codec_context.time_base = 1 / rate if c.frame_slots else self.time_base
        if c.frame_slots and c.starts_at_zero:
            v.time_base = 1 / rate
        elif not c.frame_slots:
            v.time_base = self.time_base
        self._slot = self.time_base * rate if c.frame_slots else None  # source ticks -> frame ticks
        return v

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
        cc = self._a_in.codec_context
        if cc.name in self.container.audio_copy:
            self._a_out = self._out.add_stream_from_template(self._a_in)
        else:  # the container does not take this codec: re-encode (PyAV resamples to the encoder)
            rates = av.Codec(self.container.audio_codec, "w").audio_rates
            rate = cc.sample_rate if not rates or cc.sample_rate in rates else max(rates)
            layout = cc.layout.name if cc.channels <= 2 else "stereo"
            self._a_out = self._out.add_stream(self.container.audio_codec, rate=rate, layout=layout)
            self._a_out.time_base = Fraction(1, rate)
            self._reencode = True
        self._packets = self._audio_packets()

    def _audio_packets(self) -> Iterator[av.Packet]:
        for packet in self._src.demux(self._a_in):
            if packet.dts is not None and packet.size > 0:
                yield packet

    def _mux_audio_until(self, t: Optional[float]) -> None:
        """Copy (or re-encode) source audio packets whose decode time is <= ``t`` seconds (all when
        ``t`` is None)."""
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
            if self._reencode:
                self._reencode_audio(p)
            else:
                p.stream = self._a_out
                self._out.mux(p)
            self._pending = None

    def _reencode_audio(self, packet: Optional[av.Packet]) -> None:
        """Decode ``packet`` (None: flush) and encode it for the output, keeping its start time. A
        frame wholly before 0 (an AAC encoder's priming, which players never play) is left out, so
        that containers which cannot store negative times need not shift every stream."""
        frames = packet.decode() if packet is not None else [None]
        for frame in frames:
            if frame is not None and frame.pts is not None:
                frame.pts = int(round(frame.pts * self._a_in.time_base * frame.sample_rate))
                frame.time_base = Fraction(1, frame.sample_rate)
                if frame.pts + frame.samples <= 0:
                    continue
            self._out.mux(self._a_out.encode(frame))

    def _mux_video(self, packets) -> None:
        for packet in packets:
            if self._first is not None and not self.container.starts_at_zero:
                # MPEG-2 counted in frames from 0: back to the muxer's finer time base, at the first frame's time
                tb = self._v.time_base
                if self._shift is None:
                    self._shift = int(round(self._first * self.time_base / tb))
                scale = packet.time_base / tb
                packet.pts, packet.dts = (int(round(t * scale)) + self._shift for t in (packet.pts, packet.dts))
                packet.time_base = tb
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
        if self._slot is not None:  # counted in frames from the first; its time is added back by _mux_video
            if self._first is None:
                self._first = frame.pts
            frame.pts = int(round((frame.pts - self._first) * self._slot))
            frame.time_base = self._v.codec_context.time_base
        self._n += 1
        self._mux_video(self._v.encode(frame))

    def write_audio(self, samples: np.ndarray, sample_rate: int) -> None:
        """Encode mono float samples in [-1, 1] to the declared audio stream."""
        if self._a_enc is None or sample_rate != self._a_enc.codec_context.sample_rate:
            raise MediaError(self.path, f"no audio stream declared at {sample_rate} Hz (pass audio_sample_rate)")
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
        if self._reencode:
            self._reencode_audio(None)
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
    """Write ``(T, H, W, 3)`` uint8 frames (and optional mono audio) in one call (H.264 + AAC in MP4)."""
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
