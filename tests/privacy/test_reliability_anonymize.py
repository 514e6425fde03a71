"""anonymize on bad or unusual input (issue 15): truncated inputs, impossible output types, odd
sizes, every container's timing, resume that keys on the options, what killed runs leave behind,
and a sidecar that is streamed rather than held in memory."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from affectlens.errors import MediaError
from affectlens.faces.detect import Detections
from affectlens.media import probe, write_video
from affectlens.media.writer import CONTAINERS
from affectlens.privacy import anonymize as anonymize_module
from affectlens.privacy import masking
from affectlens.privacy import options as options_module
from affectlens.privacy.anonymize import anonymize, sidecar_path
from tests.media.clips import make_clip, make_native_clip, read_index
from tests.privacy.test_anonymize import (
    ScriptedDetector,
    _clip,
    _face_brightness,
    bright_square,
)

REPO = Path(__file__).resolve().parents[2]


def no_faces(rgb):
    return Detections.empty()


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*"))


@pytest.mark.parametrize("ext", sorted(CONTAINERS))
def test_anonymized_videos_keep_frame_order_and_timing_in_every_container(tmp_path, ext):
    src = make_native_clip(tmp_path / f"in{ext}")
    (res,) = anonymize(src, tmp_path / "out" / f"o{ext}", face_detector=no_faces)
    assert res.status == "done" and res.frames == 20
    with av.open(str(src)) as a, av.open(res.dst) as b:
        sa, sb = a.streams.video[0], b.streams.video[0]
        fa = [(float(f.pts * sa.time_base), read_index(f.to_ndarray(format="rgb24"))) for f in a.decode(sa)]
        fb = [(float(f.pts * sb.time_base), read_index(f.to_ndarray(format="rgb24"))) for f in b.decode(sb)]
    assert [i for _, i in fb] == list(range(20))  # every frame, in order (AVI came back 1, 3, 4, 2 ...)
    tb = np.array([t for t, _ in fb])
    assert (np.diff(tb) > 0).all()
    start = 0.0 if CONTAINERS[ext].starts_at_zero else fa[0][0]
    assert tb[0] == pytest.approx(start, abs=1e-3)  # the .mpg output started a frame (and 0.5 s) late
    np.testing.assert_allclose(tb - tb[0], np.array([t for t, _ in fa]) - fa[0][0], atol=1e-3)
    assert probe(res.dst).audio is not None and probe(res.dst).frames_missing == 0


def test_an_odd_sized_video_keeps_its_size_and_is_masked(tmp_path):
    frames = np.full((8, 181, 321, 3), 60, np.uint8)
    frames[:, 40:100, 100:160] = 230  # a bright "face"
    src = tmp_path / "odd.mkv"
    with av.open(str(src), "w") as out:  # H.264 4:4:4, the only H.264 that holds odd sizes
        v = out.add_stream("libx264", rate=10, options={"preset": "ultrafast", "crf": "10"})
        v.width, v.height, v.pix_fmt = 321, 181, "yuv444p"
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(f, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 10)
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
    for ext in (".mp4", ".avi"):
        (res,) = anonymize(src, tmp_path / f"o{ext}", face_detector=bright_square, method="solid", mask="box",
                           detect_every=1)
        info = probe(res.dst)
        assert res.status == "done" and (info.width, info.height, info.frame_count) == (321, 181, 8), ext
        for frame in av.open(res.dst).decode(video=0):
            rgb = frame.to_ndarray(format="rgb24")
            assert rgb[50:90, 110:150].max() < 40 and abs(int(rgb[150, 20].mean()) - 60) < 6, ext


def test_impossible_output_types_are_refused_in_one_line_before_any_work(tmp_path, capsys):
    import cv2

    from affectlens.cli import main

    clip = _clip(tmp_path / "clip.mp4", n=4)
    cv2.imwrite(str(tmp_path / "img.png"), np.full((40, 60, 3), 100, np.uint8))
    for src, out, words in [(clip, "o.jpg", "a video cannot be written as"), (clip, "o.gif", "a video cannot be"),
                            (clip, "o.xyz", "a video cannot be"), (tmp_path / "img.png", "o.mp4", "an image cannot")]:
        with pytest.raises(SystemExit) as e:
            main(["anonymize", str(src), "--out", str(tmp_path / "out" / out)])
        assert e.value.code == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(src) in err[0] and words in err[0], err
        assert not (tmp_path / "out").exists()  # nothing planned, written or left behind
    vfr = make_clip(tmp_path / "vfr.mp4", 6, fps=25, pts=[0, 1, 2, 5, 6, 9])  # AVI counts time in frames
    (res,) = anonymize(vfr, tmp_path / "o.avi", face_detector=no_faces, errors="collect")
    assert res.status == "failed" and res.error.startswith(str(vfr)) and "constant frame rate" in res.error
    assert not (tmp_path / "o.avi").exists() and _hidden(tmp_path) == []


def test_a_truncated_mp4_fails_naming_the_frames_missing_and_the_rest_go_on(tmp_path):
    from tests.media.test_reliability_media import _cut, _faststart_clip

    folder = tmp_path / "in"
    folder.mkdir()
    full = _faststart_clip(folder / "full.mp4")
    cut = _cut(full, folder / "cut.mp4", 0.9)
    missing = probe(cut).frames_missing
    res = {Path(r.src).name: r for r in anonymize(folder, tmp_path / "out", face_detector=no_faces, errors="collect")}
    assert res["full.mp4"].status == "done" and res["full.mp4"].frames == 100
    assert res["cut.mp4"].status == "failed" and res["cut.mp4"].error.startswith(str(cut))
    assert f"{missing} of the 100 frames" in res["cut.mp4"].error
    assert not (tmp_path / "out" / "cut.mp4").exists() and _hidden(tmp_path / "out") == []


def test_a_folder_named_like_a_video_or_without_media_is_an_error(tmp_path):
    (tmp_path / "x.mp4").mkdir()
    with pytest.raises(MediaError, match="x.mp4: is a folder without images or videos"):
        anonymize(tmp_path / "x.mp4", tmp_path / "o.mp4")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("no media")
    with pytest.raises(MediaError, match="notes: is a folder without images or videos"):
        anonymize(tmp_path / "notes", tmp_path / "o")


def test_resume_redoes_a_file_made_with_other_options_and_says_so(tmp_path, capsys):
    from affectlens.cli import main

    src = tmp_path / "in"
    src.mkdir()
    _clip(src / "a.mp4", n=8)
    out = tmp_path / "out"
    kw = {"face_detector": ScriptedDetector(), "detect_every": 1, "mask": "box", "margin": 0.1, "errors": "collect"}
    (first,) = anonymize(src, out, **kw)
    assert first.status == "done" and not first.note
    assert min(_face_brightness(out / "a.mp4")) > 60  # blurred: bright still
    (same,) = anonymize(src, out, **{**kw, "face_detector": ScriptedDetector()})
    assert same.status == "skipped"
    (redo,) = anonymize(src, out, method="solid", **{**kw, "face_detector": ScriptedDetector()})
    assert redo.status == "done" and "method 'blur' -> 'solid'" in redo.note
    assert max(_face_brightness(out / "a.mp4")) < 25  # black now, not the stale blur
    side = json.loads(sidecar_path(out / "a.mp4").read_text())
    assert side["method"] == "solid" and side["options"]["method"] == "solid"
    os.utime(src / "a.mp4", ns=(time.time_ns(), time.time_ns() + 10**9))  # the input changed
    (touched,) = anonymize(src, out, method="solid", **{**kw, "face_detector": ScriptedDetector()})
    assert touched.status == "done" and "the input changed" in touched.note
    capsys.readouterr()
    try:  # the command says it, in one line
        main(["anonymize", str(src), "--out", str(out), "--method", "pixelate", "--detector", "haar", "--json"])
    except SystemExit as e:
        assert not e.code
    err = capsys.readouterr().err
    assert "note: " in err and "redone: made with other options (method 'solid' -> 'pixelate'" in err


def test_the_batch_runner_resumes_on_the_options_too(tmp_path):
    from affectlens.privacy.anonymize import anonymize_batch

    src = tmp_path / "in"
    src.mkdir()
    _clip(src / "a.mp4", n=4)
    out = tmp_path / "out"
    kw = {"backend": "local", "face_detector": no_faces}
    assert [r.status for r in anonymize_batch(src, out, **kw)] == ["done"]
    assert [r.status for r in anonymize_batch(src, out, **kw)] == ["skipped"]
    (redo,) = anonymize_batch(src, out, method="pixelate", **kw)
    assert redo.status == "done" and "method 'blur' -> 'pixelate'" in redo.note
    assert json.loads(sidecar_path(out / "a.mp4").read_text())["method"] == "pixelate"


def test_a_run_removes_the_temporary_files_a_killed_run_left_and_nothing_else(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _clip(src / "clip1.mp4", n=4)
    out = tmp_path / "out"
    out.mkdir()
    old = time.time() - 60
    stale = [out / ".clip1.k2j4_9ab.mp4", out / ".clip1.mp4.x8w2q0aa.json"]
    kept = [out / ".clip1.short.mp4", out / ".clip2.abcdefgh.mp4", out / ".notes.abcdefgh.txt", out / "clip1.keep"]
    for p in stale + kept:
        p.write_bytes(b"partial")
        os.utime(p, (old, old))
    fresh = out / ".clip1.zzzzzzzz.mp4"  # written by a run that started after this one: not ours to remove
    fresh.write_bytes(b"partial")
    os.utime(fresh, (time.time() + 60, time.time() + 60))
    anonymize(src, out, face_detector=no_faces)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept + [fresh])


def test_the_sidecar_is_streamed_to_disk_while_the_video_runs(tmp_path, monkeypatch):
    clip = _clip(tmp_path / "in.mp4", n=24)
    out = tmp_path / "o" / "anon.mp4"
    seen = []
    add = options_module.FrameLog.add

    def add_and_flush(self, record):  # the file's own buffer aside, each record is on disk, not in a list
        add(self, record)
        self.file.flush()

    monkeypatch.setattr(options_module.FrameLog, "add", add_and_flush)

    def on_frame(n):  # what lies beside the output while frames are still coming
        logs = list(out.parent.glob(".anon.mp4.*.json"))
        seen.append(sum(1 for _ in logs[0].open()) if logs else -1)

    anonymize_module.anonymize_video(clip, out, anonymize_module.AnonymizeConfig(detect_every=1),
                                     ScriptedDetector(), on_frame)
    assert seen[-1] >= 23 and seen == sorted(seen)  # one record a frame went to disk as it came
    side = json.loads(sidecar_path(out).read_text())
    assert side["faces_per_frame"] == [1] * 24 and [f["i"] for f in side["frames"]] == list(range(24))
    assert side["frames"][3]["boxes"] and side["frame_count"] == 24 and _hidden(out.parent) == []


def _kill_mid_run(cmd: list[str], out: Path, sig: int) -> int:
    """Start ``cmd`` and send ``sig`` once it has finished one more video and is half-way through the
    next (a temporary output of our pattern exists)."""
    done_before = len(list(out.glob("c*.mp4.json")))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        writing = [p for p in out.glob(".c*.mp4") if p.stat().st_mtime > time.time() - 5 and p.stat().st_size > 0]
        if writing and len(list(out.glob("c*.mp4.json"))) > done_before:
            proc.send_signal(sig)
            break
        time.sleep(0.01)
    return proc.wait(timeout=60)


def _whole_or_absent(out: Path, n_frames: int) -> list[Path]:
    """The outputs under a final name, each checked complete (all frames, its sidecar)."""
    finals = sorted(out.glob("c*.mp4"))
    for f in finals:
        assert probe(f).frame_count == n_frames and not probe(f).truncated and sidecar_path(f).is_file(), f
    return finals


def test_a_killed_or_interrupted_folder_run_leaves_no_partial_output_and_the_rerun_finishes(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for k in range(4):
        frames = np.full((60, 180, 320, 3), 40 + 10 * k, np.uint8)
        for i in range(60):
            frames[i, 60:120, 100 + i:160 + i] = 220
        write_video(src / f"c{k}.mp4", frames, 25)
    out = tmp_path / "out"
    cmd = [str(REPO / ".venv" / "bin" / "affectlens"), "anonymize", str(src), "--out", str(out), "--detect-every", "1"]
    assert _kill_mid_run(cmd, out, signal.SIGKILL) == -signal.SIGKILL
    after_kill = _whole_or_absent(out, 60)
    assert 1 <= len(after_kill) < 4 and _hidden(out)  # killed: its half-written files stay until the next run
    assert _kill_mid_run(cmd, out, signal.SIGINT) == 130
    after_interrupt = _whole_or_absent(out, 60)
    assert len(after_kill) < len(after_interrupt) < 4
    assert _hidden(out) == []  # the SIGKILL's leftovers cleaned at the start, the SIGINT's own on the way out
    rerun = subprocess.run([*cmd, "--json"], capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
    assert rerun.returncode == 0, rerun.stderr
    status = [r["status"] for r in json.loads(rerun.stdout)]
    assert sorted(status) == sorted(["skipped"] * len(after_interrupt) + ["done"] * (4 - len(after_interrupt)))
    assert len(_whole_or_absent(out, 60)) == 4 and _hidden(out) == []


def test_resume_keys_on_the_obfuscation_models_and_flips_too(tmp_path, monkeypatch):
    """--recon, --attributes and --flip shape an obfuscated output as much as --method does."""
    from affectlens.privacy import obfuscate as O
    from tests.privacy.test_obfuscation import _tiny_obfuscator

    monkeypatch.setattr(O, "load_obfuscator", lambda recon, attr, flip, output="blended": O.Obfuscator(
        *(lambda t: (t.recon, t.attr_model))(_tiny_obfuscator()), flip, output=output))
    monkeypatch.setitem(masking.METHODS, "obfuscate", masking.blur)  # restored afterwards
    monkeypatch.setitem(masking.METHOD_SETTINGS, "obfuscate", {})
    recon, attrs = tmp_path / "recon.pt", tmp_path / "attrs.pt"
    recon.write_bytes(b"r")
    attrs.write_bytes(b"a")
    src = tmp_path / "in"
    src.mkdir()
    _clip(src / "a.mp4", n=4)
    out = tmp_path / "out"

    def run(flip="Smiling"):
        O.register_obfuscate(recon, attrs, flip)
        (r,) = anonymize(src, out, method="obfuscate", face_detector=ScriptedDetector(), detect_every=1)
        return r

    first = run()
    assert first.status == "done"
    made = json.loads(sidecar_path(out / "a.mp4").read_text())["options"]["method_settings"]
    assert made["flip"] == ["Smiling"] and made["reconstruct"]["path"] == str(recon.resolve())
    assert run().status == "skipped"
    redo = run("Smiling,Young")
    assert redo.status == "done" and redo.note == "redone: made with other options (method_settings: flip)"
    os.utime(recon, ns=(time.time_ns(), time.time_ns() + 10**9))  # retrained in place
    redo = run("Smiling,Young")
    assert redo.status == "done" and redo.note == "redone: made with other options (method_settings: reconstruct)"
    assert run("Smiling,Young").status == "skipped"
