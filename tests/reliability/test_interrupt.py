"""Ctrl-C stops a batch, even when a library turned the KeyboardInterrupt into another exception
(the CI flake behind this: SIGINT during a lazy import surfaced as ``ImportError: initialization
failed``, the file was recorded as failed, the batch went on and exited 1 instead of 130)."""
from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from affectlens import interrupt
from affectlens.errors import MediaError, failure_line
from affectlens.privacy.anonymize import anonymize
from affectlens.scale import run_batch
from tests.privacy.test_anonymize import ScriptedDetector, _clip

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def sigint_noted(monkeypatch):
    """As if SIGINT had arrived (the flag only: no real signal in the test process)."""
    monkeypatch.setattr(interrupt, "_received", type(interrupt._received)())
    interrupt._received.set()


def test_failure_line_names_the_item_once():
    assert failure_line("a.mp4", MediaError("a.mp4", "corrupt")) == "a.mp4: corrupt"
    assert failure_line("b.jpg", ValueError("bad\nmore")) == "b.jpg: ValueError: bad"
    assert failure_line("c.wav", RuntimeError()) == "c.wav: RuntimeError"


def test_without_sigint_an_import_error_is_the_files_failure():
    def broken(_):
        raise ImportError("initialization failed")

    res = run_batch(["x"], broken, lambda i: Path("/nonexistent/out") / i, backend="local", resume=False)
    assert res.failed == [("x", "x: ImportError: initialization failed")]


def test_after_sigint_no_batch_blames_the_file(tmp_path, sigint_noted):
    def broken(_):
        raise ImportError("initialization failed")  # what torch's C init makes of a KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch(["x"], broken, lambda i: tmp_path / i, backend="local", resume=False)

    class Interrupted(ScriptedDetector):
        def __call__(self, rgb):
            raise ImportError("initialization failed")

    clip = _clip(tmp_path / "in" / "face.mp4", n=6)
    with pytest.raises(KeyboardInterrupt):
        anonymize(clip.parent, tmp_path / "out", face_detector=Interrupted(), errors="collect")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*"))  # nothing half-written


def test_the_cli_exits_130_however_the_interrupt_surfaced(monkeypatch, sigint_noted):
    from affectlens import cli

    monkeypatch.setattr(interrupt, "install", lambda: None)  # keep the flag the fixture set
    for outcome in (SystemExit(1), MediaError("a.mp4", "cannot read"), RuntimeError("x")):
        def command(*args, outcome=outcome, **kwargs):
            raise outcome
        monkeypatch.setattr(cli, "app", command)
        with pytest.raises(SystemExit) as e:
            cli.main(["probe", "a.mp4"])
        assert e.value.code == 130, outcome


@pytest.mark.parametrize("library", ["libtorch", "libav"])
def test_sigint_while_the_cli_starts_exits_130_without_a_traceback(tmp_path, library):
    """The console script imports torch, PyAV and OpenCV with SIGINT noted, not raised: an interrupt
    inside torch's import could leave it half-initialised or crash the process. The signal is sent
    while ``library`` is being loaded (it shows in the process's memory maps)."""
    proc = subprocess.Popen([str(REPO / ".venv" / "bin" / "affectlens"), "probe", str(tmp_path / "none.mp4")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.time() + 60
    while proc.poll() is None and time.time() < deadline:
        try:
            if library in maps.read_text():
                break
        except OSError:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert "Traceback" not in err
    # a probe that finished first exits 1 (the file is missing); one that was stopped exits 130
    assert proc.returncode in (130, 1), (proc.returncode, err)
    if proc.returncode == 1:
        assert "none.mp4" in err
