"""The media room's demo step: write a real clip, probe it, sample frames and aligned log-mels."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from affectlens.files import atomic_path
from affectlens.media import (
    audio_windows,
    frame_times,
    load_audio,
    log_mel,
    probe,
    sample_frames,
    write_video,
)
from affectlens.report.step import StepResult


def _synthetic_clip(path: Path, seconds: float = 4.0, fps: int = 25) -> Path:
    """A clip with a moving disc whose colour changes each second, and a rising tone."""
    n, h, w = int(seconds * fps), 180, 320
    frames = np.zeros((n, h, w, 3), np.uint8)
    colours = [(230, 60, 60), (60, 200, 90), (70, 110, 230), (240, 200, 40)]
    for i in range(n):
        frames[i] = (30, 30, 40)
        x = int(40 + (w - 80) * i / max(n - 1, 1))
        cv2.circle(frames[i], (x, h // 2), 30, colours[int(i / fps) % len(colours)], -1)
    t = np.arange(int(seconds * 16_000)) / 16_000
    audio = 0.3 * np.sin(2 * np.pi * (200 + 150 * t) * t)
    return write_video(path, frames, fps, audio=audio.astype(np.float32))


def demo_step(folder: Path) -> StepResult:
    """Write a real H.264 + AAC clip, probe it, sample 5 frames and their aligned log-mels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clip = _synthetic_clip(folder / "synthetic_clip.mp4")
    info = probe(clip)
    times = frame_times(info.duration, 5)
    frames = sample_frames(clip, 5)
    mels = log_mel(audio_windows(load_audio(clip), times))
    fig, axes = plt.subplots(2, 5, figsize=(12, 4.2))
    for i in range(5):
        axes[0, i].imshow(frames[i].transpose(1, 2, 0))
        axes[0, i].set_title(f"t = {times[i]:.2f} s", fontsize=9)
        axes[1, i].imshow(mels[i, 0], origin="lower", aspect="auto", cmap="magma")
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[1, 0].set_ylabel("log-mel 128 × 251")
    fig.suptitle("5 frames at t_i = (i + 0.5)·D/5 and the 1-s audio windows centred on them")
    png = folder / "frames_and_mels.png"
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=90, bbox_inches="tight", format="png")
    plt.close(fig)
    return StepResult(
        summary=f"{info.width}×{info.height} {info.fps:.0f} fps, {info.duration:.1f} s → frames {tuple(frames.shape)}, "
                f"log-mels {tuple(mels.shape)}",
        metrics={"duration_s": info.duration, "frames": list(frames.shape), "log_mels": list(mels.shape)},
        figures=[("Sampled frames and their aligned log-mel windows", png)],
    )
