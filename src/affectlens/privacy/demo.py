"""The privacy room's demo step: blur the face in a synthesized clip and check no face is left."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from affectlens.faces.detect import CenterFace
from affectlens.media import probe, sample_frames, write_video
from affectlens.privacy.anonymize import anonymize
from affectlens.report.plots import before_after_png
from affectlens.report.step import StepResult


def _face_clip(path: Path, seconds: float = 3.0, fps: int = 25) -> Path:
    """A clip of scikit-image's bundled astronaut portrait (a real face shipped in its wheel) panning
    across a dark background, with a tone for sound."""
    from skimage import data

    portrait = cv2.resize(data.astronaut(), (300, 300))
    n, h, w = int(seconds * fps), 360, 640
    frames = np.full((n, h, w, 3), 40, np.uint8)
    for i in range(n):
        x = int(20 + (w - 340) * i / max(n - 1, 1))
        frames[i, 30:330, x:x + 300] = portrait
    t = np.arange(int(seconds * 16_000)) / 16_000
    return write_video(path, frames, fps, audio=(0.2 * np.sin(2 * np.pi * 330 * t)).astype(np.float32))


def demo_step(folder: Path) -> StepResult:
    """Blur the face in a synthesized clip; the detector must find no face in the output."""
    src = _face_clip(folder / "face_clip.mp4")
    dst = folder / "face_clip.anonymized.mp4"
    result = anonymize(src, dst, method="blur", resume=False)[0]
    detector = CenterFace(threshold=0.5)
    before, after = sample_frames(src, 6), sample_frames(dst, 6)
    found_before = sum(len(detector(f.transpose(1, 2, 0)).boxes) for f in before)
    found_after = sum(len(detector(f.transpose(1, 2, 0)).boxes) for f in after)
    a, b = probe(src), probe(dst)
    png = before_after_png([(x.transpose(1, 2, 0), y.transpose(1, 2, 0), f"sample {2 * i + 1} of 6")
                            for i, (x, y) in enumerate(zip(before[::2], after[::2]))], folder / "before_after.png")
    return StepResult(
        summary=f"faces found by CenterFace in 6 frames: {found_before} before, {found_after} after; "
                f"{b.frame_count}/{a.frame_count} frames, audio kept: {b.audio is not None}",
        metrics={"faces_before": found_before, "faces_after": found_after, "frames_in": a.frame_count,
                 "frames_out": b.frame_count, "fps": round(result.fps, 1) if hasattr(result, "fps") else None},
        figures=[("Before / after anonymization (blur, ellipse mask)", png)],
    )
