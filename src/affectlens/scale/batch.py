"""One batch runner for every folder command: local (one process) or spread over Ray.

A folder command (``affectlens group features``, ``affectlens anonymize``) describes its work
as *items* (usually input paths), a function that processes one item and writes one output
atomically, and where that output goes::

    from affectlens.scale import run_batch

    def out_of(src: Path) -> Path:
        return out_dir / f"{src.stem}.anon.mp4"

    def anonymize_one(src: Path) -> Path:          # must be picklable for Ray: a module-level
        anonymize_video(src, out_of(src), mode)    # function or functools.partial of one
        return out_of(src)

    result = run_batch(sorted(in_dir.glob("*.mp4")), anonymize_one, out_of,
                       backend=backend, address=address, num_workers=workers)
    result.print_summary()
    raise typer.Exit(result.exit_code)

Contract (identical for both backends):
  * resume: an item whose output already exists is *skipped* (``resume=False`` redoes it), unless
    ``up_to_date(item, out)`` says it was made with other options (then it is redone);
    ``fn`` must therefore write atomically (``affectlens.files.atomic_path``) — and when it writes
    several files, write the one ``out_path_of`` names last;
  * an item whose ``fn`` raises is *failed* with a one-line reason and the others go on; an
    output path equal to the item's own path fails the item (outputs never overwrite inputs);
  * ``fn`` returns the path it wrote; a returned path that does not exist fails the item;
  * the temporary files a killed run left beside the outputs still to do (``temp_beside``'s
    pattern, older than this run) are removed before any work.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.text import Text

from affectlens.errors import AffectlensError, failure_line
from affectlens.files import stale_temps
from affectlens.report.console import one_line, problem_lines, stderr
from affectlens.report.console import progress as progress_display
from affectlens.scale.ray import run_on_ray

BACKENDS = ("local", "ray")


@dataclass
class BatchResult:
    """What happened to every item, in input order: ``done`` and ``skipped`` hold (item, output) —
    the output path, or in collect mode (no ``out_path_of``) whatever ``fn`` returned, e.g. a
    file's predictions with its frames, faces and seconds — and ``failed`` holds (item, reason)."""

    backend: str
    done: list[tuple[Any, Path]] = field(default_factory=list)
    skipped: list[tuple[Any, Path]] = field(default_factory=list)
    failed: list[tuple[Any, str]] = field(default_factory=list)
    seconds: float = 0.0
    details: list[tuple[Any, dict]] = field(default_factory=list)  # (item, extras) for done items whose fn gave some

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def exit_code(self) -> int:
        """What a batch command exits with: 1 when any item failed, else 0."""
        return 0 if self.ok else 1

    def failure_lines(self, name: Callable[[Any], object] = str) -> list[str]:
        """One line per failed item, each naming it by ``name(item)`` (errors that already name their
        file are kept as they are)."""
        return [reason if reason.startswith(str(name(item))) else f"{name(item)}: {reason}" for item, reason in self.failed]

    def print_summary(self, console=None, title: str = "batch") -> None:
        """One line of counts, then the failures through the one failure printer
        (:func:`affectlens.report.console.problem_lines`), to stderr."""
        console = console or stderr
        console.print(Text(f"{one_line(title)}: {len(self.done)} done, {len(self.skipped)} skipped (output exists), "
                           f"{len(self.failed)} failed — {self.seconds:.1f} s on {self.backend}"), soft_wrap=True)
        problem_lines(self.failure_lines(), "item(s)", label="failed", console=console)


def run_one(fn: Callable[[Any], Any], item: Any, collect: bool = False, raise_errors: bool = False) -> tuple[str, Any]:
    """Run ``fn(item)`` and turn every outcome into ``("done", output)`` or ``("failed", reason)``.

    ``output`` is the path ``fn`` wrote (which must exist), or with ``collect`` whatever it
    returned. ``fn`` may also return ``(path, extras)``, a dict of per-item figures (frames,
    faces, seconds …) that ``BatchResult.details`` keeps. Runs inside Ray workers too, so a
    failure crosses the process boundary as a plain string. ``raise_errors``: an item's exception
    propagates instead (a caller that asked to stop at the first bad item).
    """
    try:
        out = fn(item)
    except Exception as e:  # a crashing item must not stop the corpus
        if raise_errors:
            raise
        return "failed", failure_line(item, e)
    if collect:
        return "done", out
    path, extras = out if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict) else (out, None)
    if path is None or not Path(path).exists():
        return "failed", f"produced no output (returned {out!r})"
    return "done", (str(path), extras)


