"""Video decoding with PyAV: probe, time-exact frame sampling, and sequential frame iteration.

Times are seconds from the first video frame (the stream's start), so a clip whose video starts
at 0.852 s still has its first frame at t = 0. The frame returned for time ``t`` is the frame a
player shows at ``t``: the last frame whose presentation time is ``<= t``. Frames come back as
RGB ``uint8`` with the container's rotation applied (what a person sees).
"""
from __future__ import annotations

import dataclasses
import threading
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator, Optional, Tuple, Union

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
    """What ``probe`` finds. ``width``/``height`` are as displayed (after rotation).

    ``frames_missing``: how many of the frames the container declares (MP4/MOV/AVI frame counts,
    Matroska/WebM track durations) are not in the file, e.g. because it was cut short; 0 when all
    are there or the container declares nothing (MPEG-PS/TS). ``frame_count``, ``duration`` and
    ``fps`` describe the frames that are there.
    """

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
    frames_missing: int = 0

    @property
    def truncated(self) -> bool:
        return self.frames_missing > 0

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["time_base"] = str(self.time_base)
        d["rate"] = str(self.rate)
        d["truncated"] = self.truncated
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


def _scan_video_pts(container, stream, path) -> tuple[np.ndarray, np.ndarray]:
    """Presentation times (stream time base) of every video packet and of the keyframes, sorted.

    Demux only, no decode: cheap even for long clips."""
    pts, keys, untimed = [], [], 0
    for p in container.demux(stream):
        if p.size > 0:
            if p.pts is None:
                untimed += 1
                continue
            pts.append(p.pts)
            if p.is_keyframe:
                keys.append(p.pts)
    if not pts:
        if untimed:  # e.g. a bare .h264 file renamed: its frames are there, their times are not
            name = {"h264": "H.264", "hevc": "HEVC"}.get(stream.codec_context.name, stream.codec_context.name)
            raise MediaError(path, f"raw {name} stream without a container ({untimed} "
                                   f"packets, no timestamps): put it in one first (ffmpeg -i IN -c copy OUT.mp4)")
        raise MediaError(path, "no video frames in the file (zero-length, truncated or damaged)")
    return np.sort(np.asarray(pts, dtype=np.int64)), np.sort(np.asarray(keys or pts[:1], dtype=np.int64))


def _rotation(container, stream, path) -> int:
    """Clockwise display rotation in degrees (0/90/180/270), read off the first decoded frame;
    a file none of whose frames decodes (random bytes named .jpg, say) is refused here."""
    container.seek(0, stream=stream) if stream.start_time is not None else None
    for frame in container.decode(stream):
        if frame.width > 0 and frame.height > 0:
            return int(round(-(frame.rotation or 0))) % 360
    raise MediaError(path, "no video frame can be decoded (corrupt, truncated or not media)")


TAIL_REORDER = 16  # B-frames a cut can leave without their neighbours: at most H.264's reorder depth


def _declared_frames(container, stream, rate: float) -> Optional[int]:
    """How many frames the container says the video has: a frame count from the index (MP4, MOV,
    AVI) or the track's duration (Matroska/WebM ``DURATION`` tag, written when the file is closed)
    times the rate; None when it declares neither (MPEG-PS/TS, raw streams)."""
    if stream.frames > 0:
        return int(stream.frames)
    tag = stream.metadata.get("DURATION")
    if tag and rate > 0:
        try:
            h, m, sec = tag.split(":")
            end = int(h) * 3600 + int(m) * 60 + float(sec)
        except ValueError:
            return None
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        return int(round((end - start) * rate))
    return None


def probe(path: str | Path) -> MediaInfo:
    """Describe a media file. Counts frames by demuxing (exact, no decode); raises ``MediaError``."""
    return _inspect(path)[0]


def _inspect(path: str | Path) -> tuple[MediaInfo, np.ndarray, np.ndarray]:
    """``probe`` plus the sorted video pts and keyframe pts (stream time base)."""
    path = Path(path)
    with open_media(path) as container:
        try:
            stream = _video_stream(container, path)
            tb = stream.time_base
            pts, keys = _scan_video_pts(container, stream, path)
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
            declared = _declared_frames(container, stream, float(rate))
            missing = max(0, declared - len(pts)) if declared is not None else 0
            if missing and stream.frames <= 0 and missing <= 1:
                missing = 0  # a duration rounds to a frame either way
            if missing:  # the frames just before the cut lost the B-frames between them: not VFR
                deltas = deltas[:-TAIL_REORDER]
            variable = bool(deltas.size and (deltas.max() - deltas.min()) > max(1, 0.02 * frame_dur))
            rotation = _rotation(container, stream, path)
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
        info = MediaInfo(
            path=str(path), duration=duration, fps=float(rate_measured), variable_fps=variable,
            frame_count=int(len(pts)), width=w, height=h, rotation=rotation, keyframes=len(keys), codec=stream.codec_context.name,
            time_base=tb, rate=Fraction(rate), start_time=float(pts[0] * tb), audio=audio, frames_missing=missing,
        )
        return info, pts, keys


