"""`affectlens demo`: every room shown on built-in data (synthetic generators + shipped weights).

Each room's ``demo.py`` has one step, a function ``(folder) -> StepResult``
(:mod:`affectlens.report.step`); a step owns its folder under ``--out``. This module only runs
them, writes ``metrics.json`` and a self-contained ``report.html`` and prints a summary table.
It reads nothing from ``../shared``.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from affectlens.expression import demo as expression_demo
from affectlens.files import write_json
from affectlens.group import demo as group_demo
from affectlens.media import demo as media_demo
from affectlens.privacy import demo as privacy_demo
from affectlens.report.console import progress as progress_display
from affectlens.report.html import Report
from affectlens.report.step import StepResult
from affectlens.spontaneity import demo as spontaneity_demo
from affectlens.videotag import demo as videotag_demo


def demo_steps() -> list[tuple[str, Callable[[Path], StepResult]]]:
    """The steps, in the order a newcomer should see them: each is its room's ``demo.demo_step``."""
    return [("media", media_demo.demo_step), ("group", group_demo.demo_step), ("anonymize", privacy_demo.demo_step),
            ("expression", expression_demo.demo_step), ("videotag", videotag_demo.demo_step),
            ("spontaneity", spontaneity_demo.demo_step)]


def run_demo(out: Path, console: Console | None = None, only: list[str] | None = None) -> dict:
    """Run every step (or those named in ``only``), write ``metrics.json`` and ``report.html``."""
    console = console or Console()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, StepResult] = {}
    seconds: dict[str, float] = {}
    steps = [(n, fn) for n, fn in demo_steps() if only is None or n in only]
    with progress_display(console=console) as progress:
        task = progress.add_task("demo", total=len(steps))
        for name, fn in steps:
            progress.update(task, description=f"demo: {name}")
            t0 = time.perf_counter()
            folder = out / name
            folder.mkdir(parents=True, exist_ok=True)
            results[name] = fn(folder)
            seconds[name] = time.perf_counter() - t0
            progress.advance(task)
    metrics = {name: {**r.metrics, "seconds": round(seconds[name], 1)} for name, r in results.items()}
    write_json(out / "metrics.json", metrics)
    report = _write_report(out / "report.html", results)
    table = Table("step", "result", "seconds", title="affectlens demo")
    for name, r in results.items():
        table.add_row(name, r.summary, f"{seconds[name]:.1f}")
    console.print(table)
    console.print(f"report: {report.resolve()}\nmetrics: {(out / 'metrics.json').resolve()}")
    return metrics


def _write_report(path: Path, results: dict[str, StepResult]) -> Path:
    report = Report("affectlens demo")
    for name, r in results.items():
        report.section(name)
        report.text(r.summary)
        if r.text:
            report.text(r.text)
        for caption, headers, rows in r.tables:
            report.table(rows, headers, caption=caption)
        for caption, png in r.figures:
            report.image(png, caption=caption)
    return report.write(path)
