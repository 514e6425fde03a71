"""`group features` killed (SIGKILL) or interrupted (SIGINT) mid-run: no partial cache entry under
a final name, no temporary file once the next run starts, and the re-run caches exactly the rest."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from affectlens.group.data import FeatureSpec, entry_is_current, extract_features, read_vgaf
from affectlens.group.synth import SynthSpec, generate_dataset

REPO = Path(__file__).resolve().parents[2]
N = 6
SPEC = FeatureSpec(5, 5, 96)


@pytest.fixture(scope="module")
def vgaf(tmp_path_factory):
    root = tmp_path_factory.mktemp("killfeat")
    generate_dataset(root, N, SynthSpec(width=160, height=120, fps=10, seconds=3.0, min_faces=3, max_faces=4),
                     seed=0, progress=False)
    return root


def _final(cache: Path) -> list[Path]:
    """Entries under a final name (pathlib's glob also matches the hidden temporary files)."""
    return sorted(p for p in (cache / SPEC.key).glob("*.npz") if not p.name.startswith("."))


def _entries(cache: Path) -> list[Path]:
    """Cache entries under a final name, each checked whole and current."""
    found = _final(cache)
    for p in found:
        assert entry_is_current(p, SPEC), p
        with np.load(p) as z:
            assert z["video"].shape == (5, 3, 96, 96) and z["audio"].shape[0] == 5, p
    return found


def _hidden(cache: Path) -> list[Path]:
    return [p for p in cache.rglob(".*") if p.is_file()]


def _stop_after_one(cmd: list[str], cache: Path, sig: int) -> int:
    before = len(_final(cache))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if len(_final(cache)) > before:
            proc.send_signal(sig)
            break
        time.sleep(0.01)
    return proc.wait(timeout=60)


def test_killed_and_interrupted_feature_runs_resume_to_a_whole_cache(vgaf, tmp_path):
    cache = tmp_path / "cache"
    cmd = [str(REPO / ".venv" / "bin" / "affectlens"), "group", "features", str(vgaf), "--cache", str(cache),
           "--frames", "5", "--size", "96"]
    assert _stop_after_one(cmd, cache, signal.SIGKILL) == -signal.SIGKILL
    after_kill = _entries(cache)
    assert 1 <= len(after_kill) < N
    assert _stop_after_one(cmd, cache, signal.SIGINT) == 130
    after_interrupt = _entries(cache)
    assert len(after_kill) < len(after_interrupt) < N and _hidden(cache) == []
    rerun = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{N} clips: {N - len(after_interrupt)} cached, {len(after_interrupt)} already cached, 0 failed" in rerun.stdout
    assert len(_entries(cache)) == N and _hidden(cache) == []


def test_a_run_removes_the_temporary_entries_a_killed_run_left(vgaf, tmp_path):
    cache = tmp_path / "cache"
    folder = cache / SPEC.key
    folder.mkdir(parents=True)
    names = sorted(p.stem for p in (vgaf / "clips").glob("*.mp4"))
    old = time.time() - 60
    stale = folder / f".{names[0]}.k2j4_9ab.npz"  # temp_beside's pattern for an entry this run writes
    kept = [folder / ".notes.k2j4_9ab.npz", folder / f".{names[0]}.npz"]  # not ours
    for p in [stale, *kept]:
        p.write_bytes(b"partial")
        os.utime(p, (old, old))
    r = extract_features(read_vgaf(vgaf).items, cache, SPEC, progress=False)
    assert r["written"] == N and not stale.exists() and all(p.exists() for p in kept)
