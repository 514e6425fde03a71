"""Video decoding with PyAV: probe, time-exact frame sampling, and sequential frame iteration.

Times are seconds from the first video frame (the stream's start), so a clip whose video starts
at 0.852 s still has its first frame at t = 0. The frame returned for time ``t`` is the frame a
player shows at ``t``: the last frame whose presentation time is ``<= t``. Frames come back as
RGB ``uint8`` with the container's rotation applied (what a person sees).
"""
from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Optional, Tuple, Union

import av
import numpy as np

from affectlens.errors import MediaError

Size = Union[int, Tuple[int, int], None]  # int = square side; (height, width); None = native


def _prefer_seek(n: int, frame_count: int, keyframes: int) -> bool:
    """Seek only when it decodes fewer frames than one pass would.

    A seek lands on the keyframe before the target and decodes on from there: on average half a
    GOP plus the frame itself. One pass decodes every frame. bench/ingest.py measures both; decode
    time is close to proportional to frames decoded, so this count is the whole cost model.
    """
    gop = frame_count / max(keyframes, 1)
    return n * (gop / 2 + 1) < 0.8 * frame_count


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    codec: str
    duration: float


@dataclasses.dataclass(frozen=True)
class MediaInfo:
    """What ``probe`` finds. ``width``/``height`` are as displayed (after rotation)."""

    path: str
    duration: float
    fps: float
    variable_fps: bool
    frame_count: int
    width: int
    height: int
    rotation: int
    keyframes: int
    codec: str
    time_base: Fraction
    rate: Fraction
    start_time: float
    audio: Optional[AudioInfo]

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["time_base"] = str(self.time_base)
        d["rate"] = str(self.rate)
        return d


def open_media(path: str | Path) -> av.container.InputContainer:
    """Open a media file, turning every failure into a one-line ``MediaError``."""
    path = Path(path)
    if not path.exists():
        raise MediaError(path, "file not found")
    if path.is_dir():
        raise MediaError(path, "is a folder, not a media file")
    if path.stat().st_size == 0:
        raise MediaError(path, "empty file (0 bytes)")
    try:
        return av.open(str(path))
    except av.error.InvalidDataError:
        raise MediaError(path, _unreadable_reason(path)) from None
    except av.error.EOFError:
        raise MediaError(path, "zero-length or truncated (the container holds no media data)") from None
    except (av.error.FFmpegError, OSError) as e:
        raise MediaError(path, f"cannot be opened ({e})") from None


_MAGIC = {b"ftyp": "MP4/MOV", b"\x1aE\xdf\xa3": "Matroska/WebM", b"RIFF": "RIFF (AVI/WAV)", b"fLaC": "FLAC"}


def _unreadable_reason(path: Path) -> str:
    """Tell a damaged media file (known signature) from something that is not media at all."""
    head = path.open("rb").read(12)
    for magic, name in _MAGIC.items():
        if magic in head:
            return f"corrupt or truncated {name} file (its index or headers cannot be read)"
    return "not a media file (no known container format)"


