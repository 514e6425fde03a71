"""``affectlens group ...`` and ``affectlens synth group``: thin wrappers over recipe.py and synth.py."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from affectlens.report.html import REPORT_OPTION
from affectlens.scale import (
    ADDRESS_OPTION,
    BACKEND_OPTION,
    RESUME_OPTION,
    WORKERS_OPTION,
)
from affectlens.training.options import (
    ACCELERATOR_OPTION,
    DEVICES_OPTION,
    NUM_NODES_OPTION,
    STRATEGY_OPTION,
)

app = typer.Typer(help="Group emotion (Positive / Neutral / Negative) from global frames + audio; privacy-compliant.",
                  no_args_is_help=True)
console = Console()
err = Console(stderr=True)

DATA_HELP = "VGAF-layout folder (clips + a 'Vid_name Label' file), or the label file itself."


def _finish(problems: List[str], what: str) -> None:
    for p in problems:
        err.print(f"[yellow]skipped:[/yellow] {p}")
    if problems:
        err.print(f"[red]{len(problems)} {what} failed or were skipped[/red]")
        raise typer.Exit(1)


@app.command()
def features(data: Path = typer.Argument(..., help=DATA_HELP),
             frames: int = typer.Option(5, "--frames", help="Video frames per clip (5 or 75)."),
             audio_frames: int = typer.Option(0, "--audio-frames", help="1-s audio windows per clip (0 = --frames)."),
             size: int = typer.Option(224, "--size", help="Frame size in pixels (square)."),
             cache: Optional[Path] = typer.Option(None, "--cache", help="Cache folder (default DATA/cache)."),
             labels: Optional[Path] = typer.Option(None, "--labels", help="Label file, if not auto-detected."),
             clips: Optional[Path] = typer.Option(None, "--clips", help="Clip folder, if not auto-detected."),
             strict: bool = typer.Option(False, "--strict", help="A bad label row is fatal instead of skipped."),
             missing_audio: str = typer.Option("error", "--missing-audio", help="error | silence"),
             backend: str = BACKEND_OPTION, address: str | None = ADDRESS_OPTION,
             workers: int | None = WORKERS_OPTION, resume: bool = RESUME_OPTION):
    """Cache frames and log-mels of every clip (atomic, resumable, progress bar; --backend ray spreads clips)."""
    from affectlens.group.data import FeatureSpec, extract_features, read_vgaf

    index = read_vgaf(data, labels=labels, clips=clips, on_error="error" if strict else "skip")
    spec = FeatureSpec(frames, audio_frames or frames, size, missing_audio)
    cache = cache or (data if data.is_dir() else data.parent) / "cache"
    r = extract_features(index.items, cache, spec, backend=backend, address=address, workers=workers,
                         resume=resume)
    console.print(f"{len(index.items)} clips: {r['written']} cached, {r['skipped_existing']} already cached, "
                  f"{len(r['failed'])} failed → {r['cache']} ({r['backend']}, {r['seconds']:.1f} s)")
    _finish(index.errors + r["failed"], "rows/clips")


@app.command("train")
def train_cmd(data: Optional[Path] = typer.Argument(None, help=DATA_HELP + " Omit to train on --synthetic only."),
              out: Path = typer.Option(..., "--out", help="Run folder (checkpoints, curves, eval)."),
              config: Optional[Path] = typer.Option(None, "--config", help="Flat YAML recipe, e.g. configs/group_paper.yaml."),
              val: Optional[Path] = typer.Option(None, "--val", help="Validation VGAF folder."),
              synthetic: Optional[Path] = typer.Option(None, "--synthetic", help="Synthetic VGAF-format folder to mix in."),
              synthetic_ratio: Optional[float] = typer.Option(None, "--synthetic-ratio", help="Share of synthetic clips (paper 0.3)."),
              size: Optional[str] = typer.Option(None, "--size", help="paper | base | tiny"),
              modality: Optional[str] = typer.Option(None, "--modality", help="audio | video | fusion"),
              head: Optional[str] = typer.Option(None, "--head", help="mean | flatten"),
              frames: Optional[int] = typer.Option(None, "--frames", help="5 or 75 video frames."),
              audio_frames: Optional[int] = typer.Option(None, "--audio-frames", help="5 or 75 audio frames."),
              epochs: Optional[int] = typer.Option(None, "--epochs"),
              lr: Optional[float] = typer.Option(None, "--lr"),
              optimizer: Optional[str] = typer.Option(None, "--optimizer", help="sgd | adamw"),
              loss: Optional[str] = typer.Option(None, "--loss", help="ce | focal"),
              freeze_vit_epochs: Optional[int] = typer.Option(None, "--freeze-vit-epochs"),
              vit_weights: Optional[str] = typer.Option(None, "--vit-weights", help="Local ViT weights file."),
              resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue from OUT/last.pt."),
              strict: bool = typer.Option(False, "--strict", help="A bad label row is fatal."),
              devices: str = DEVICES_OPTION, num_nodes: int = NUM_NODES_OPTION, strategy: str = STRATEGY_OPTION,
              accelerator: str = ACCELERATOR_OPTION):
    """Train with the paper's recipe (checkpoints every epoch, resumable).

    With --devices N>1, --num-nodes N>1 or --strategy ddp it trains through Lightning instead
    (every process runs this command; rank 0 writes OUT/ddp.pt each epoch and evaluates; no
    resume, no focal loss).
    """
    from affectlens.group.recipe import load_config, train
    from affectlens.training.options import is_distributed, trainer_kwargs

    if data is None and synthetic is None:
        raise typer.BadParameter("give DATA, --synthetic, or both")
    cfg = load_config(config, synthetic_ratio=synthetic_ratio, size=size, modality=modality, head=head, frames=frames,
                      audio_frames=audio_frames, epochs=epochs, lr=lr, optimizer=optimizer, loss=loss,
                      freeze_vit_epochs=freeze_vit_epochs, vit_weights=vit_weights)
    trainer = trainer_kwargs(devices, num_nodes, strategy, accelerator) if is_distributed(
        devices, num_nodes, strategy) else None
    result = train(cfg, data, out, val=val, synthetic=synthetic, on_error="error" if strict else "skip",
                   resume=resume, log=console.print, trainer=trainer)
    if not result.get("is_global_zero", True):
        return
    if "eval" in result:
        console.print(f"validation accuracy {result['eval']['accuracy']:.4f}, macro-F1 {result['eval']['macro_f1']:.4f}")
    same = result["best"] == result["last"]
    console.print(f"checkpoint: {result['last']}" if same else
                  f"checkpoints: {result['best']} (best), {result['last']} (last)")
    _finish(result["problems"], "rows/clips")


@app.command("eval")
def eval_cmd(checkpoint: Path = typer.Argument(..., help="best.pt / last.pt from 'group train'."),
             data: Path = typer.Argument(..., help=DATA_HELP),
             out: Path = typer.Option(Path("group-eval"), "--out"),
             strict: bool = typer.Option(False, "--strict"),
             report: Path | None = REPORT_OPTION):
    """Accuracy, per-class F1 and the confusion matrix (eval.json, confusion.png, per_class.png)."""
    from affectlens.group.recipe import evaluate

    r = evaluate(checkpoint, data, out, on_error="error" if strict else "skip", log=console.print)
    f1 = ", ".join(f"{k} {v['f1']:.3f}" for k, v in r["per_class"].items())
    console.print(f"n={r['n']} accuracy {r['accuracy']:.4f}  F1: {f1}  → {out}/eval.json")
    if report is not None:
        from affectlens.report.html import write_eval_report

        write_eval_report(report, r, history=_run_history(checkpoint), title="group emotion — evaluation",
                          notes=f"checkpoint `{checkpoint}` on `{data}` ({r['n']} clips)")
        console.print(f"report → {report}")
    _finish(r["problems"], "rows/clips")


def _run_history(checkpoint: Path) -> dict | None:
    """Training curves from the run folder's train_summary.json, when the checkpoint sits in one."""
    import json
    import math

    summary = checkpoint.parent / "train_summary.json"
    if not summary.is_file():
        return None
    history = json.loads(summary.read_text(encoding="utf-8")).get("history") or {}
    return {k: [v for v in vals if not math.isnan(v)] for k, vals in history.items()} or None  # NaN: no val set


