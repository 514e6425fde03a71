"""The bad-input corpus, built at test time (PyAV, Pillow and bytes; nothing is checked in).

``build_media(root, photo)`` writes every kind of media file a user might hand a command and
returns ``{key: Entry}``; ``build_shards(root)`` does the same for YouTube-8M TFRecords and
``build_vgaf(root)`` for a VGAF dataset with bad label rows. An ``Entry`` says where the file is,
the name an error line must show for it (control characters escaped as ``repr`` writes them)
and, per command, whether it is ``"ok"`` (must be done), ``"bad"`` (one error line naming it, no
output) or ``"any"`` (either, but never a traceback and, when it fails, one line naming it).
"""
from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tests.media.clips import make_clip, tone

OK, BAD, ANY = "ok", "bad", "any"
MEDIA_COMMANDS = ("probe", "anonymize", "expression", "group")
ALL_KEYS = ("good_clip", "good_photo", "unicode", "markup", "markup_slash", "no_audio", "one_frame", "rotated",
            "vfr", "odd_size", "png16", "cmyk", "exif", "zero", "random_mp4", "random_jpg", "newline",
            "audio_only", "cut5", "cut50", "cut95", "faststart_cut", "huge_png", "loop", "missing", "dir_mp4",
            "missing_markup")


@dataclass
class Entry:
    path: Path
    expect: dict = field(default_factory=dict)   # command -> ok | bad | any
    face: bool = False                            # holds a real face (privacy check after anonymize)

    @property
    def shown(self) -> str:
        """The file's name as an error line writes it (control characters escaped)."""
        from affectlens.report.console import one_line

        return one_line(self.path.name)

    def outcome(self, command: str) -> str:
        return self.expect.get(command, self.expect.get("*", ANY))


def _expect(default: str, **per_command: str) -> dict:
    return {"*": default, **per_command}


# ----------------------------------------------------------------------------- media

def write_rgb_video(path: Path, frames: np.ndarray, fps: int = 10, audio: bool = True, pix_fmt="yuv420p",
                    codec: str = "libx264", faststart: bool = False, rotation: int = 0) -> Path:
    """``frames`` (T, H, W, 3) uint8 as H.264 (+ a 16 kHz AAC tone) with PyAV."""
    t, h, w, _ = frames.shape
    opts = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=opts) as out:
        v = out.add_stream(codec, rate=fps, options={"preset": "ultrafast", "crf": "23"} if codec == "libx264" else {})
        v.width, v.height, v.pix_fmt = w, h, pix_fmt
        if rotation:
            v.set_display_rotation(rotation)
        a = out.add_stream("aac", rate=16_000, layout="mono") if audio else None
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, fps)
            out.mux(v.encode(vf))
        out.mux(v.encode(None))
        if a is not None:
            af = av.AudioFrame.from_ndarray(tone(t / fps, 16_000).reshape(1, -1), format="fltp", layout="mono")
            af.sample_rate, af.pts, af.time_base = 16_000, 0, Fraction(1, 16_000)
            out.mux(a.encode(af))
            out.mux(a.encode(None))
    return path


def write_audio_only(path: Path, seconds: float = 1.0) -> Path:
    with av.open(str(path), "w") as out:
        a = out.add_stream("aac", rate=16_000, layout="mono")
        af = av.AudioFrame.from_ndarray(tone(seconds, 16_000).reshape(1, -1), format="fltp", layout="mono")
        af.sample_rate, af.pts, af.time_base = 16_000, 0, Fraction(1, 16_000)
        out.mux(a.encode(af))
        out.mux(a.encode(None))
    return path


def face_frames(photo: np.ndarray, n: int, side: int = 160) -> np.ndarray:
    """``n`` frames of the photo resized to ``side`` × ``side`` (a still "video" of a real face)."""
    import cv2

    small = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)
    return np.repeat(small[None], n, axis=0)


