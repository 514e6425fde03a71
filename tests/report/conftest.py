"""Headless Chromium for the report tests: installed once per session when missing, else skipped."""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from affectlens.report.browser import find_chromium


def _try_install(timeout: float = 300) -> str:
    """apt-get the Debian `chromium` package once; return '' on success or the reason it failed."""
    if shutil.which("apt-get") is None:
        return "apt-get is not available"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return "not root, cannot apt-get install chromium"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    deadline = time.monotonic() + timeout  # one budget for update + install
    try:
        for cmd in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"]):
            done = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                  timeout=max(1.0, deadline - time.monotonic()))
            if done.returncode != 0:
                tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
                return f"`{' '.join(cmd)}` failed: {tail}"
    except subprocess.TimeoutExpired:
        return f"apt-get took longer than {timeout:.0f} s"
    return ""


@pytest.fixture(scope="session")
def chromium() -> str:
    exe = find_chromium()
    if exe is None:
        reason = _try_install()
        exe = find_chromium()
        if exe is None:
            pytest.skip(f"headless Chromium unavailable: {reason or 'installed but not on PATH'}")
    return exe


CLASSES = ["Positive", "Neutral", "Negative"]


def build_full_report(path):
    """A report with every kind of block the rooms use; returns (path, classification report)."""
    import numpy as np

    from affectlens.metrics.classification import classification_report
    from affectlens.report.html import Report

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 90)
    p = np.where(rng.random(90) < 0.7, y, rng.integers(0, 3, 90))
    rep = classification_report(y, p, CLASSES)
    r = Report("affectlens <demo> & report", "synthetic data; numbers are illustrative")
    r.section("Group emotion").text("Fusion of **audio** and `video` <b>not bold</b>.").metrics(rep)
    r.section("Training").curves({"train_loss": [1.1, 0.8, 0.6, 0.5], "val_loss": [1.2, 0.9, 0.8, 0.8],
                                  "val_acc": [0.4, 0.55, 0.62, 0.66]})
    r.section("Ablation").table([{"model": "audio-only", "accuracy": 0.52, "macro-F1": 0.50},
                                 {"model": "video-only", "accuracy": 0.61, "macro-F1": 0.60},
                                 {"model": "fusion", "accuracy": 0.70, "macro-F1": 0.69}], highlight=2)
    t = (np.arange(20) + 0.5) * 0.5
    r.section("Timeline").timeline(t, rng.dirichlet([2, 1, 1], 20), CLASSES, caption="group emotion over a clip")
    yy, xx = np.mgrid[0:96, 0:128]
    frame = np.stack([xx * 2, yy * 2, 255 - xx - yy], -1).clip(0, 255).astype(np.uint8)
    blurred = (frame // 64 * 64).astype(np.uint8)
    r.section("Anonymization").before_after([(frame, blurred, "clip 1"), (frame[::-1], blurred[::-1], "clip 2")])
    return r.write(path), rep


@pytest.fixture(scope="session")
def full_report(tmp_path_factory):
    return build_full_report(tmp_path_factory.mktemp("report") / "report.html")