@app.command("predict")
def predict_cmd(checkpoint: Path = typer.Argument(...),
                videos: List[Path] = typer.Argument(..., help="Any video files."),
                out: Path = typer.Option(Path("group-predict"), "--out"),
                window: float = typer.Option(5.0, "--window", help="Window length (s) of the timeline."),
                hop: float = typer.Option(2.5, "--hop", help="Hop (s) between timeline windows.")):
    """Class probabilities per clip, or a timeline over sliding windows for long videos (JSON + CSV + PNG)."""
    from affectlens.group.recipe import predict

    r = predict(checkpoint, videos, out, window=window, hop=hop, log=console.print)
    for res in r["results"]:
        probs = "  ".join(f"{k} {v:.3f}" for k, v in res["probs"].items())
        console.print(f"{Path(res['video']).name}: {res['label']} ({probs}; {res['mode']}, {len(res['windows'])} windows)")
    console.print(f"checkpoint {checkpoint} → {out}/predictions.json, predictions.csv")
    _finish(r["failed"], "videos")


@app.command("ablation")
def ablation_cmd(data: Path = typer.Argument(..., help="Real training VGAF folder."),
                 val: Path = typer.Option(..., "--val", help="Validation VGAF folder."),
                 synthetic: Path = typer.Option(..., "--synthetic", help="Synthetic VGAF-format folder."),
                 out: Path = typer.Option(Path("group-ablation"), "--out"),
                 config: Optional[Path] = typer.Option(None, "--config"),
                 frames: str = typer.Option("5,75", "--frames", help="Comma-separated frame counts.")):
    """Train + evaluate Table 2's seven input combinations × frame counts; print ours beside the paper's."""
    from affectlens.group.recipe import ablation, load_config

    cfg = load_config(config)
    ablation(cfg, data, val, synthetic, out, frames=[int(f) for f in frames.split(",")], log=console.print)