def frame_times(duration: float, n: int) -> np.ndarray:
    """The data contract's sample times: ``t_i = (i + 0.5) * D / n`` seconds, ``i = 0..n-1``."""
    return (np.arange(n, dtype=np.float64) + 0.5) * duration / n


def target_hw(size: Size, rotation: int, width: int, height: int) -> Tuple[int, int]:
    """(height, width) to ask the scaler for *before* rotation, so the rotated frame is ``size``."""
    if size is None:
        h, w = (width, height) if rotation in (90, 270) else (height, width)  # display → coded
        return h, w
    h, w = (size, size) if isinstance(size, int) else size
    return (w, h) if rotation in (90, 270) else (h, w)


_scalers = threading.local()  # one libswscale context per thread, reused frame after frame


def _reformatter() -> av.video.reformatter.VideoReformatter:
    """The calling thread's ``VideoReformatter``, kept from frame to frame. ``frame.to_ndarray(width=...)``
    makes a new one, and a new libswscale context, for every frame; reusing one (``sws_getCachedContext``
    rebuilds it only when sizes or formats change) made a 640×360 yuv420p frame into RGB in 0.19 vs
    1.13 ms, and into the detector's 448×256 RGB in 1.33 vs 2.89 ms (medians of 5 × 100 frames).
    One per thread because a context is not safe to share between threads."""
    rf = getattr(_scalers, "reformatter", None)
    if rf is None:
        rf = _scalers.reformatter = av.video.reformatter.VideoReformatter()
    return rf


def reformat(frame: av.VideoFrame, **kwargs) -> av.VideoFrame:
    """``frame.reformat(**kwargs)`` with the calling thread's scaler (``_reformatter``): use this, not
    ``frame.reformat`` or ``frame.to_ndarray(format=...)``, for frames in a loop."""
    return _reformatter().reformat(frame, **kwargs)


