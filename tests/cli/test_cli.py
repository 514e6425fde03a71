"""The `affectlens` command: help, probe (table and JSON), one-line errors and exit codes."""
from __future__ import annotations

import json
import subprocess
import sys

from affectlens.cli import main
from tests.media.clips import make_clip, tone


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "affectlens", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_commands():
    r = run("--help")
    assert r.returncode == 0
    for cmd in ("probe", "demo", "synth"):
        assert cmd in r.stdout


def test_probe_json_and_table(tmp_path, capsys):
    a = make_clip(tmp_path / "a.mp4", 30, fps=15, audio=tone(2.0, 44_100))
    b = make_clip(tmp_path / "b.mp4", 10, fps=25)
    try:
        main(["probe", "--json", str(a), str(b)])
    except SystemExit as e:
        assert e.code in (0, None)
    rows = json.loads(capsys.readouterr().out)
    assert [r["frame_count"] for r in rows] == [30, 10]
    assert rows[0]["audio"]["sample_rate"] == 44_100 and rows[1]["audio"] is None
    r = run("probe", str(a))
    assert r.returncode == 0 and "a.mp4" in r.stdout and "44100" in r.stdout


def test_probe_reports_bad_files_and_exits_nonzero(tmp_path):
    good = make_clip(tmp_path / "good.mp4", 10, fps=10)
    (tmp_path / "bad.mp4").write_text("nope")
    r = run("probe", str(good), str(tmp_path / "bad.mp4"), str(tmp_path / "missing.mp4"))
    assert r.returncode == 1
    assert "good.mp4" in r.stdout  # the good file is still described
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and "bad.mp4" in errors[0] and "missing.mp4: file not found" in errors[1]
