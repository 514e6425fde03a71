"""media/ on bad or unusual input (issue 15): the image reader's pixel limit and colour models,
truncated, raw and non-media files in ``probe``, and what every output container keeps."""
from __future__ import annotations

import resource
import struct
import time
import zlib
from fractions import Fraction

import av
import numpy as np
import pytest

from affectlens.errors import MediaError
from affectlens.media import VideoWriter, probe
from affectlens.media.image import IMAGE_EXTS, MAX_PIXELS, VIDEO_EXTS, read_image
from affectlens.media.writer import CONTAINERS, writable_video_exts
from tests.media.clips import H, W, index_frame, make_native_clip, read_index


def _png_header_only(path, width: int, height: int):
    """A PNG whose header declares ``width`` × ``height`` (8-bit RGB) but holds one tiny IDAT: only a
    reader that decodes before checking the size would try to allocate the whole picture."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))
    return path


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_an_image_over_the_pixel_limit_is_refused_from_its_header(tmp_path):
    big = _png_header_only(tmp_path / "huge.png", 12000, 12000)
    before, t0 = _peak_rss_mb(), time.perf_counter()
    with pytest.raises(MediaError) as e:
        read_image(big)
    assert "huge.png" in str(e.value) and "12000×12000" in str(e.value) and "megapixels" in str(e.value)
    assert time.perf_counter() - t0 < 1 and _peak_rss_mb() - before < 100  # nothing was decoded (432 MB if it were)
    assert MAX_PIXELS == 50_000_000
    ok = _png_header_only(tmp_path / "ok.png", 8, 8)
    with pytest.raises(MediaError, match="corrupt or truncated"):  # under the limit, so it is decoded: bad data
        read_image(ok)


def test_images_of_every_colour_model_come_back_as_upright_rgb8(tmp_path):
    import cv2
    from PIL import Image

    grey16 = (np.arange(32 * 64).reshape(32, 64) * 30).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "grey16.png"), grey16)
    rgb16 = np.stack([grey16, grey16 // 2, 65535 - grey16], -1)  # written as BGR
    cv2.imwrite(str(tmp_path / "rgb16.png"), rgb16)
    Image.fromarray(np.full((20, 30, 3), (200, 100, 50), np.uint8)).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(np.full((20, 30), 77, np.uint8)).save(tmp_path / "grey.jpg")
    Image.fromarray(np.full((20, 30, 4), (10, 20, 30, 0), np.uint8)).save(tmp_path / "rgba.png")
    Image.fromarray(np.full((20, 30, 3), (0, 255, 0), np.uint8)).convert("P").save(tmp_path / "palette.png")
    tall = np.zeros((40, 20, 3), np.uint8)
    tall[:5] = 255  # a white band on top, stored turned left with EXIF orientation 6 (turn right to show)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.ascontiguousarray(np.rot90(tall, 1))).save(tmp_path / "exif.jpg", exif=exif, quality=95)

    expect = {"grey16.png": ((32, 64), [38, 38, 38]), "rgb16.png": ((32, 64), [217, 19, 38]),
              "cmyk.jpg": ((20, 30), [200, 100, 50]), "grey.jpg": ((20, 30), [77, 77, 77]),
              "rgba.png": ((20, 30), [10, 20, 30]), "palette.png": ((20, 30), [0, 255, 0])}
    for name, (hw, pixel) in expect.items():
        img = read_image(tmp_path / name)
        assert img.dtype == np.uint8 and img.shape == (*hw, 3), name
        np.testing.assert_allclose(img[5, 5], pixel, atol=3, err_msg=name)
    upright = read_image(tmp_path / "exif.jpg")
    assert upright.shape == (40, 20, 3) and upright[:4].mean() > 200 and upright[10:].mean() < 30


def test_the_one_reader_and_extension_lists_are_the_anonymizers(tmp_path):
    from affectlens.privacy import anonymize as anonymize_module

    assert anonymize_module.read_image is read_image
    assert anonymize_module.IMAGE_EXTS is IMAGE_EXTS and anonymize_module.VIDEO_EXTS is VIDEO_EXTS
    assert set(writable_video_exts()) == VIDEO_EXTS  # every video type we read, we can write (this FFmpeg has VP9)
    (tmp_path / "noise.jpg").write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(MediaError, match="noise.jpg: not a readable image"):
        read_image(tmp_path / "noise.jpg")


def _faststart_clip(path, n=100, fps=25):
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as out:
        v = out.add_stream("libx264", rate=fps, options={"preset": "veryfast"})  # with B-frames
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(index_frame(i), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
    return path


def _cut(src, dst, share: float):
    data = src.read_bytes()
    dst.write_bytes(data[:int(len(data) * share)])
    return dst


def test_probe_reports_a_cut_short_file_as_truncated(tmp_path, capsys):
    from affectlens.cli import main

    full = _faststart_clip(tmp_path / "full.mp4")
    assert probe(full).frames_missing == 0 and not probe(full).truncated
    cut = _cut(full, tmp_path / "cut.mp4", 0.9)
    info = probe(cut)
    assert info.truncated and info.frames_missing == 100 - info.frame_count > 0
    assert not info.variable_fps  # the B-frames lost at the cut do not make it "VFR"
    assert info.to_dict()["truncated"] and info.to_dict()["frames_missing"] == info.frames_missing
    mkv = make_native_clip(tmp_path / "full.mkv", 60)
    assert probe(_cut(mkv, tmp_path / "cut.mkv", 0.6)).frames_missing > 0  # from the track's DURATION
    with pytest.raises(SystemExit) as e:
        main(["probe", str(full), str(cut)])
    assert e.value.code == 1
    out, err = capsys.readouterr()
    assert "TRUNCATED" in out and out.count("TRUNCATED") == 1
    line = f"error: {cut}: truncated: {info.frames_missing} of the 100 frames its container declares are missing"
    assert err.strip().splitlines() == [line]


def test_probe_fails_on_random_bytes_and_names_a_raw_h264_stream(tmp_path, capsys):
    from affectlens.cli import main

    (tmp_path / "noise.jpg").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(MediaError, match="no video frame can be decoded"):
        probe(tmp_path / "noise.jpg")
    raw = tmp_path / "raw.mp4"  # an Annex-B H.264 stream, 30 frames, named like an MP4
    with av.open(str(raw), "w", format="h264") as out:
        v = out.add_stream("libx264", rate=30, options={"preset": "ultrafast"})
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        for i in range(30):
            frame = av.VideoFrame.from_ndarray(index_frame(i), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 30)
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
    with pytest.raises(MediaError, match=r"raw H\.264 stream without a container \(30 packets, no timestamps\)"):
        probe(raw)
    with pytest.raises(SystemExit) as e:
        main(["probe", str(tmp_path / "noise.jpg"), str(raw)])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "noise.jpg" in err[0] and "raw.mp4" in err[1] and "Traceback" not in "".join(err)


def _decoded(path):
    """[(seconds, index in the pixels)] of every frame in presentation order, and the first frame's start."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [(float(f.pts * s.time_base), read_index(f.to_ndarray(format="rgb24"))) for f in c.decode(s)]