def to_rgb(frame: av.VideoFrame, hw: Tuple[int, int], rotation: int, interpolation: Optional[str] = None) -> np.ndarray:
    """The frame as upright RGB; ``hw`` is the (height, width) to scale to before rotation
    (``target_hw``); ``interpolation`` is libswscale's (e.g. ``"AREA"`` for downscaling)."""
    img = reformat(frame, format="rgb24", width=hw[1], height=hw[0], interpolation=interpolation).to_ndarray()  # (H, W, 3)
    if rotation:
        img = np.ascontiguousarray(np.rot90(img, k=-rotation // 90))  # clockwise
    return img


def sample_frames(path: str | Path, n: int, size: Size = None, method: str = "auto",
                  times: Optional[np.ndarray] = None) -> np.ndarray:
    """``(n, 3, H, W)`` uint8 RGB frames shown at ``t_i = (i + 0.5) * D / n`` (or at ``times``).

    The frame for ``t`` is chosen from the demuxed presentation times before anything is decoded
    (the last frame with pts <= t), so variable frame rates and B-frame reordering cannot shift it.
    ``method``: ``"seek"`` (jump to the keyframe before each wanted frame), ``"scan"`` (one pass),
    or ``"auto"``, which picks the one that decodes fewer frames (see ``_prefer_seek``). Both skip
    H.264/HEVC frames that no other frame references and that are not wanted.
    """
    path = Path(path)
    info, pts, keys = _inspect(path)
    times = frame_times(info.duration, n) if times is None else np.asarray(times, dtype=np.float64)
    targets = pts[0] + np.floor(times / info.time_base + 1e-6).astype(np.int64)
    shown = pts[np.clip(np.searchsorted(pts, targets, side="right") - 1, 0, None)]  # (n,) pts on screen
    wanted = np.unique(shown)
    if method == "auto":
        method = "seek" if _prefer_seek(len(wanted), info.frame_count, info.keyframes) else "scan"
    if method not in ("seek", "scan"):
        raise ValueError(f"method must be 'auto', 'seek' or 'scan', not {method!r}")
    hw = target_hw(size, info.rotation, info.width, info.height)
    with open_media(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        try:
            decoded = _decode_wanted(container, stream, wanted, keys if method == "seek" else None)
        except av.error.FFmpegError as e:
            raise MediaError(path, f"corrupt or truncated ({e})") from None
    missing = [int(p) for p in wanted if int(p) not in decoded]
    if missing:
        raise MediaError(path, f"corrupt or truncated (frame at pts {missing[0]} could not be decoded)")
    images = {p: to_rgb(f, hw, info.rotation) for p, f in decoded.items()}
    out = np.stack([images[int(p)] for p in shown]).transpose(0, 3, 1, 2)  # (n, H, W, 3) -> (n, 3, H, W)
    return np.ascontiguousarray(out)


def _decode_wanted(container, stream, wanted: np.ndarray, keyframes: Optional[np.ndarray]) -> dict:
    """Decode the frames whose pts are in ``wanted``; with ``keyframes``, seek when that saves decoding."""
    disposable = _disposable_test(stream)
    want = set(int(p) for p in wanted)
    got: dict = {}
    position = None  # pts of the last frame decoded since the last seek
    packets = None
    for p in sorted(want):
        if p in got:  # already decoded on the way to an earlier one
            continue
        if keyframes is not None:
            key = int(keyframes[max(np.searchsorted(keyframes, p, side="right") - 1, 0)])
            if position is None or key > position:  # jumping ahead skips decoding
                container.seek(key, stream=stream, backward=True, any_frame=False)
                packets = container.demux(stream)
        elif packets is None:
            packets = container.demux(stream)
        for packet in packets:
            if packet.pts is not None and packet.pts not in want and disposable(packet):
                continue
            for frame in packet.decode():
                position = frame.pts
                if frame.pts in want:
                    got[frame.pts] = frame
            if p in got:
                break
    return got


def _disposable_test(stream) -> Callable[[av.Packet], bool]:
    """A test for packets no other frame references (H.264 nal_ref_idc = 0, HEVC *_N slices).

    Only length-prefixed bitstreams (MP4/MOV/MKV) are parsed; anything else is never skipped.
    """
    cc = stream.codec_context
    extra = bytes(cc.extradata or b"")
    if cc.name == "h264" and len(extra) > 4 and extra[0] == 1:
        kind, nal_len = "h264", (extra[4] & 3) + 1
    elif cc.name == "hevc" and len(extra) > 22 and extra[0] == 1:
        kind, nal_len = "hevc", (extra[21] & 3) + 1
    else:
        return lambda packet: False

    def disposable(packet: av.Packet) -> bool:
        if packet.is_keyframe:
            return False
        data, i, slices = bytes(packet), 0, 0
        while i + nal_len < len(data):
            size = int.from_bytes(data[i:i + nal_len], "big")
            head = data[i + nal_len]
            if kind == "h264":
                if 1 <= head & 0x1F <= 5:  # a coded slice (or partition)
                    if head >> 5 & 3:  # nal_ref_idc > 0: other frames predict from it
                        return False
                    slices += 1
            else:
                t = head >> 1 & 0x3F
                if t < 32:  # VCL: sub-layer non-reference types are the even ones below 16
                    if t > 14 or t % 2:
                        return False
                    slices += 1
            i += nal_len + size
        return slices > 0

    return disposable


def decoded_frames(path: str | Path) -> Iterator[av.VideoFrame]:
    """Every decoded ``av.VideoFrame`` of the first video stream in presentation order, as the
    decoder returns it (no colour conversion, no copy; ``pts`` and ``time_base`` kept); a decoding
    failure becomes a ``MediaError`` naming the file."""
    path = Path(path)
    with open_media(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                if frame.pts is not None:
                    yield frame
        except av.error.FFmpegError as e:
            raise MediaError(path, f"corrupt or truncated ({e})") from None


def writable_planes(frame: av.VideoFrame) -> Tuple[np.ndarray, ...]:
    """Writable views ``(y, u, v)`` onto a planar frame's own buffers (e.g. yuv420p), rows cut to
    the plane's width (FFmpeg pads them to its line size). The frame is made writable first: one the
    decoder still keeps as a reference is copied once by FFmpeg instead of being changed under it,
    so changing the views never disturbs the decoding of later frames."""
    frame.make_writable()
    return tuple(np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, :p.width] for p in frame.planes)


def iter_frames(path: str | Path, size: Size = None) -> Iterator[Tuple[float, av.VideoFrame, np.ndarray]]:
    """Yield ``(t_seconds, frame, rgb)`` for every frame in presentation order.

    ``frame`` keeps the source ``pts``/``time_base`` so writers can keep timestamps exactly;
    ``rgb`` is ``(H, W, 3)`` uint8 with rotation applied.
    """
    info = probe(path)
    hw = target_hw(size, info.rotation, info.width, info.height)
    for frame in decoded_frames(path):
        t = float(frame.pts * info.time_base) - info.start_time
        yield t, frame, to_rgb(frame, hw, info.rotation)