def huge_png_header(path: Path, width: int = 12_000, height: int = 12_000) -> Path:
    """A PNG whose header claims ``width`` × ``height`` pixels; its few bytes of data never decode
    to that (a reader must refuse it from the header, before decoding)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def build_media(root: Path, photo_path: Path | None) -> dict[str, Entry]:
    """Every kind of media input. ``photo_path``: a real face photo (or None: a synthetic pattern)."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    photo = np.asarray(Image.open(photo_path).convert("RGB")) if photo_path else \
        rng.integers(0, 256, (160, 160, 3), dtype=np.uint8)
    has_face = photo_path is not None
    e: dict[str, Entry] = {}
    small = face_frames(photo, 8)

    # good ones
    e["good_clip"] = Entry(write_rgb_video(root / "good clip.mp4", small), _expect(OK), face=has_face)
    e["good_photo"] = Entry(root / "good_photo.jpg", _expect(OK, probe=ANY), face=has_face)
    Image.fromarray(photo).save(e["good_photo"].path, quality=92)
    e["unicode"] = Entry(write_rgb_video(root / "clé été ünï 😀 name.mp4", small[:4]), _expect(OK))
    e["markup"] = Entry(write_rgb_video(root / "clip [bold]final.mp4", small[:4]), _expect(OK))
    (root / "x [").mkdir(exist_ok=True)
    e["markup_slash"] = Entry(write_rgb_video(root / "x [" / "] y :smile:.mp4", small[:4]), _expect(OK))
    e["no_audio"] = Entry(write_rgb_video(root / "no_audio.mp4", small[:6], audio=False), _expect(OK))
    e["one_frame"] = Entry(write_rgb_video(root / "one_frame.mp4", small[:1]), _expect(OK, group=ANY))
    e["rotated"] = Entry(write_rgb_video(root / "rotated90.mp4", small[:4], rotation=90), _expect(OK))
    vfr = root / "vfr.mp4"
    make_clip(vfr, 8, fps=25, pts=[0, 1, 2, 5, 6, 10, 11, 20], audio=tone(1.0, 16_000), sr=16_000)
    e["vfr"] = Entry(vfr, _expect(OK))
    odd = np.ascontiguousarray(np.repeat(np.asarray(Image.fromarray(photo).resize((321, 181)))[None], 3, axis=0))
    e["odd_size"] = Entry(write_rgb_video(root / "odd_321x181.mp4", odd, pix_fmt="yuv444p"), _expect(OK))
    arr16 = (np.asarray(Image.fromarray(photo).convert("L"), np.uint16) * 257)
    e["png16"] = Entry(root / "grey16.png", _expect(OK, probe=ANY), face=has_face)
    Image.fromarray(arr16).save(e["png16"].path)  # uint16 → mode I;16, a 16-bit PNG
    e["cmyk"] = Entry(root / "cmyk.jpg", _expect(OK, probe=ANY), face=has_face)
    Image.fromarray(photo).convert("CMYK").save(e["cmyk"].path, quality=92)
    e["exif"] = Entry(root / "exif_rot.jpg", _expect(OK, probe=ANY), face=has_face)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: shown upright only when the orientation tag is applied
    Image.fromarray(photo).transpose(Image.Transpose.ROTATE_90).save(e["exif"].path, exif=exif, quality=92)

    # bad ones
    e["zero"] = Entry(root / "zero_bytes.mp4", _expect(BAD))
    e["zero"].path.write_bytes(b"")
    e["random_mp4"] = Entry(root / "random_bytes.mp4", _expect(BAD))
    e["random_mp4"].path.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    e["random_jpg"] = Entry(root / "random_bytes_img.jpg", _expect(BAD))
    e["random_jpg"].path.write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    e["newline"] = Entry(root / "bad\nname.mp4", _expect(BAD))
    e["newline"].path.write_bytes(b"not a video at all")
    e["audio_only"] = Entry(write_audio_only(root / "audio_only.m4a"), _expect(BAD, probe=ANY))
    whole = write_rgb_video(root / "_whole.mp4", face_frames(photo, 40)).read_bytes()
    for pct in (5, 50, 95):  # moov at the end: a cut file has no index at all
        p = root / f"cut_{pct}pct.mp4"
        p.write_bytes(whole[: len(whole) * pct // 100])
        e[f"cut{pct}"] = Entry(p, _expect(BAD))
    (root / "_whole.mp4").unlink()
    fast = write_rgb_video(root / "_fast.mp4", face_frames(photo, 40), faststart=True).read_bytes()
    (root / "_fast.mp4").unlink()
    p = root / "faststart_cut_60pct.mp4"  # index first: the first part still decodes
    p.write_bytes(fast[: len(fast) * 60 // 100])
    e["faststart_cut"] = Entry(p, _expect(ANY))
    e["huge_png"] = Entry(huge_png_header(root / "huge_12000x12000.png"), _expect(BAD, probe=ANY))
    loop = root / "loop.mp4"
    if not os.path.lexists(loop):
        os.symlink(loop.name, loop)
    e["loop"] = Entry(loop, _expect(BAD))
    e["missing"] = Entry(root / "missing_file.mp4", _expect(BAD))
    e["dir_mp4"] = Entry(root / "a_folder.mp4", _expect(BAD))
    e["dir_mp4"].path.mkdir(exist_ok=True)
    e["missing_markup"] = Entry(root / "x [" / "gone [bold] [/].mp4", _expect(BAD))  # a path holding "[/]"
    assert set(e) == set(ALL_KEYS)
    return e


# ----------------------------------------------------------------------------- TFRecords

def _record(data: bytes) -> bytes:
    from affectlens.videotag.data import crc32c, masked_crc

    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc(crc32c(header))) + data + struct.pack("<I", masked_crc(crc32c(data)))


def build_shards(root: Path) -> dict[str, Path]:
    """Good video-level shards (``good0..2``) and one crafted or corrupt shard of each kind."""
    from affectlens.videotag import data as D
    from affectlens.videotag import tfrecord
    from affectlens.videotag.synth import synth_video_level

    good = root / "good"
    synth_video_level(good, num_shards=3, videos_per_shard=12, num_classes=6, noise=0.8)
    shards = {f"good{i}": p for i, p in enumerate(D.shard_paths(good))}
    bad = root / "bad"
    bad.mkdir(parents=True, exist_ok=True)
    raw = shards["good0"].read_bytes()
    (bad / "empty.tfrecord").write_bytes(b"")
    shards["empty"] = bad / "empty.tfrecord"
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0x01
    (bad / "bitflip.tfrecord").write_bytes(bytes(flipped))
    shards["bitflip"] = bad / "bitflip.tfrecord"
    (bad / "truncated.tfrecord").write_bytes(raw[: len(raw) * 2 // 3])
    shards["truncated"] = bad / "truncated.tfrecord"
    header = struct.pack("<Q", 1 << 40)  # a 1 TiB record whose length CRC is valid
    (bad / "huge_length.tfrecord").write_bytes(header + struct.pack("<I", D.masked_crc(D.crc32c(header))) + b"x" * 64)
    shards["huge_length"] = bad / "huge_length.tfrecord"
    rgb, aud = np.zeros(D.RGB_DIM, np.float32), np.zeros(D.AUDIO_DIM, np.float32)
    varint70 = b"\xff" * 9 + b"\x7f"  # a label of 70 bits: no int64 holds it
    labels = tfrecord._enc_len(1, tfrecord._enc_len(1, b"labels") + tfrecord._enc_len(2, tfrecord._enc_len(3, tfrecord._enc_len(1, varint70))))
    crafted = tfrecord._enc_len(1, tfrecord._enc_features({"id": "v70", "mean_rgb": rgb, "mean_audio": aud}) + labels)
    (bad / "varint70.tfrecord").write_bytes(_record(crafted))
    shards["varint70"] = bad / "varint70.tfrecord"
    (bad / "random.tfrecord").write_bytes(np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    shards["random"] = bad / "random.tfrecord"
    return shards


# ----------------------------------------------------------------------------- VGAF

def build_vgaf(root: Path, clip: Path, silent_clip: Path, corrupt: bytes) -> tuple[Path, dict[str, list[str]]]:
    """A VGAF folder: good clips (two share a name in different subfolders) and bad rows.

    Returns the folder and ``{"good": clip names, "bad": label-file line numbers of bad rows}``."""
    clips = root / "clips"
    (clips / "a").mkdir(parents=True, exist_ok=True)
    (clips / "b").mkdir(parents=True, exist_ok=True)
    for name in ("one.mp4", "a/same.mp4", "b/same.mp4", "sp ace [x].mp4"):
        (clips / name).write_bytes(clip.read_bytes())
    (clips / "silent.mp4").write_bytes(silent_clip.read_bytes())
    (clips / "broken.mp4").write_bytes(corrupt)
    outside = root.parent / "outside.mp4"
    outside.write_bytes(clip.read_bytes())
    rows = ["Vid_name Label",
            "one.mp4 1",             # 2 good
            "a/same.mp4 2",          # 3 good: same name as the next, another folder
            "b/same.mp4 3",          # 4 good
            "sp ace [x].mp4 1",      # 5 malformed: a space splits the row (VGAF rows are space separated)
            "one 7",                 # 6 unknown label
            "nothere.mp4 2",         # 7 missing clip
            "../../outside.mp4 1",   # 8 outside the dataset
            f"{outside} 2",          # 9 absolute path
            "one.mp4 3",             # 10 listed twice
            "silent.mp4 2",          # 11 no audio track (default --missing-audio error)
            "broken.mp4 1",          # 12 not a video
            "a b c"]                 # 13 malformed
    (root / "labels.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root, {"good": ["one.mp4", "a/same.mp4", "b/same.mp4"],
                  "bad_rows": [5, 6, 7, 8, 9, 10, 13], "bad_clips": ["silent.mp4", "broken.mp4"]}
