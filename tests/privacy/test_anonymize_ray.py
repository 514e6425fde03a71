"""`affectlens anonymize --backend ray`: same outputs, resume and failure report as one process."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from affectlens.cli import main
from affectlens.media import iter_frames
from affectlens.privacy.anonymize import sidecar_path
from tests.privacy.test_anonymize import _clip


def _run(argv, capsys) -> tuple[int, list, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


@pytest.fixture
def folder(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a.png", "sub/b.jpg"):
        cv2.imwrite(str(src / name), rng.integers(0, 256, (72, 96, 3), dtype=np.uint8))
    _clip(src / "c.mp4", n=6)
    (src / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    return src


def _strip(rows, root):
    return sorted((r["src"].replace(str(root), ""), r["status"], r["frames"], r["faces"]) for r in rows)


def test_ray_matches_local_resumes_and_reports_failures(folder, tmp_path, capsys):
    pytest.importorskip("ray", reason="ray is not installed (pip install 'affectlens[scale]')")
    local, far = tmp_path / "local", tmp_path / "ray"
    code, rows_local, _ = _run(["anonymize", str(folder), "--out", str(local), "--json"], capsys)
    assert code == 1
    try:
        code, rows_ray, err = _run(["anonymize", str(folder), "--out", str(far), "--json", "--backend", "ray",
                                    "--workers", "2"], capsys)
    except Exception as e:  # noqa: BLE001 (the reason is reported in the skip)
        pytest.skip(f"ray cannot start here: {e}")
    if code == 1 and "cannot start Ray" in err:
        pytest.skip(f"ray cannot start here: {err.strip()}")
    assert code == 1, err
    assert _strip(rows_ray, folder) == _strip(rows_local, folder)  # same files, statuses, frames, faces
    failed = [r for r in rows_ray if r["status"] == "failed"]
    assert len(failed) == 1 and str(folder / "broken.mp4") in failed[0]["error"]
    assert str(folder / "broken.mp4") in err and "1 of 4 files failed" in err
    assert not (far / "broken.mp4").exists() and not list(far.rglob(".*"))  # nothing half-written

    for name in ("a.png", "sub/b.jpg"):
        assert (far / name).read_bytes() == (local / name).read_bytes()
    for name in ("a.png", "sub/b.jpg", "c.mp4"):
        a, b = (json.loads(sidecar_path(d / name).read_text()) for d in (local, far))
        assert a["frames"] == b["frames"] and a["output"] != b["output"]
    va = np.stack([f for _, _, f in iter_frames(local / "c.mp4")])
    vb = np.stack([f for _, _, f in iter_frames(far / "c.mp4")])
    assert va.shape == vb.shape and np.abs(va.astype(int) - vb.astype(int)).mean() < 1.0

    code, again, _ = _run(["anonymize", str(folder), "--out", str(far), "--json", "--backend", "ray",
                           "--workers", "2"], capsys)
    assert code == 1 and sorted(r["status"] for r in again) == ["failed", "skipped", "skipped", "skipped"]
