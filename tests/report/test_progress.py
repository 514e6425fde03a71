"""The one progress display: a Rich bar on a terminal, plain lines in logs, silence when asked."""
from __future__ import annotations

import io

import pytest
from rich.progress import Progress

from affectlens.report.console import LineProgress, make_console, progress, track


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _lines(buf: io.StringIO) -> list[str]:
    return [line for line in buf.getvalue().splitlines() if line.strip()]


def test_lines_every_twentieth_throttled_and_the_last_one():
    buf, clock = io.StringIO(), Clock()
    bar = LineProgress(make_console(file=buf), failed_column=True, min_interval=2.0, clock=clock)
    task = bar.add_task("files", total=100, failed=0)
    clock.now = 1.0
    bar.advance(task, 5)                          # a twentieth, but the work is younger than 2 s
    assert _lines(buf) == []
    for _ in range(95):
        clock.now += 1.0                          # one item a second: a line at most every 2 s
        bar.update(task, advance=1, failed=1)
    lines = _lines(buf)
    assert lines[0] == "files: 6/100 (6 %) 2s elapsed, ~31s left, 1 failed"
    assert lines[-1] == "files: 100/100 (100 %) 1m36s elapsed, 1 failed"
    assert 19 <= len(lines) <= 20                 # about one per 5 %, never one per item
    done = [int(line.split("/")[0].split()[-1]) for line in lines]
    assert done == sorted(done) and len({d // 5 for d in done}) == len(done)  # one line per twentieth at most


def test_small_totals_get_a_line_per_item_and_quick_work_none():
    buf, clock = io.StringIO(), Clock()
    bar = LineProgress(make_console(file=buf), min_interval=2.0, clock=clock)
    quick = bar.add_task("quick", total=3)
    bar.advance(quick, 3)                         # done at once: nothing to tell a log
    slow = bar.add_task("clips", total=3)
    for _ in range(3):
        clock.now += 3.0
        bar.advance(slow)
    assert _lines(buf) == ["clips: 1/3 (33 %) 3s elapsed, ~6s left", "clips: 2/3 (67 %) 6s elapsed, ~3s left",
                           "clips: 3/3 (100 %) 9s elapsed"]


def test_description_is_printed_literally():
    buf, clock = io.StringIO(), Clock()
    bar = LineProgress(make_console(file=buf), min_interval=0.0, clock=clock)
    bar.advance(bar.add_task("[bold]a\nb.mp4", total=1))
    assert _lines(buf) == ["[bold]a\\nb.mp4: 1/1 (100 %) 0s elapsed"]


@pytest.mark.parametrize("mode, terminal, enabled, expected", [
    ("auto", False, True, "lines"), ("auto", True, True, "bar"), ("plain", True, True, "lines"),
    ("off", False, True, "silent"), ("off", True, True, "silent"), ("auto", False, False, "silent"),
    ("auto", True, False, "silent")])
def test_progress_picks_its_display(monkeypatch, mode, terminal, enabled, expected):
    monkeypatch.setenv("AFFECTLENS_PROGRESS", mode)
    shown = progress(enabled=enabled, console=make_console(file=io.StringIO(), force_terminal=terminal))
    kind = "lines" if isinstance(shown, LineProgress) else "silent" if shown.disable else "bar"
    assert isinstance(shown, (LineProgress, Progress)) and kind == expected


def test_track_yields_everything_and_logs_when_not_a_terminal(monkeypatch, capsys):
    monkeypatch.setenv("AFFECTLENS_PROGRESS", "plain")
    monkeypatch.setattr(LineProgress, "__init__", _instant(LineProgress.__init__))
    assert list(track(range(4), "items")) == [0, 1, 2, 3]
    assert capsys.readouterr().err.splitlines() == [f"items: {k}/4 ({25 * k} %) 0s elapsed" + (", ~0s left" if k < 4 else "")
                                                    for k in range(1, 5)]


def _instant(init):
    def patched(self, console=None, failed_column=False, min_interval=2.0, clock=None):
        init(self, console, failed_column, min_interval=0.0, clock=lambda: 0.0)
    return patched