def _video_stream(container, path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise MediaError(path, "no video stream")
    return container.streams.video[0]


def _scan_video_pts(container, stream, path) -> tuple[np.ndarray, int]:
    """Presentation times (stream time base) of every video packet, sorted, and the keyframe count.

    Demux only, no decode: cheap even for long clips."""
    pts, keyframes = [], 0
    for p in container.demux(stream):
        if p.pts is not None and p.size > 0:
            pts.append(p.pts)
            keyframes += bool(p.is_keyframe)
    if not pts:
        raise MediaError(path, "zero-length video (no frames)")
    return np.sort(np.asarray(pts, dtype=np.int64)), keyframes


def _rotation(container, stream) -> int:
    """Clockwise display rotation in degrees (0/90/180/270), read off the first decoded frame."""
    container.seek(0, stream=stream) if stream.start_time is not None else None
    for frame in container.decode(stream):
        return int(round(-(frame.rotation or 0))) % 360
    return 0


def probe(path: str | Path) -> MediaInfo:
    """Describe a media file. Counts frames by demuxing (exact, no decode); raises ``MediaError``."""
    path = Path(path)
    with open_media(path) as container:
        try:
            stream = _video_stream(container, path)
            tb = stream.time_base
            pts, keyframes = _scan_video_pts(container, stream, path)
            deltas = np.diff(pts)
            frame_dur = int(np.median(deltas)) if deltas.size else 0
            if frame_dur == 0 and stream.average_rate:
                frame_dur = int(round(1 / (float(stream.average_rate) * tb)))
            duration = float((pts[-1] - pts[0] + frame_dur) * tb)
            rate = stream.average_rate or stream.guessed_rate or Fraction(len(pts), 1)
            if len(pts) > 1 and duration > 0:
                rate_measured = len(pts) / duration
            else:
                rate_measured = float(rate)
            variable = bool(deltas.size and (deltas.max() - deltas.min()) > max(1, 0.02 * frame_dur))
            rotation = _rotation(container, stream)
            w, h = stream.codec_context.width, stream.codec_context.height
            if rotation in (90, 270):
                w, h = h, w
            audio = None
            if container.streams.audio:
                a = container.streams.audio[0]
                a_dur = float(a.duration * a.time_base) if a.duration else float(container.duration or 0) / 1e6
                audio = AudioInfo(a.codec_context.sample_rate, a.codec_context.channels, a.codec_context.name, a_dur)
        except av.error.FFmpegError as e:
            raise MediaError(path, f"corrupt or truncated ({e})") from None
        return MediaInfo(
            path=str(path), duration=duration, fps=float(rate_measured), variable_fps=variable,
            frame_count=int(len(pts)), width=w, height=h, rotation=rotation, keyframes=keyframes, codec=stream.codec_context.name,
            time_base=tb, rate=Fraction(rate), start_time=float(pts[0] * tb), audio=audio,
        )


def frame_times(duration: float, n: int) -> np.ndarray:
    """The data contract's sample times: ``t_i = (i + 0.5) * D / n`` seconds, ``i = 0..n-1``."""
    return (np.arange(n, dtype=np.float64) + 0.5) * duration / n


def _target_hw(size: Size, rotation: int, width: int, height: int) -> Tuple[int, int]:
    """(height, width) to ask the scaler for *before* rotation, so the rotated frame is ``size``."""
    if size is None:
        h, w = (width, height) if rotation in (90, 270) else (height, width)  # display → coded
        return h, w
    h, w = (size, size) if isinstance(size, int) else size
    return (w, h) if rotation in (90, 270) else (h, w)


def _to_rgb(frame: av.VideoFrame, hw: Tuple[int, int], rotation: int) -> np.ndarray:
    img = frame.to_ndarray(format="rgb24", width=hw[1], height=hw[0])  # (H, W, 3)
    if rotation:
        img = np.ascontiguousarray(np.rot90(img, k=-rotation // 90))  # clockwise
    return img


def sample_frames(path: str | Path, n: int, size: Size = None, method: str = "auto",
                  times: Optional[np.ndarray] = None) -> np.ndarray:
    """``(n, 3, H, W)`` uint8 RGB frames shown at ``t_i = (i + 0.5) * D / n`` (or at ``times``).

    ``method``: ``"seek"`` (one seek per frame; cheap when ``n`` is small against the clip's
    length), ``"scan"`` (one sequential pass), or ``"auto"``, which picks the one that decodes
    fewer frames (see ``_prefer_seek``). Correct on variable-frame-rate clips: selection is by
    presentation time.
    """
    path = Path(path)
    info = probe(path)
    times = frame_times(info.duration, n) if times is None else np.asarray(times, dtype=np.float64)
    if method == "auto":
        method = "seek" if _prefer_seek(len(times), info.frame_count, info.keyframes) else "scan"
    hw = _target_hw(size, info.rotation, info.width, info.height)
    with open_media(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        try:
            if method == "seek":
                frames = [_frame_at_seek(container, stream, info, t, hw) for t in times]
            elif method == "scan":
                frames = _frames_at_scan(container, stream, info, times, hw)
            else:
                raise ValueError(f"method must be 'auto', 'seek' or 'scan', not {method!r}")
        except av.error.FFmpegError as e:
            raise MediaError(path, f"corrupt or truncated ({e})") from None
    out = np.stack(frames).transpose(0, 3, 1, 2)  # (n, H, W, 3) -> (n, 3, H, W)
    return np.ascontiguousarray(out)


def _frame_at_seek(container, stream, info: MediaInfo, t: float, hw) -> np.ndarray:
    tb = stream.time_base
    target = int(round(info.start_time / tb)) + int(np.floor(t / tb + 1e-6))
    container.seek(target, stream=stream, backward=True, any_frame=False)
    shown = None
    for frame in container.decode(stream):
        if frame.pts is None:
            continue
        if frame.pts > target and shown is not None:
            break
        shown = frame  # the first frame decoded after a seek is a keyframe at or before target
    if shown is None:
        raise MediaError(info.path, f"no frame decodable at {t:.3f} s")
    return _to_rgb(shown, hw, info.rotation)


def _frames_at_scan(container, stream, info: MediaInfo, times: np.ndarray, hw) -> list:
    tb = stream.time_base
    start = int(round(info.start_time / tb))
    targets = start + np.floor(times / tb + 1e-6).astype(np.int64)
    order = np.argsort(targets)
    out: list = [None] * len(targets)
    k, prev, prev_img = 0, None, None
    for frame in container.decode(stream):
        if frame.pts is None:
            continue
        while k < len(order) and targets[order[k]] < frame.pts:
            shown = prev if prev is not None else frame  # a target before the first frame
            if prev_img is None or shown is not prev:
                prev_img = _to_rgb(shown, hw, info.rotation)
            out[order[k]] = prev_img
            k += 1
        if k == len(order):
            break
        prev, prev_img = frame, None
    if k < len(order):  # targets at or after the last frame: it is still on screen
        if prev is None:
            raise MediaError(info.path, "zero-length video (no frames decoded)")
        img = _to_rgb(prev, hw, info.rotation)
        for j in order[k:]:
            out[j] = img
    return out


def iter_frames(path: str | Path, size: Size = None) -> Iterator[Tuple[float, av.VideoFrame, np.ndarray]]:
    """Yield ``(t_seconds, frame, rgb)`` for every frame in presentation order.

    ``frame`` keeps the source ``pts``/``time_base`` so writers can keep timestamps exactly;
    ``rgb`` is ``(H, W, 3)`` uint8 with rotation applied.
    """
    path = Path(path)
    info = probe(path)
    hw = _target_hw(size, info.rotation, info.width, info.height)
    with open_media(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                t = float(frame.pts * stream.time_base) - info.start_time
                yield t, frame, _to_rgb(frame, hw, info.rotation)
        except av.error.FFmpegError as e:
            raise MediaError(path, f"corrupt or truncated ({e})") from None