def _resolved(p: Path) -> Path:
    try:
        return p.resolve()
    except (OSError, RuntimeError):  # a symlink loop: compare it by its absolute name
        return p.absolute()


def _plan(items: Sequence[Any], out_path_of: Callable[[Any], Any], resume: bool,
          up_to_date: Callable[[Any, Path], bool] | None = None) -> tuple[list, list, list]:
    """Split item indices into (to do, skipped with output, failed with reason); reject two items
    writing one output. With ``up_to_date``, an existing output it rejects is redone, not skipped."""
    todo, skipped, failed, owners = [], [], [], {}
    for k, item in enumerate(items):
        out = Path(out_path_of(item))
        key = _resolved(out)
        if key in owners:
            raise AffectlensError(f"{items[owners[key]]} and {item} would both write {out}")
        owners[key] = k
        if isinstance(item, (str, Path)) and _resolved(Path(item)) == key:
            failed.append((k, f"output {out} is the input itself (outputs never overwrite inputs)"))
        elif resume and out.exists() and (up_to_date is None or up_to_date(item, out)):
            skipped.append((k, out))
        else:
            todo.append(k)
    return todo, skipped, failed


def run_batch(items: Iterable[Any], fn: Callable[[Any], Any], out_path_of: Callable[[Any], Any] | None, *,
              backend: str = "local", address: str | None = None, num_workers: int | None = None,
              resume: bool = True, description: str = "processing", progress: bool = True,
              up_to_date: Callable[[Any, Path], bool] | None = None, display=None,
              fail_fast: bool = False) -> BatchResult:
    """Apply ``fn`` to every item, locally or over Ray, with resume and per-item failure reports.

    ``fn(item) -> output path`` writes atomically; ``out_path_of(item)`` says where (without doing
    any work) so finished items can be skipped; ``up_to_date(item, out)``, when given, says whether
    an existing output was made with the options of this run (resume keys on them: a stale output
    is redone, never silently kept). With ``backend="ray"`` the items become Ray tasks
    (one CPU each) on the cluster at ``address`` or, by default, on a local cluster of
    ``num_workers`` CPUs started for this call (an already-initialised Ray session is reused and
    left running). ``fn`` must then be picklable and importable on the workers. Never raises for
    a bad item; see :class:`BatchResult`.

    Collect mode, ``out_path_of=None``: for commands whose items feed one combined output (a
    predictions table): nothing is skipped, and ``done`` holds what ``fn`` returned per item.
    ``display``: an open progress display (``report.console.progress``) to count the items in,
    so ``fn`` may add its own tasks to it (a bar per video's frames); else one is opened when
    ``progress``. ``fail_fast`` (local only): the first item that raises stops the batch with its
    own exception (a Python caller's ``errors="raise"``).
    """
    if backend not in BACKENDS:
        raise AffectlensError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    items = list(items)
    start, started = time.monotonic(), time.time()
    collect = out_path_of is None
    todo, skipped, failed = (list(range(len(items))), [], []) if collect else _plan(items, out_path_of, resume, up_to_date)
    for p in [] if collect else stale_temps([out_path_of(items[k]) for k in todo], started):  # a killed run's leftovers
        p.unlink(missing_ok=True)
    done: list[tuple[int, Any]] = []
    details: list[tuple[int, dict]] = []

    with nullcontext(display) if display is not None else progress_display(enabled=progress, failed_column=True) as bar:
        task = bar.add_task(description, total=len(items), failed=len(failed))
        bar.update(task, advance=len(items) - len(todo), failed=len(failed))

        def record(k: int, status: str, payload: Any) -> None:
            if status == "done":
                if collect:
                    done.append((k, payload))
                else:
                    done.append((k, Path(payload[0])))
                    if payload[1] is not None:
                        details.append((k, payload[1]))
            else:
                failed.append((k, payload))
            bar.update(task, advance=1, failed=len(failed))

        if backend == "local":
            for k in todo:
                record(k, *run_one(fn, items[k], collect, fail_fast))
        elif todo:
            run_on_ray([(k, items[k]) for k in todo], fn, record, run_one, collect=collect, address=address,
                       num_workers=num_workers)

    def in_input_order(part: list) -> list:  # Ray finishes in any order; reports follow the input
        return [(items[k], x) for k, x in sorted(part, key=lambda pair: pair[0])]

    return BatchResult(backend, in_input_order(done), in_input_order(skipped), in_input_order(failed),
                       time.monotonic() - start, in_input_order(details))
