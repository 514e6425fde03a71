"""`affectlens demo`: every room shown on built-in data (synthetic generators + shipped weights).

Each step is a function ``(folder) -> StepResult``; a step owns its folder under ``--out``. The
demo writes ``metrics.json`` and a self-contained ``report.html`` and prints a summary table.
It reads nothing from ``../shared``.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from affectlens.utils import write_json


@dataclasses.dataclass
class StepResult:
    """What a demo step shows: headline numbers, pictures (caption, PNG) and tables."""

    summary: str
    metrics: dict = dataclasses.field(default_factory=dict)
    figures: list = dataclasses.field(default_factory=list)  # [(caption, png_path)]
    tables: list = dataclasses.field(default_factory=list)  # [(caption, headers, rows)]
    text: str = ""


def _synthetic_clip(path: Path, seconds: float = 4.0, fps: int = 25) -> Path:
    """A clip with a moving disc whose colour changes each second, and a rising tone."""
    import cv2

    from affectlens.media import write_video

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


def media_step(folder: Path) -> StepResult:
    """Write a real H.264 + AAC clip, probe it, sample 5 frames and their aligned log-mels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from affectlens.media import (
        audio_windows,
        frame_times,
        load_audio,
        log_mel,
        probe,
        sample_frames,
    )
    from affectlens.utils import atomic_path

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


def _face_clip(path: Path, seconds: float = 3.0, fps: int = 25) -> Path:
    """A clip of scikit-image's bundled astronaut portrait (a real face shipped in its wheel) panning
    across a dark background, with a tone for sound."""
    import cv2
    from skimage import data

    from affectlens.media import write_video

    portrait = cv2.resize(data.astronaut(), (300, 300))
    n, h, w = int(seconds * fps), 360, 640
    frames = np.full((n, h, w, 3), 40, np.uint8)
    for i in range(n):
        x = int(20 + (w - 340) * i / max(n - 1, 1))
        frames[i, 30:330, x:x + 300] = portrait
    t = np.arange(int(seconds * 16_000)) / 16_000
    return write_video(path, frames, fps, audio=(0.2 * np.sin(2 * np.pi * 330 * t)).astype(np.float32))


def anonymize_step(folder: Path) -> StepResult:
    """Blur the face in a synthesized clip; the detector must find no face in the output."""
    from affectlens.faces.detect import CenterFace
    from affectlens.media import probe, sample_frames
    from affectlens.privacy.anonymize import anonymize
    from affectlens.report.plots import before_after_png

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


def expression_step(folder: Path) -> StepResult:
    """The shipped FER2013 model on the astronaut's face and synthesized variants of it."""
    import cv2
    from skimage import data

    from affectlens.expression.predict import predict_images

    photo = data.astronaut()
    face = photo[60:180, 175:275]  # the face in the bundled portrait
    variants = {"original": face, "mirrored": face[:, ::-1], "darker": (face * 0.6).astype(np.uint8),
                "smaller": cv2.resize(cv2.resize(face, (32, 32)), face.shape[1::-1])}
    preds = predict_images(list(variants.values()))
    rows = [[name, p["label"], p["confidence"]] for name, p in zip(variants, preds)]
    return StepResult(
        summary=", ".join(f"{r[0]}: {r[1]} ({r[2]:.2f})" for r in rows),
        metrics={name: p for name, p in zip(variants, preds)},
        tables=[("Shipped expression model on synthesized faces", ["face", "expression", "confidence"], rows)],
    )


def group_step(folder: Path) -> StepResult:
    """Synthesize group clips, train audio-only / video-only / fusion CPU models, evaluate, timeline."""
    from affectlens.group.recipe import demo_run

    res = demo_run(folder, log=lambda s: None)
    modalities = [m for m in ("audio", "video", "fusion") if m in res]
    rows = [[m, res[m]["accuracy"], res[m]["macro_f1"]] for m in modalities]
    timeline = res.get("timeline", {})
    windows = timeline.get("windows", [])
    spans = ", ".join(f"{w['start']:.0f}-{w['end']:.0f} s {w['label']}" for w in windows[:6]
                      if {"start", "end", "label"} <= set(w))
    figures = [("Test accuracy per epoch (synthetic split-cue set)", res["modalities_png"])]
    figures += [(f"Confusion matrix, {m}", res[m]["confusion_png"]) for m in modalities]
    if timeline.get("png"):
        figures.append(("Timeline of a 15-s clip whose segments are Positive, Neutral, Negative", timeline["png"]))
    best = max(modalities, key=lambda m: res[m]["accuracy"])
    return StepResult(
        summary="synthetic VGAF-format clips; test accuracy " +
                ", ".join(f"{m} {res[m]['accuracy']:.2f}" for m in modalities) + f" (best: {best})",
        metrics={m: {k: v for k, v in res[m].items() if k != "confusion_png"} for m in modalities}
        | {"timeline": windows},
        figures=[(c, p) for c, p in figures if p and Path(p).exists()],
        tables=[("Group emotion on synthetic clips (labelled synthetic)", ["model", "accuracy", "macro-F1"], rows)],
        text=f"Timeline windows: {spans}" if spans else "",
    )


def videotag_step(folder: Path) -> StepResult:
    """Logistic vs MoE, visual vs visual+audio on synthetic YouTube-8M-format features."""
    from affectlens.videotag.recipe import demo_run

    res = demo_run(folder, log=lambda s: None)
    rows = [[name, m["gap"], m["hit_at_one"], m["perr"], m["map"]] for name, m in res["results"].items()]
    best = max(res["results"], key=lambda k: res["results"][k]["gap"])
    return StepResult(
        summary=f"synthetic features, {res['train_videos']} train / {res['eval_videos']} eval videos; "
                f"best GAP {res['results'][best]['gap']:.3f} ({best})",
        metrics=res["results"],
        tables=[("Video tagging on synthetic features (labelled synthetic)", ["model", "GAP", "Hit@1", "PERR", "mAP"],
                 rows)],
    )


def spontaneity_step(folder: Path) -> StepResult:
    """Posed vs spontaneous on a tiny synthetic set: subject-independent 2-fold CV of all methods."""
    from affectlens.spontaneity.recipe import demo_cv

    res = demo_cv()
    rows = [[name, r["mean"], r["std"]] for name, r in res["methods"].items()] if "methods" in res else []
    return StepResult(summary="subject-independent CV on synthetic onset/apex pairs", metrics=res,
                      tables=[("Error rate (mean ± std over folds)", ["method", "error", "std"], rows)])


def demo_steps() -> list[tuple[str, Callable[[Path], StepResult]]]:
    """The steps, in the order a newcomer should see them."""
    return [("media", media_step), ("group", group_step), ("anonymize", anonymize_step),
            ("expression", expression_step), ("videotag", videotag_step), ("spontaneity", spontaneity_step)]


def run_demo(out: Path, console: Console | None = None, only: list[str] | None = None) -> dict:
    """Run every step (or those named in ``only``), write ``metrics.json`` and ``report.html``."""
    from affectlens.report.console import progress as progress_display

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
    from affectlens.report.html import Report

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
