"""Privacy fails closed: options that would weaken detection are refused before any work, a
detection that raises loses the whole file (never a frame written unmasked), and a file in which
nothing was found says so."""
from __future__ import annotations

import json

import numpy as np
import pytest

from affectlens.errors import AffectlensError
from affectlens.privacy import video as video_module
from affectlens.privacy.anonymize import AnonymizeConfig, anonymize
from tests.privacy.test_anonymize import ScriptedDetector, _clip

WEAKENING = [
    ("--det-size", "-5", "det_size"),
    ("--det-size", "100", "det_size"),
    ("--threshold", "0", "threshold"),
    ("--threshold", "1", "threshold"),
    ("--threshold", "-0.5", "threshold"),
    ("--detect-every", "0", "detect_every"),
    ("--detect-every", "-2", "detect_every"),
    ("--detect-every", "50", "detect_every"),
    ("--margin", "-0.2", "margin"),
]


@pytest.mark.parametrize("flag,value,field", WEAKENING)
def test_cli_refuses_options_that_weaken_detection_before_any_work(tmp_path, capsys, flag, value, field):
    from affectlens.cli import main

    clip = _clip(tmp_path / "face.mp4", n=4)
    out = tmp_path / "out" / "o.mp4"
    with pytest.raises(SystemExit) as e:
        main(["anonymize", str(clip), "--out", str(out), flag, value])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and field in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "out").exists()  # refused before anything was planned or written


@pytest.mark.parametrize("field,value", [("det_size", -5), ("det_size", 64), ("threshold", 0.0),
                                          ("threshold", 1.0), ("detect_every", 0), ("detect_every", 2.5),
                                          ("margin", -1.0), ("detect_workers", 0), ("mask", "none"),
                                          ("detector", "bogus")])
def test_the_config_itself_refuses_weakening_values(field, value):
    with pytest.raises(AffectlensError, match=field):
        AnonymizeConfig(**{field: value})


def test_python_api_and_batch_refuse_them_too(tmp_path):
    clip = _clip(tmp_path / "face.mp4", n=4)
    with pytest.raises(AffectlensError, match="det_size"):
        anonymize(clip, tmp_path / "o.mp4", det_size=-5)
    from affectlens.privacy.anonymize import anonymize_batch

    with pytest.raises(AffectlensError, match="detect_every"):
        anonymize_batch(clip, tmp_path / "o2.mp4", backend="local", detect_every=0)
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "o2.mp4").exists()


def test_zero_detection_size_means_full_size():
    assert AnonymizeConfig(det_size=0).det_size is None
    assert AnonymizeConfig(det_size=320).det_size == 320


class RaisingOn(ScriptedDetector):
    def __init__(self, call: int):
        super().__init__()
        self.call = call

    def __call__(self, rgb):
        if self.i == self.call:
            raise RuntimeError("detector crashed")
        return super().__call__(rgb)


def test_a_detection_that_raises_loses_the_file_not_the_face(tmp_path):
    clip = _clip(tmp_path / "in" / "face.mp4", n=12)
    dst = tmp_path / "out"
    (res,) = anonymize(tmp_path / "in", dst, face_detector=RaisingOn(5), detect_every=1, errors="collect")
    assert res.status == "failed" and "face.mp4" in res.error and "detector crashed" in res.error
    assert not dst.exists() or not list(dst.rglob("*.*"))  # no output, no sidecar, no temp file
    assert clip.is_file()


def test_a_background_detection_that_raises_fails_the_file(tmp_path, monkeypatch):
    """The default path: our detector in worker threads. A worker's exception reaches the file."""
    clip = _clip(tmp_path / "face.mp4", n=12)
    calls = {"n": 0}
    real = video_module._FrameDetector.detect

    def flaky(self, image, coded_hw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("onnxruntime fell over")
        return real(self, image, coded_hw)

    monkeypatch.setattr(video_module._FrameDetector, "detect", flaky)
    (res,) = anonymize(clip, tmp_path / "o" / "o.mp4", errors="collect", detect_every=1)
    assert res.status == "failed" and "onnxruntime fell over" in res.error
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").rglob("*"))


def test_a_video_without_faces_says_so(tmp_path, capsys):
    from affectlens.cli import main
    from affectlens.media import write_video

    clip = write_video(tmp_path / "empty room.mp4", np.full((6, 64, 96, 3), 90, np.uint8), 10)
    main(["anonymize", str(clip), "--out", str(tmp_path / "o.mp4"), "--json"])
    (row,) = json.loads(capsys.readouterr().out)
    assert row["status"] == "done" and row["faces"] == 0 and row["frames"] == 6
    capsys.readouterr()
    main(["anonymize", str(clip), "--out", str(tmp_path / "o2.mp4")])
    err = capsys.readouterr().err
    assert "empty room.mp4: no face detected in 6 frames" in err