@pytest.mark.parametrize("ext", sorted(CONTAINERS))
def test_every_output_container_keeps_frame_order_and_timing(tmp_path, ext):
    """A clip in the codecs its container usually holds, rewritten into the same container: every
    frame in order at its own time, the same start (AVI starts at 0: it stores no times)."""
    src = make_native_clip(tmp_path / f"src{ext}")
    dst = tmp_path / "out" / f"dst{ext}"
    from affectlens.media import iter_frames

    with VideoWriter.like(src, dst) as w:
        for _, frame, rgb in iter_frames(src):
            w.write(rgb, pts=frame.pts)
    a, b = _decoded(src), _decoded(dst)
    assert [i for _, i in b] == list(range(20)) == [i for _, i in a]
    times = np.array([t for t, _ in b])
    assert (np.diff(times) > 0).all()
    offset = 0.0 if CONTAINERS[ext].starts_at_zero else a[0][0]
    np.testing.assert_allclose(times - times[0] + offset, np.array([t for t, _ in a]) - a[0][0] + offset, atol=1e-3)
    assert times[0] == pytest.approx(offset, abs=1e-3)
    assert probe(dst).audio is not None
    assert not list(dst.parent.glob(".*"))


@pytest.mark.parametrize("ext", sorted(CONTAINERS))
def test_an_mp4_with_aac_goes_into_every_container_on_time(tmp_path, ext):
    """Cross-container: the AAC audio is copied or re-encoded, and the picture starts where the
    source's does (within 11 ms: MPEG-PS's muxer delays video behind audio by up to that)."""
    src = make_native_clip(tmp_path / "src.mp4")
    dst = tmp_path / f"dst{ext}"
    with VideoWriter.like(src, dst) as w:
        for frame in av.open(str(src)).decode(video=0):
            w.write(frame.to_ndarray(format="rgb24"), pts=frame.pts)
    b = _decoded(dst)
    assert [i for _, i in b] == list(range(20))
    np.testing.assert_allclose([t for t, _ in b], np.arange(20) / 25, atol=0.011)
    assert probe(dst).audio is not None


def test_odd_sizes_are_kept_and_unknown_types_refused(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (5, 181, 321, 3), dtype=np.uint8)
    for ext in (".mp4", ".webm", ".avi", ".mpg"):
        with VideoWriter(tmp_path / f"odd{ext}", 10, 321, 181) as w:
            for f in frames:
                w.write(f)
        info = probe(tmp_path / f"odd{ext}")
        assert (info.width, info.height, info.frame_count) == (321, 181, 5), ext
    for bad in ("o.gif", "o.jpg", "o.xyz"):
        with pytest.raises(MediaError, match="cannot write a video as"):
            VideoWriter(tmp_path / bad, 10, 64, 48)
    with pytest.raises(MediaError, match=r"mpeg2video in \.mpg cannot take this video"):  # MPEG-2 has no 7 fps
        VideoWriter(tmp_path / "seven.mpg", 7, 64, 48)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"odd{e}" for e in (".avi", ".mp4", ".mpg", ".webm")]
