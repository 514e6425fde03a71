"""The group room's demo: synthesize a split-cue set, train audio / video / fusion tiny models,
evaluate them and draw a timeline (``demo_run``), shown as one step of ``affectlens demo``."""
from __future__ import annotations

import dataclasses as dc
from pathlib import Path

from affectlens.group.recipe import Log, TrainConfig, predict, train
from affectlens.group.synth import SynthSpec, generate_dataset, write_long_video
from affectlens.report.plots import curves_png
from affectlens.report.step import StepResult


def demo_run(out: Path, n_train: int = 240, n_test: int = 60, epochs: int = 7, log: Log = print) -> dict:
    """A few-minute CPU demo: synthesize a small split-cue set (faces tell Positive from the rest,
    sound tells Negative from the rest), train audio-only / video-only / fusion tiny models, evaluate,
    plot, and predict a timeline over a synthesized 15-s video. Returns the metrics.

    64-px frames with 3–4 faces (the paper's 3–9 made each face 14–19 px and needed ~300 clips);
    the tiny hybrid ViT (conv stem, max over tokens). About 2.5 min on one loaded CPU core."""
    out = Path(out)
    spec = SynthSpec(width=64, height=64, fps=10, cues="split", min_faces=3, max_faces=4)
    generate_dataset(out / "data" / "train", n_train, spec, seed=1, progress=False)
    generate_dataset(out / "data" / "test", n_test, spec, seed=2, progress=False)
    base = TrainConfig(size="tiny", frames=5, epochs=epochs, batch_size=8, optimizer="adamw", lr=1e-3,
                       weight_decay=0.01, freeze_vit_epochs=0, threads=1)
    metrics, curves = {}, {}
    for modality in ("audio", "video", "fusion"):
        r = train(dc.replace(base, modality=modality), out / "data" / "train", out / modality,
                  val=out / "data" / "test", progress=False, log=log)
        metrics[modality] = {"accuracy": r["eval"]["accuracy"], "macro_f1": r["eval"]["macro_f1"],
                             "confusion_png": str(out / modality / "eval" / "confusion.png")}
        curves[f"{modality} test acc"] = r["history"]["val_acc"]
    curves_png(curves, out / "modalities.png", title="Synthetic split-cue set: test accuracy per epoch")
    long = write_long_video(out / "data" / "long.mp4", [0, 1, 2], dc.replace(spec, cues="full"), seed=3)
    pred = predict(out / "fusion" / "best.pt", [long], out / "timeline", window=5.0, hop=2.5, log=log)
    metrics["timeline"] = {"video": str(long), "segments": ["Positive", "Neutral", "Negative"],
                           "windows": pred["results"][0]["windows"],
                           "png": pred["results"][0].get("timeline_png")}
    metrics["modalities_png"] = str(out / "modalities.png")
    return metrics


def demo_step(folder: Path) -> StepResult:
    """Synthesize group clips, train audio-only / video-only / fusion CPU models, evaluate, timeline."""
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
