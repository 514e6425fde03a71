"""run_batch: local and Ray give the same outputs, resume, and the same failure reports."""
from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

from affectlens.errors import AffectlensError
from affectlens.scale import run_batch
from tests.scale.jobs import count_lines, no_output, out_path, transform

N_GOOD = 8


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[list[Path], Path]:
    d = tmp_path_factory.mktemp("inputs")
    files = []
    for i in range(N_GOOD):
        f = d / f"clip{i:02d}.txt"
        f.write_text("\n".join(f"line {j} of sample {i}" for j in range(i + 2)), encoding="utf-8")
        files.append(f)
    bad = d / "clip_bad.txt"
    bad.write_text("BAD header\n", encoding="utf-8")
    files.insert(3, bad)
    files.append(d / "clip_missing.txt")  # listed but never written
    return files, bad


def _run(files, out_dir, **kw):
    fn = functools.partial(transform, out_dir=out_dir, pid_dir=kw.pop("pid_dir", None), delay=kw.pop("delay", 0.0))
    return run_batch(files, fn, functools.partial(out_path, out_dir=out_dir), progress=False, **kw)


def _snapshot(out_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out_dir.iterdir()) if p.is_file()}


def test_local_failures_are_reported_and_resume_skips(inputs, tmp_path):
    files, bad = inputs
    res = _run(files, tmp_path)
    assert [i for i, _ in res.done] == [f for f in files if f.stem not in ("clip_bad", "clip_missing")]
    assert [(i.name, r) for i, r in res.failed] == [
        ("clip_bad.txt", f"{bad}: bad header, expected a sample"),
        ("clip_missing.txt", f"FileNotFoundError: [Errno 2] No such file or directory: '{files[-1]}'")]
    assert res.exit_code == 1 and not res.ok
    assert sorted(_snapshot(tmp_path)) == sorted(f"{f.stem}.out.txt" for f, _ in res.done)  # no partial file
    assert (tmp_path / "clip05.out.txt").read_text().startswith("LINE 6 OF SAMPLE 5\n")

    again = _run(files, tmp_path)
    assert (len(again.done), len(again.skipped), len(again.failed)) == (0, N_GOOD, 2)
    redo = _run(files, tmp_path, resume=False)
    assert (len(redo.done), len(redo.skipped), len(redo.failed)) == (N_GOOD, 0, 2)


def test_bad_plans_are_refused(inputs, tmp_path):
    files, _ = inputs
    with pytest.raises(AffectlensError, match="would both write"):
        run_batch(files[:2], transform, lambda f: tmp_path / "same.txt", progress=False)
    with pytest.raises(AffectlensError, match="unknown backend 'spark'"):
        run_batch(files, transform, out_path, backend="spark")
    res = run_batch(files[:1], transform, lambda f: f, progress=False)  # would overwrite the input
    assert "outputs never overwrite inputs" in res.failed[0][1]
    res = run_batch(files[:1], no_output, lambda f: tmp_path / "x", progress=False)
    assert res.failed[0][1].startswith("produced no output")


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_matches_local_with_two_workers(inputs, tmp_path, ray_cluster):
    files, _ = inputs
    local = _run(files, tmp_path / "local")
    remote = _run(files, tmp_path / "ray", backend="ray", pid_dir=tmp_path / "pids", delay=0.3)
    assert _snapshot(tmp_path / "ray") == _snapshot(tmp_path / "local")
    assert [i for i, _ in remote.done] == [i for i, _ in local.done]
    assert remote.failed == local.failed  # same items, same one-line reasons, same order
    pids = {p.read_text() for p in (tmp_path / "pids").iterdir()}
    assert len(pids) == 2 and str(os.getpid()) not in pids  # both workers took files
    resumed = _run(files, tmp_path / "ray", backend="ray")
    assert (len(resumed.done), len(resumed.skipped), len(resumed.failed)) == (0, N_GOOD, 2)


@pytest.mark.slow
def test_ray_worker_crash_is_one_failed_file(inputs, tmp_path, ray_cluster):
    files, _ = inputs
    crash = tmp_path / "crash.txt"
    crash.write_text("CRASH\n")
    res = _run([files[0], crash, files[1]], tmp_path / "out", backend="ray")
    assert [i for i, _ in res.done] == [files[0], files[1]]
    assert len(res.failed) == 1 and res.failed[0][0] == crash
    assert "Error" in res.failed[0][1] and "\n" not in res.failed[0][1]


def _summary(res, capsys) -> list[str]:
    """The printed summary with the run's own figures (seconds, backend) masked."""
    import re

    res.print_summary(title="jobs")
    return [re.sub(r"— [\d.]+ s on \w+", "— s on backend", line) for line in capsys.readouterr().err.splitlines()]


def test_collect_mode_returns_each_items_result_in_input_order(inputs, capsys):
    files, bad = inputs
    res = run_batch(files, count_lines, None, progress=False)
    assert [i for i, _ in res.done] == [f for f in files if f.exists() and f != bad]
    assert all(r["file"] == i.name and r["lines"] >= 2 for i, r in res.done) and not res.skipped
    assert [i for i, _ in res.failed] == [bad, files[-1]] and res.exit_code == 1
    assert _summary(res, capsys)[0] == "jobs: 8 done, 0 skipped (output exists), 2 failed — s on backend"


@pytest.mark.slow
def test_ray_and_local_give_the_same_results_and_summary_in_collect_mode(inputs, ray_cluster, capsys):
    files, _ = inputs
    local = run_batch(files, count_lines, None, progress=False)
    remote = run_batch(files, count_lines, None, backend="ray", progress=False)
    assert remote.done == local.done and remote.failed == local.failed
    assert _summary(remote, capsys) == _summary(local, capsys)