def synth_group(out: Path = typer.Argument(..., help="Output folder (clips/ + labels.txt)."),
                count: int = typer.Option(60, "--count", help="Number of clips."),
                balance: str = typer.Option("equal", "--balance", help="equal | paper | p,n,n shares."),
                faces: Optional[Path] = typer.Option(None, "--faces", help="Expression-labelled face folder (FER2013 layout)."),
                backgrounds: Optional[Path] = typer.Option(None, "--backgrounds", help="Folder of background images."),
                audio: Optional[Path] = typer.Option(None, "--audio", help="Class folders or a VGAF folder of audio."),
                cues: str = typer.Option("full", "--cues", help="full | split (faces: Positive vs rest; sound: Negative vs rest)."),
                size: int = typer.Option(224, "--size", help="Frame width and height."),
                fps: int = typer.Option(15, "--fps"),
                seconds: float = typer.Option(5.0, "--seconds"),
                seed: int = typer.Option(0, "--seed")):
    """Synthetic group-emotion videos (§4.3) as mp4 + AAC with a VGAF label file (resumable)."""
    from affectlens.group.synth import PAPER_BALANCE, SynthSpec, generate_dataset, load_sources

    shares = {"equal": (1, 1, 1), "paper": PAPER_BALANCE}.get(balance) or tuple(float(x) for x in balance.split(","))
    spec = SynthSpec(width=size, height=size, fps=fps, seconds=seconds, cues=cues)
    sources = load_sources(faces, backgrounds, audio)
    r = generate_dataset(out, count, spec, shares, sources, seed)
    console.print(f"{r['clips']} clips in {out} ({r['class_counts']}); largest hidden share of a face "
                  f"{r['max_occlusion_written_now']:.3f}")
    _finish(r["failed"], "clips")


synth_commands = {"group": synth_group}
