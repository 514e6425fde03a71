"""The Ray backend of :func:`affectlens.scale.run_batch`: one task per file, one CPU per task.

Start-up: ``address=None`` starts a local cluster of ``num_workers`` CPUs (no dashboard, worker
logs kept out of the terminal) and stops it afterwards; ``address="auto"`` or
``"ray://head:10001"`` joins an existing cluster, whose nodes must have affectlens installed
(the same version) and see the input and output paths (a shared file system). A Ray session
that is already initialised is reused and left running.

Tasks are submitted through a bounded window (4 per CPU) so a corpus of a million files does
not become a million pending objects; a worker that dies is retried twice by Ray, then the file
is reported as failed like any other error.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from affectlens.errors import AffectlensError


def _ray():
    try:
        import ray
    except ImportError:
        raise AffectlensError("--backend ray needs Ray: pip install 'affectlens[scale]'") from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None = None, num_workers: int | None = None) -> Iterator[Any]:
    """Yield the ``ray`` module connected to a cluster; shut down only what this call started."""
    ray = _ray()
    if ray.is_initialized():
        yield ray
        return
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if address:
        kwargs["address"] = address
    else:
        kwargs["num_cpus"] = int(num_workers or os.cpu_count() or 1)
    try:
        ray.init(**kwargs)
    except Exception as e:  # unreachable address, port clash: one line, not a traceback
        where = address or "a local cluster"
        raise AffectlensError(f"cannot start Ray on {where}: {type(e).__name__}: {e}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _task_error(e: Exception) -> str:
    """A one-line reason for a task Ray could not run (worker died, object lost, ...)."""
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[-1] if lines else 'task failed'}"


def run_on_ray(todo: Sequence[tuple[int, Any]], fn: Callable[[Any], Any], record: Callable[[int, str, str], None],
               runner: Callable[[Callable[[Any], Any], Any, bool], tuple[str, Any]], collect: bool = False,
               address: str | None = None, num_workers: int | None = None) -> None:
    """Run ``runner(fn, item, collect)`` (``batch.run_one``: an outcome, never an exception) on every
    ``(index, item)`` as Ray tasks; call ``record(index, status, payload)`` on the driver as each
    finishes (in completion order)."""
    with ray_session(address, num_workers) as ray:
        remote = ray.remote(num_cpus=1, max_retries=2)(runner)
        fn_ref = ray.put(fn)  # pickled once, not once per task
        window = 4 * max(1, int(ray.cluster_resources().get("CPU", 1)))
        pending: dict[Any, int] = {}
        queue = list(todo)
        queue.reverse()  # pop() from the end = submit in input order
        while queue or pending:
            while queue and len(pending) < window:
                k, item = queue.pop()
                pending[remote.remote(fn_ref, item, collect)] = k
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                k = pending.pop(ref)
                try:
                    status, payload = ray.get(ref)
                except Exception as e:  # the task itself could not run
                    status, payload = "failed", _task_error(e)
                record(k, status, payload)
